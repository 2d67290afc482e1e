/**
 * PuppetEnrollment's lifecycle: what the dynamic-provider host (through the runtime module) and the
 * provider plugin run for it. The program loads only the resource class (./enrollment), which declares
 * the resource, and so none of this: not its input schema (zod), not espm's client.
 */
import type * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import type { EspmClient } from "espm-sdk/client";
import { EspmError } from "espm-sdk/errors";
import { schemas, type Enrollment } from "espm-sdk/protocol";
import { caBundleChanged, caOutputs, caOutputsKept } from "./ca-trust";
import { connectionSchema } from "./connection-schema";
import { withClient } from "./connection";
import {
  changedProperties,
  checkWith,
  defined,
  initFailed,
  inputSchemaOnce,
  messageOf,
  nothingWasDone,
  removedAtEspm,
} from "./lifecycle";
import type { StackSettings } from "./settings";
import { type Lifecycle } from "./thin-provider";
import type { EnrollmentState } from "./enrollment";

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
    await withClient(state.connection, settings?.espm, (client) =>
      // espm answers 204 when the enrollment is already revoked, 404 when it never had one.
      removedAtEspm(() => client.deleteEnrollment(id), `revoking the enrollment of ${id} through espm failed`),
    );
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
