/**
 * PuppetCertificate: a Puppet client certificate signed by the Puppet CA through espm. The key pair
 * is made here with Node's crypto and only the CSR goes to espm; the private key is a secret output.
 * Any input change but `connection`, `includeCrl` and `includeCaBundle` replaces the certificate,
 * delete before replace, because a CA holds one certificate per name. Destroy revokes it (Puppet
 * Server's clean), so the node is refused afterwards.
 */
import * as pulumi from "@pulumi/pulumi";
import type { KeyType } from "espm-sdk/keys";
import type { CaOutputs } from "./ca-trust";
import { keepingSecret, secretConnection, type EspmConnection } from "./connection";
import { EspmDynamicResource, thinProvider } from "./thin-provider";

/** The node's key: ECDSA on P-256 (the default; Puppet 7 and 8 agents both boot with it) or RSA. */
export type CertificateKeyType = KeyType;

export interface PuppetCertificateArgs {
  /** The certname: use the registration's `nodeName`. */
  certname: pulumi.Input<string>;
  /** `ec-p256` (default), `rsa-2048`, `rsa-3072` or `rsa-4096`. A certificate made without it keeps the type it was made with. */
  keyType?: pulumi.Input<CertificateKeyType>;
  /** Puppet's `pp_*` extension requests known before the instance exists, e.g. `{ pp_role: "web" }`. */
  extensions?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /**
   * Whether `crlPem` holds the CA's CRL as it was when the certificate was signed. Deprecated
   * default `true`; set `false`. The CRL grows by about 47 bytes with every revocation on the site
   * (475 KB at 10,000), the engine rewrites it with the whole state after every step, and nothing
   * needs it: the bootstrap does not install it and an agent fetches the CRL itself. Turning it off
   * empties `crlPem` in place; turning it back on does not fetch one (only a new certificate has one).
   */
  includeCrl?: pulumi.Input<boolean>;
  /**
   * Whether `caCertificatePem` holds the CA bundle (default `true`). With `false` only
   * `caFingerprint` is kept, 4 KB less per node in state and in userdata: the agent downloads the
   * bundle and checks it against the fingerprint (Puppet 6 and later). Turning it off empties
   * `caCertificatePem` in place; turning it back on does not fetch the bundle again.
   */
  includeCaBundle?: pulumi.Input<boolean>;
  /** This resource's own espm connection instead of the stack's `espm:*` config. Kept secret. */
  connection?: pulumi.Input<EspmConnection>;
}

export interface CertificateState extends CaOutputs {
  certname: string;
  keyType: CertificateKeyType;
  extensions: Record<string, string>;
  /** Absent in a certificate stored before the input existed, which held its CRL. */
  includeCrl?: boolean;
  connection?: EspmConnection;
  certificatePem: string;
  /** Secret: the resource class lists it in additionalSecretOutputs. */
  privateKeyPem: string;
  /** Empty when `includeCrl` is false. */
  crlPem: string;
  /** Hex, uppercase, no leading zeros (as the CRL and `openssl` show it). */
  serial: string;
  notAfter: string;
  /** `signed`; after a refresh, `revoked`, `requested` or `superseded` when the CA changed behind Pulumi's back. */
  state: string;
}

/** The provider in this process, as the stored code (`storedProvider`) gets it from the runtime module where it runs. */
export const certificateProvider = thinProvider("certificate");

/**
 * The runs already told of includeCrl's deprecated default, by their stack resource: a process of
 * the Automation API runs many programs inline, and each run is told once.
 */
const crlDefaultWarned = new WeakSet<object>();
const OUTSIDE_A_RUN = {};

/** Once per run of the program: the deprecated default of `includeCrl`, with what to write instead. */
function warnCrlDefaultOnce(): void {
  const run: object = pulumi.runtime.getStackResource() ?? OUTSIDE_A_RUN;
  if (crlDefaultWarned.has(run)) return;
  crlDefaultWarned.add(run);
  void pulumi.log.warn(
    "PuppetCertificate: includeCrl defaults to true, which is deprecated and will become false: give includeCrl: false " +
      "(crlPem, the CA's CRL at signing, grows with every revocation on the site and nothing of espm's reads it), " +
      "or includeCrl: true if the program reads crlPem",
  );
}

export class PuppetCertificate extends EspmDynamicResource {
  declare readonly certname: pulumi.Output<string>;
  declare readonly keyType: pulumi.Output<CertificateKeyType>;
  declare readonly certificatePem: pulumi.Output<string>;
  /** Secret in state and in outputs. */
  declare readonly privateKeyPem: pulumi.Output<string>;
  /** Empty when `includeCaBundle` is false. */
  declare readonly caCertificatePem: pulumi.Output<string>;
  /** The CA bundle's SHA-256 (hex), which the agent checks the bundle it downloads against. */
  declare readonly caFingerprint: pulumi.Output<string>;
  declare readonly crlPem: pulumi.Output<string>;
  declare readonly serial: pulumi.Output<string>;
  declare readonly notAfter: pulumi.Output<string>;
  declare readonly state: pulumi.Output<string>;

  constructor(name: string, args: PuppetCertificateArgs, opts?: pulumi.CustomResourceOptions) {
    if (args.includeCrl === undefined) warnCrlDefaultOnce();
    const inputs = {
      ...args,
      connection: secretConnection(args.connection),
      certificatePem: undefined,
      privateKeyPem: undefined,
      caCertificatePem: undefined,
      caFingerprint: undefined,
      crlPem: undefined,
      serial: undefined,
      notAfter: undefined,
      state: undefined,
    };
    super("certificate", "PuppetCertificate", name, inputs, keepingSecret(opts, "privateKeyPem"));
  }
}
