/**
 * PuppetCertificate: a Puppet client certificate signed by the Puppet CA through espm. The key pair
 * is made here with Node's crypto and only the CSR goes to espm; the private key is a secret output.
 * Any input change but `connection`, `includeCrl` and `includeCaBundle` replaces the certificate,
 * delete before replace, because a CA holds one certificate per name. Destroy revokes it (Puppet
 * Server's clean), so the node is refused afterwards.
 */
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import type { EspmClient } from "espm-sdk/client";
import { schemas } from "espm-sdk/protocol";
import { describeCertificate, generateKeyPairAsync, KEY_TYPES, normalizeSerial, type KeyType } from "espm-sdk/keys";
import { PUPPET_EXTENSIONS } from "espm-sdk/puppet-extensions";
import { caBundleChanged, caOutputs, caOutputsKept, type CaOutputs } from "./ca-trust";
import { connectionSchema, keepingSecret, secretConnection, withClient, type EspmConnection } from "./connection";
import { EspmError } from "espm-sdk/errors";
import {
  changedProperties,
  checkWith,
  defined,
  initFailed,
  inputSchemaOnce,
  messageOf,
  nothingWasDone,
} from "./lifecycle";
import { EspmDynamicResource, thinProvider, type Lifecycle } from "./thin-provider";
import type { StackSettings } from "./settings";

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

/**
 * ECDSA P-256: Puppet 7.23 and 8.10 agents boot with it in the first-boot suite, it is made in well
 * under a millisecond where RSA-2048 takes tens, and its key is a seventh of the userdata's size.
 * A certificate made before this default keeps its recorded key type (see check): no replacement.
 */
const DEFAULT_KEY_TYPE: CertificateKeyType = "ec-p256";
/** Every other input replaces: a new key, name or extension needs a new certificate. */
const REPLACING = ["certname", "keyType", "extensions"] as const;

const inputSchema = inputSchemaOnce(() => {
  const known = Object.keys(PUPPET_EXTENSIONS);
  return z.strictObject({
    certname: schemas.name,
    keyType: z
      .string()
      .refine((value) => (KEY_TYPES as readonly string[]).includes(value), {
        error: (issue) =>
          `unknown key type ${JSON.stringify(issue.input)}: use rsa-2048, rsa-3072, rsa-4096 or ec-p256`,
      })
      .default(DEFAULT_KEY_TYPE),
    extensions: z
      .record(z.string(), z.string().min(1).max(255))
      .superRefine((value, ctx) => {
        for (const name of Object.keys(value)) {
          if (!known.includes(name))
            ctx.addIssue({
              code: "custom",
              path: [name],
              message: `unknown Puppet extension; known: ${known.join(", ")}`,
            });
        }
      })
      .default({}),
    includeCrl: z.boolean().default(true),
    includeCaBundle: z.boolean().default(true),
    connection: connectionSchema().optional(),
  });
});

export const certificateLifecycle = {
  inputSchema,
  replacing: REPLACING,

  async check(olds: Record<string, unknown>, news: Record<string, unknown>): Promise<pulumi.dynamic.CheckResult> {
    // Without a keyType, a certificate that exists keeps the one it was made with (RSA-2048, when
    // it came from a version whose default that was), so a new default replaces nothing.
    const kept = news.keyType === undefined && typeof olds.keyType === "string" ? { keyType: olds.keyType } : {};
    const result = checkWith(inputSchema(), { ...news, ...kept });
    return result.failures.length ? { failures: result.failures } : { inputs: result.inputs };
  },

  async diff(_id: string, olds: CertificateState, news: CertificateState): Promise<pulumi.dynamic.DiffResult> {
    const replaces = changedProperties({ ...olds }, { ...news }, REPLACING);
    // A refresh found the certificate revoked or superseded at the CA, or a create was recorded
    // half-made (no key, no certificate): only a new one helps, and the old one goes first.
    if (olds.state !== "signed" || !olds.privateKeyPem || !olds.certificatePem) replaces.push("state");
    // A certificate stored before `includeCrl` existed holds its CRL, as `true` does.
    const crlChanged = (olds.includeCrl ?? true) !== (news.includeCrl ?? true);
    return {
      changes: replaces.length > 0 || crlChanged || caBundleChanged(olds, news),
      replaces,
      deleteBeforeReplace: true,
    };
  },

  async create(
    inputs: CertificateState,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.CreateResult<CertificateState>> {
    return withClient(inputs.connection, settings?.espm, async (client) => {
      // The CSR builder (ASN.1 schemas) loads here, in a create, not in every provider host and preview.
      const [{ privateKeyPem }, { createCsr }] = await Promise.all([
        generateKeyPairAsync(inputs.keyType),
        import("espm-sdk/x509"),
      ]);
      const csr = createCsr(inputs.certname, privateKeyPem, inputs.extensions);
      try {
        const issued = await client.signCertificate(inputs.certname, csr);
        const summary = describeCertificate(issued.certificate);
        if (summary.serial !== normalizeSerial(issued.serial))
          throw new Error(`espm answered serial ${issued.serial}, but the certificate's is ${summary.serial}`);
        const outs: CertificateState = {
          ...inputs,
          certificatePem: issued.certificate,
          privateKeyPem,
          ...caOutputs(issued.caCertificate, inputs.includeCaBundle),
          crlPem: inputs.includeCrl === false ? "" : issued.crl,
          serial: summary.serial,
          notAfter: summary.notAfter,
          state: "signed",
        };
        return { id: inputs.certname, outs };
      } catch (error) {
        if (nothingWasDone(error)) {
          throw new Error(`signing a certificate for ${inputs.certname} through espm failed: ${messageOf(error)}`);
        }
        throw await revokeAfter(error, inputs, client);
      }
    });
  },

  async read(
    id: string,
    state: CertificateState,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.ReadResult<CertificateState>> {
    return withClient(state.connection, settings?.espm, async (client) => {
      const status = await client.certificateStatus(id);
      if (!status || status.state === "absent") return { id: "", props: {} as CertificateState };
      const same = status.serial === undefined || normalizeSerial(status.serial) === state.serial;
      const props = { ...state, ...caOutputsKept(state, state.includeCaBundle) };
      return { id, props: defined({ ...props, state: same ? status.state : "superseded" }) };
    });
  },

  async update(
    _id: string,
    olds: CertificateState,
    news: CertificateState,
  ): Promise<pulumi.dynamic.UpdateResult<CertificateState>> {
    // Only `connection`, `includeCrl` and `includeCaBundle` change without a replacement; the
    // certificate itself stays, and so do the CRL it was signed with and the CA bundle, unless they
    // are no longer wanted.
    const crlPem = news.includeCrl === false ? "" : olds.crlPem;
    const ca = caOutputsKept(olds, news.includeCaBundle);
    return { outs: defined({ ...olds, ...ca, connection: news.connection, includeCrl: news.includeCrl, crlPem }) };
  },

  async delete(id: string, state: CertificateState, settings: StackSettings | undefined): Promise<void> {
    await withClient(state.connection, settings?.espm, async (client) => {
      try {
        // Revoke and clean at the CA; espm answers 204 when it is already gone, and 404 when it
        // never signed one of this name (a create recorded half-made that never reached the CA).
        await client.revokeCertificate(id);
      } catch (error) {
        if (error instanceof EspmError && error.status === 404) return;
        throw new Error(`revoking the certificate of ${id} through espm failed: ${messageOf(error)}`);
      }
    });
  },
} satisfies Lifecycle<CertificateState>;

/** After a sign that may have acted: revoke what espm may have signed, or keep it in state. */
async function revokeAfter(error: unknown, inputs: CertificateState, client: EspmClient): Promise<Error> {
  try {
    await client.revokeCertificate(inputs.certname);
    return new Error(
      `signing a certificate for ${inputs.certname} through espm failed, and nothing was left behind: ${messageOf(error)}`,
    );
  } catch {
    // The key is not kept: without its certificate it is of no use, and the next up replaces this one.
    return initFailed(
      `signing a certificate for ${inputs.certname} through espm failed and one may exist; it is kept in state so the next up replaces it and destroy revokes it: ${messageOf(error)}`,
      inputs.certname,
      inputs,
      { state: "unknown" },
    );
  }
}

/** The provider in this process, as the stored code (`storedProvider`) gets it from the runtime module where it runs. */
export const certificateProvider = thinProvider("certificate");

let crlDefaultWarned = false;

/** Once per program: the deprecated default of `includeCrl`, with what to write instead. */
function warnCrlDefaultOnce(): void {
  if (crlDefaultWarned) return;
  crlDefaultWarned = true;
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
