/**
 * Pieces every espm dynamic resource's lifecycle shares: unknown values during preview, check
 * failures that name the property, diffs by property, the init-failed error that records a
 * half-made resource in state instead of orphaning it, and how waits report their progress.
 */
import type * as pulumi from "@pulumi/pulumi";
import { setTimeout as sleep } from "node:timers/promises";
import { isDeepStrictEqual } from "node:util";
import type { z } from "zod";
import { EspmError } from "espm-sdk/errors";

/** The value the engine sends for an input not known until apply (`pulumi preview` with computed inputs). */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** Whether a value is, or holds anywhere inside it, an unknown. */
export function containsUnknown(value: unknown): boolean {
  if (value === UNKNOWN) return true;
  if (Array.isArray(value)) return value.some(containsUnknown);
  if (value !== null && typeof value === "object") return Object.values(value).some(containsUnknown);
  return false;
}

/** The engine's bookkeeping key in every dynamic resource's inputs and outputs. */
export const PROVIDER_KEY = "__provider";

/**
 * An input schema built on its first use and kept: the dynamic-provider host checks every resource
 * with it (200 times in a 100-node up, and again in every preview), and building one is most of the
 * check's cost. Built lazily so that loading a resource class in the program builds none.
 */
export function inputSchemaOnce<Schema extends z.ZodObject>(build: () => Schema): () => Schema {
  let schema: Schema | undefined;
  return () => (schema ??= build());
}

/**
 * Validates `news` with a zod object schema and reports problems as Pulumi check failures, each
 * naming the property (`classes.apache.port`). Properties still unknown during a preview are left
 * out of the check (they are checked again at apply, once known) and passed through as they are.
 */
export function checkWith(
  schema: z.ZodObject,
  news: Record<string, unknown>,
): { inputs?: Record<string, unknown>; failures: pulumi.dynamic.CheckFailure[] } {
  const unknowns: Record<string, unknown> = {};
  const known: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(news)) {
    if (key === PROVIDER_KEY) continue;
    if (containsUnknown(value)) unknowns[key] = value;
    else known[key] = value;
  }
  const mask: Record<string, true> & Record<number, never> = {};
  for (const key of Object.keys(unknowns)) if (key in schema.shape) mask[key] = true;
  const result = (Object.keys(mask).length ? schema.partial(mask) : schema).safeParse(known);
  if (!result.success) {
    return {
      failures: result.error.issues.flatMap((issue) => {
        const at = issue.path.map(String);
        if (issue.code === "unrecognized_keys") {
          const known = Object.keys(schema.shape).join(", ");
          return issue.keys.map((key) => ({
            property: [...at, key].join("."),
            reason: `is not an input of this resource (known: ${known})`,
          }));
        }
        return [{ property: at.length ? at.join(".") : "(inputs)", reason: issue.message }];
      }),
    };
  }
  return { inputs: { ...result.data, ...unknowns }, failures: [] };
}

/** The properties among `keys` whose values differ between the old state and the new inputs. */
export function changedProperties(
  olds: Record<string, unknown>,
  news: Record<string, unknown>,
  keys: readonly string[],
): string[] {
  return keys.filter((key) => containsUnknown(news[key]) || !isDeepStrictEqual(olds[key] ?? null, news[key] ?? null));
}

/**
 * Thrown when espm (or AWS) acted but the resource did not finish: the dynamic-provider host sends
 * the id and properties back as `ErrorResourceInitFailed`, so the engine records the resource in
 * state (and a later `up` or `destroy` deals with it) instead of forgetting what exists.
 */
export class ResourceInitError extends Error {
  constructor(
    message: string,
    readonly id: string,
    readonly properties: Record<string, unknown>,
    readonly reasons: string[] = [message],
  ) {
    super(message);
    this.name = "ResourceInitError";
  }
}

/** An error's message without a stack, for people. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The object without its undefined values, which the dynamic-provider host cannot encode. */
export function defined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/**
 * A progress line for the person running `pulumi up`. A dynamic provider has no engine connection
 * (pulumi.log goes nowhere from it); since Pulumi 3.146 the engine shows the provider process's
 * stdout lines as info diagnostics, so that is the channel.
 */
export function progress(message: string): void {
  console.log(message);
}

/** Whether an error proves that nothing was done remotely: nothing to clean up, nothing to record in state. */
export function nothingWasDone(error: unknown): boolean {
  return error instanceof EspmError && error.nothingWasDone;
}

/**
 * A delete at espm where its 404 means nothing of ours is left (a create recorded half-made that
 * never landed, or something espm already removed): that is success; any other error fails with
 * `failure` and espm's reason.
 */
export async function removedAtEspm(remove: () => Promise<unknown>, failure: string): Promise<void> {
  try {
    await remove();
  } catch (error) {
    if (error instanceof EspmError && error.status === 404) return;
    throw new Error(`${failure}: ${messageOf(error)}`);
  }
}

/**
 * The init-failed error for a create that may have acted, carrying everything a later `up`,
 * `refresh` or `destroy` needs: every input (`__provider` among them, without which the
 * dynamic-provider host cannot run anything for the resource) and whatever outputs are known.
 */
export function initFailed(
  message: string,
  id: string,
  inputs: object,
  outputs: Record<string, unknown>,
): ResourceInitError {
  return new ResourceInitError(message, id, defined({ ...inputs, ...outputs }));
}

/**
 * Calls `attempt` until it returns a value, sleeping between calls with a backoff that grows by
 * `factor` up to `maxDelayMs`; gives up (`{ timedOut: true }`) when the next sleep would pass the
 * deadline. An error from `attempt` ends the polling.
 */
export async function poll<T>(
  backoff: { deadline: number; firstDelayMs: number; factor: number; maxDelayMs: number },
  attempt: () => Promise<T | undefined>,
): Promise<{ value: T } | { timedOut: true }> {
  for (let delay = backoff.firstDelayMs; ; delay = Math.min(delay * backoff.factor, backoff.maxDelayMs)) {
    const value = await attempt();
    if (value !== undefined) return { value };
    if (Date.now() + delay > backoff.deadline) return { timedOut: true };
    await sleep(delay);
  }
}

/** Time since `since` (ms), for progress lines: `42s`, `3m07s`. */
export function elapsed(since: number): string {
  const seconds = Math.round((Date.now() - since) / 1000);
  return seconds < 60 ? `${seconds}s` : `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, "0")}s`;
}
