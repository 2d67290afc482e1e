/**
 * Idempotency-Key handling for POSTs. A retry with the same key and the same body gets the first
 * answer and creates nothing; the same key with another body is a 422. A retry that arrives while
 * the first attempt is still running waits for it rather than running the create twice.
 * Records are kept 24 hours (see Store).
 */
import { createHash } from "node:crypto";
import { IDEMPOTENCY_KEY_PATTERN } from "espm-sdk/protocol";
import { ApiError } from "./errors";
import type { Store, StoreOps } from "../store/store";

export interface Outcome {
  status: number;
  body: unknown;
}

export interface IdempotentRequest {
  key: string | undefined;
  /** Method and path: a key is bound to the operation it was first used for. */
  scope: string;
  body: unknown;
}

export class Idempotency {
  private readonly inFlight = new Map<string, { bodyHash: string; scope: string; outcome: Promise<Outcome> }>();

  constructor(private readonly store: Store) {}

  /**
   * Runs `create` once per key, across every espm process sharing the store. `create` receives a
   * `remember` callback to call, with the transaction's handle, inside the same store transaction
   * that records what it created, so the record and the creation land together.
   */
  async run(
    request: IdempotentRequest,
    create: (remember: (tx: StoreOps, outcome: Outcome) => Promise<void>) => Promise<Outcome>,
  ): Promise<Outcome> {
    const { key, scope } = request;
    if (key === undefined) return create(async () => {});
    if (!IDEMPOTENCY_KEY_PATTERN.test(key)) {
      throw new ApiError(
        "invalid_request",
        "Idempotency-Key must be 16 to 128 characters of letters, digits, '-' or '_'",
        [{ field: "Idempotency-Key", message: "invalid format" }],
      );
    }
    const bodyHash = hashBody(request.body);
    const mismatch = () =>
      new ApiError(
        "unprocessable",
        "this Idempotency-Key was already used for a different request; make a new key for a new create",
        [{ field: "Idempotency-Key", message: "reused with a different body" }],
      );

    const running = this.inFlight.get(key);
    if (running) {
      if (running.bodyHash !== bodyHash || running.scope !== scope) throw mismatch();
      return running.outcome;
    }
    const remember = (tx: StoreOps, outcome: Outcome) =>
      tx.saveIdempotency(key, { scope, bodyHash, status: outcome.status, response: outcome.body }, Date.now());
    // Another process may be running this key: the store's exclusion waits for it, then the
    // record it left answers.
    const outcome = this.store.exclusive(key, async () => {
      const stored = await this.store.idempotency(key, Date.now());
      if (stored) {
        if (stored.bodyHash !== bodyHash || stored.scope !== scope) throw mismatch();
        return { status: stored.status, body: stored.response };
      }
      return create(remember);
    });
    this.inFlight.set(key, { bodyHash, scope, outcome });
    try {
      return await outcome;
    } finally {
      this.inFlight.delete(key);
    }
  }
}

/** JSON with object keys sorted, so that equal bodies hash equally whatever their key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export function hashBody(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value)).digest("hex");
}
