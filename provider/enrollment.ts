/**
 * PuppetEnrollment: a one-time token with which a registered node gets its certificate signed for
 * a key it makes itself (the `instance` key mode). The node puts the token in its CSR's
 * challengePassword; Puppet Server's policy-based autosigning asks espm, which signs a CSR for this
 * certname only, once, before the token expires, with no extensions but those allowed here. No
 * private key exists anywhere but on the node; the token is a secret output, and espm keeps only its hash.
 *
 * A change of certname or extensions replaces the enrollment, delete before replace (a name has
 * one). A change of ttlMinutes does not: it extends an unused token, and leaves a used one alone,
 * since a replacement would revoke a live node. Nor does one of includeCaBundle (ca-trust.ts).
 * Destroy revokes and cleans whatever certificate was signed through the enrollment, and
 * invalidates an unused token.
 */
import * as pulumi from "@pulumi/pulumi";
import type { Enrollment } from "espm-sdk/protocol";
import type { CaOutputs } from "./ca-trust";
import { keepingSecret, secretConnection, type EspmConnection } from "./connection";
import { EspmDynamicResource, thinProvider } from "./thin-provider";

export interface PuppetEnrollmentArgs {
  /** The certname: use the registration's `nodeName`. */
  certname: pulumi.Input<string>;
  /** Minutes until an unused token expires (default 60). */
  ttlMinutes?: pulumi.Input<number>;
  /**
   * The `pp_*` extensions the node's CSR may carry, with their values, e.g. `{ pp_role: "web" }`.
   * pp_instance_id is always allowed (the bootstrap adds the instance's own on EC2).
   */
  extensions?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /**
   * Whether `caCertificatePem` holds the CA bundle (default `true`). With `false` only
   * `caFingerprint` is kept, 4 KB less per node in state and in userdata: give bootstrapUserData
   * the enrollment as it is, and the agent downloads the bundle and checks it against the
   * fingerprint (Puppet 6 and later). Turning it off empties `caCertificatePem` in place; turning
   * it back on does not fetch the bundle again (a new enrollment has it).
   */
  includeCaBundle?: pulumi.Input<boolean>;
  /** This resource's own espm connection instead of the stack's `espm:*` config. Kept secret. */
  connection?: pulumi.Input<EspmConnection>;
}

export interface EnrollmentState extends CaOutputs {
  certname: string;
  ttlMinutes: number;
  extensions: Record<string, string>;
  connection?: EspmConnection;
  /** Secret: the resource class lists it in additionalSecretOutputs. */
  token: string;
  expiresAt: string;
  /** issued, used, signed, refused, expired; after a refresh, what espm says now. */
  state: Enrollment["state"];
  /** The serial of the certificate signed through the enrollment, once espm has learned it. */
  serial?: string;
}

/** The provider in this process, as the stored code (`storedProvider`) gets it from the runtime module where it runs. */
export const enrollmentProvider = thinProvider("enrollment");

export class PuppetEnrollment extends EspmDynamicResource {
  declare readonly certname: pulumi.Output<string>;
  declare readonly ttlMinutes: pulumi.Output<number>;
  declare readonly extensions: pulumi.Output<Record<string, string>>;
  /** Secret in state and in outputs: the node's one-time token. */
  declare readonly token: pulumi.Output<string>;
  /** Empty when `includeCaBundle` is false. */
  declare readonly caCertificatePem: pulumi.Output<string>;
  /** The CA bundle's SHA-256 (hex), which the agent checks the bundle it downloads against. */
  declare readonly caFingerprint: pulumi.Output<string>;
  declare readonly expiresAt: pulumi.Output<string>;
  declare readonly state: pulumi.Output<string>;
  declare readonly serial: pulumi.Output<string | undefined>;

  constructor(name: string, args: PuppetEnrollmentArgs, opts?: pulumi.CustomResourceOptions) {
    const inputs = {
      ...args,
      connection: secretConnection(args.connection),
      token: undefined,
      caCertificatePem: undefined,
      caFingerprint: undefined,
      expiresAt: undefined,
      state: undefined,
      serial: undefined,
    };
    super("enrollment", "PuppetEnrollment", name, inputs, keepingSecret(opts, "token"));
  }
}
