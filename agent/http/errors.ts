/** The error shape of protocol v1 and the helpers routes use to produce it. */
import type { FastifyReply } from "fastify";
import type { z } from "zod";
import { ERROR_STATUS, nameProblem, type ErrorCode } from "espm-sdk/protocol";
import type { CertnamePolicy } from "../ca/certname-policy";

export class ApiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  const body: { error: { code: string; message: string; details?: unknown } } = {
    error: { code: error.code, message: error.message },
  };
  if (error.details !== undefined) body.error.details = error.details;
  return reply.code(error.status).type("application/json").send(body);
}

/** Parses `value` with `schema`, or throws a 400 that names every offending field. */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const details = result.error.issues.map((issue) => ({
    field: issue.path.length ? issue.path.join(".") : what,
    message: issue.message,
  }));
  const summary = details
    .slice(0, 5)
    .map((d) => `${d.field}: ${d.message}`)
    .join("; ");
  throw new ApiError("invalid_request", `invalid ${what}: ${summary}`, details);
}

/** Validates a name from the URL before anything else happens. */
export function checkName(value: string, field: string): string {
  const problem = nameProblem(value);
  if (problem) throw new ApiError("invalid_request", `${field} ${problem}`, [{ field, message: problem }]);
  return value;
}

/**
 * Throws unless the certname policy lets espm sign and classify `name`: a 403 naming the rule that
 * refused it, or a 503 while Puppet Server's own names are not yet known. Called before any backend.
 */
export function checkAllowed(policy: CertnamePolicy, name: string, field: string): void {
  const refusal = policy.refusal(name);
  if (!refusal) return;
  if (refusal.unknown) throw new ApiError("backend_unavailable", refusal.message);
  throw new ApiError("forbidden", `${field} refused by the certname policy (${refusal.rule}): ${refusal.message}`, [
    { field, message: `refused: ${refusal.rule}` },
  ]);
}
