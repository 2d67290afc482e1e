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
import { z } from "zod";
import type { EspmClient } from "espm-sdk/client";
import { EspmError } from "espm-sdk/errors";
import { schemas, type Enrollment } from "espm-sdk/protocol";
import { caBundleChanged, caOutputs, caOutputsKept, type CaOutputs } from "./ca-trust";
import { connectionSchema, keepingSecret, secretConnection, withClient, type EspmConnection } from "./connection";
import {
  changedProperties,
  checkWith,
  defined,
  initFailed,
  inputSchemaOnce,
  messageOf,
  nothingWasDone,
} from "./lifecycle";
import type { StackSettings } from "./settings";
import { EspmDynamicResource, thinProvider, type Lifecycle } from "./thin-provider";

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

const REPLACING = ["certname", "extensions"] as const;
/** States in which the enrollment can no longer enroll anything: only a new one helps. */
const SPENT: ReadonlySet<string> = new Set(["refused", "expired", "revoked"]);

const inputSchema = inputSchemaOnce(() =>
  z.strictObject({
    certname: schemas.name,
    ttlMinutes: schemas.enrollmentRequest.shape.ttlMinutes,
    extensions: schemas.enrollmentRequest.shape.extensions,
    includeCaBundle: z.boolean().default(true),
    connection: connectionSchema().optional(),
  }),
);

function fromEspm(state: EnrollmentState, enrollment: Enrollment): EnrollmentState {
  return defined({
    ...state,
    ...caOutputsKept(state, state.includeCaBundle),
    state: enrollment.state,
    expiresAt: enrollment.expiresAt,
    serial: enrollment.serial ?? state.serial,
  });
}

export const enrollmentLifecycle = {
  inputSchema,
  replacing: REPLACING,

  async check(_olds: Record<string, unknown>, news: Record<string, unknown>): Promise<pulumi.dynamic.CheckResult> {
    const result = checkWith(inputSchema(), news);
    return result.failures.length ? { failures: result.failures } : { inputs: result.inputs };
  },

  async diff(_id: string, olds: EnrollmentState, news: EnrollmentState): Promise<pulumi.dynamic.DiffResult> {
    const replaces = changedProperties({ ...olds }, { ...news }, REPLACING);
    // A create recorded half-made (no token), or a refresh that found the token refused or expired unused.
    if (!olds.token || SPENT.has(olds.state)) replaces.push("state");
    const updates = changedProperties({ ...olds }, { ...news }, ["ttlMinutes", "connection"]);
    if (caBundleChanged(olds, news)) updates.push("includeCaBundle");
    return { changes: replaces.length + updates.length > 0, replaces, deleteBeforeReplace: true };
  },

  async create(
    inputs: EnrollmentState,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.CreateResult<EnrollmentState>> {
    return withClient(inputs.connection, settings?.espm, async (client) => {
      try {
        const issued = await client.enroll(inputs.certname, {
          ttlMinutes: inputs.ttlMinutes,
          extensions: inputs.extensions,
        });
        const outs: EnrollmentState = fromEspm(
          {
            ...inputs,
            ...caOutputs(issued.caCertificate, inputs.includeCaBundle),
            token: issued.token,
            expiresAt: "",
            state: "issued",
          },
          issued,
        );
        return { id: inputs.certname, outs };
      } catch (error) {
        if (nothingWasDone(error))
          throw new Error(`enrolling ${inputs.certname} through espm failed: ${messageOf(error)}`);
        throw await withdrawAfter(error, inputs, client);
      }
    });
  },

  async read(
    id: string,
    state: EnrollmentState,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.ReadResult<EnrollmentState>> {
    return withClient(state.connection, settings?.espm, async (client) => {
      const enrollment = await client.enrollment(id);
      if (!enrollment) return { id: "", props: {} as EnrollmentState };
      return { id, props: fromEspm(state, enrollment) };
    });
  },

  async update(
    id: string,
    olds: EnrollmentState,
    news: EnrollmentState,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.UpdateResult<EnrollmentState>> {
    const kept: EnrollmentState = {
      ...olds,
      ...caOutputsKept(olds, news.includeCaBundle),
      ttlMinutes: news.ttlMinutes,
      connection: news.connection,
    };
    if (news.ttlMinutes === olds.ttlMinutes) return { outs: defined(kept) };
    return withClient(news.connection, settings?.espm, async (client) => {
      try {
        return { outs: fromEspm(kept, await client.updateEnrollment(id, news.ttlMinutes)) };
      } catch (error) {
        throw new Error(`changing the enrollment of ${id} through espm failed: ${messageOf(error)}`);
      }
    });
  },

  async delete(id: string, state: EnrollmentState, settings: StackSettings | undefined): Promise<void> {
    await withClient(state.connection, settings?.espm, async (client) => {
      try {
        // espm answers 204 when the enrollment is already revoked, 404 when it never had one.
        await client.deleteEnrollment(id);
      } catch (error) {
        if (error instanceof EspmError && error.status === 404) return;
        throw new Error(`revoking the enrollment of ${id} through espm failed: ${messageOf(error)}`);
      }
    });
  },
} satisfies Lifecycle<EnrollmentState>;

/** After an enroll that may have acted: withdraw what espm may have issued, or keep it in state. */
async function withdrawAfter(error: unknown, inputs: EnrollmentState, client: EspmClient): Promise<Error> {
  try {
    await client.deleteEnrollment(inputs.certname);
    return new Error(
      `enrolling ${inputs.certname} through espm failed, and nothing was left behind: ${messageOf(error)}`,
    );
  } catch (deleteError) {
    if (deleteError instanceof EspmError && deleteError.status === 404)
      return new Error(`enrolling ${inputs.certname} through espm failed: ${messageOf(error)}`);
    return initFailed(
      `enrolling ${inputs.certname} through espm failed and a token may exist; it is kept in state so the next up replaces it and destroy revokes it: ${messageOf(error)}`,
      inputs.certname,
      inputs,
      { state: "refused" },
    );
  }
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
