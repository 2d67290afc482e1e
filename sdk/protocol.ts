/**
 * The espm wire contract, protocol v1. The agent validates every request with these schemas and
 * the client parses every response with them, so the two sides cannot drift apart.
 */
import { z } from "zod";
import { nameProblem } from "./names";
import { EXTENSION_VALUE_PATTERN, PUPPET_EXTENSIONS } from "./puppet-extensions";

export { NAME_PATTERN, nameProblem, suffixedName } from "./names";

export const PROTOCOL_VERSION = "v1";

const name = z.string().superRefine((value, ctx) => {
  const problem = nameProblem(value);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});
const identifier = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z_][A-Za-z0-9_:]*$/, "must be a Puppet identifier");
const environment = z.string().regex(/^[a-z0-9_]{1,64}$/, "must be lowercase letters, digits or '_'");
const parameters = z.record(z.string().min(1).max(200), z.json());
const classes = z.record(identifier, parameters);

const classification = z.strictObject({
  environment: environment.optional(),
  groups: z.array(z.string().min(1).max(200)).max(100).default([]),
  classes: classes.default({}),
  parameters: parameters.default({}),
});
const createNodeRequest = classification.extend({ name });
const node = z.object({
  name,
  environment,
  groups: z.array(z.string()),
  classes,
  parameters,
  createdAt: z.string(),
  updatedAt: z.string(),
});

const group = z
  .object({
    name: z.string(),
    description: z.string().optional(),
    environment: environment.optional(),
    classes,
    parameters,
  })
  .meta({ id: "Group" });
const groupsResponse = z.object({ groups: z.array(group) });

const classParameter = z
  .object({
    name: z.string(),
    /** Puppet's data type as the class declares it, e.g. `Integer[1, 65535]`. */
    type: z.string().optional(),
    /** The default's source text, when the class gives one. */
    default: z.string().optional(),
    /** False for a required parameter: without a value from a group, the node or Hiera, the catalog fails. */
    hasDefault: z.boolean(),
  })
  .meta({ id: "ClassParameter" });
const puppetClass = z.object({ name: z.string(), parameters: z.array(classParameter) }).meta({ id: "PuppetClass" });
const classesResponse = z.object({ environment, classes: z.array(puppetClass) });

const csr = z
  .string()
  .max(32 * 1024)
  .regex(
    /^-----BEGIN CERTIFICATE REQUEST-----[\s\S]+-----END CERTIFICATE REQUEST-----\s*$/,
    "must be one PEM certificate request",
  );
const signRequest = z.strictObject({ csr });
const certificateIssued = z.object({
  certname: name,
  certificate: z.string(),
  caCertificate: z.string(),
  crl: z.string(),
  serial: z.string(),
  notAfter: z.string(),
});
const certificateStatus = z.object({
  certname: name,
  state: z.enum(["signed", "revoked", "requested", "absent"]),
  serial: z.string().optional(),
  notAfter: z.string().optional(),
});

/**
 * An enrollment: a one-time token for a registered node, so that the node makes its own key and
 * Puppet's policy-based autosigning (`espm autosign`) signs its CSR. Extensions are the `pp_*`
 * extensions the CSR may carry, with their values; pp_instance_id is always allowed.
 */
const extensions = z
  .record(
    z.string().refine((n) => n in PUPPET_EXTENSIONS && n !== "pp_instance_id", {
      error: (issue) =>
        `${JSON.stringify(issue.input)} is not a Puppet extension espm allows (pp_instance_id is always allowed; others: ${Object.keys(PUPPET_EXTENSIONS).join(", ")})`,
    }),
    z.string().regex(EXTENSION_VALUE_PATTERN, "must be 1 to 255 printable characters, without quotes or backslashes"),
  )
  .refine((e) => Object.keys(e).length <= 20, "at most 20 extensions");
const enrollmentRequest = z.strictObject({
  ttlMinutes: z
    .number()
    .int()
    .min(1)
    .max(7 * 24 * 60)
    .default(60),
  extensions: extensions.default({}),
});
const enrollmentState = z.enum(["issued", "used", "signed", "refused", "expired", "revoked"]);
const enrollment = z.object({
  certname: name,
  state: enrollmentState,
  expiresAt: z.string(),
  extensions: z.record(z.string(), z.string()),
  /** The serial of the certificate signed through the enrollment, once espm has learned it. */
  serial: z.string().optional(),
  /** Why the last CSR presented was refused, when it was. */
  reason: z.string().optional(),
});
const enrollmentIssued = enrollment.extend({
  /** The one-time token: shown once, here; espm keeps only its hash. */
  token: z.string(),
  /** The Puppet CA's certificate bundle, for the node to trust from its first connection. */
  caCertificate: z.string(),
});
const enrollmentUpdate = z.strictObject({
  ttlMinutes: z
    .number()
    .int()
    .min(1)
    .max(7 * 24 * 60),
});

const count = z.number().int().min(0);
const puppetRun = z.object({
  /** When the run started, ISO 8601. */
  time: z.string(),
  status: z.enum(["changed", "unchanged", "failed"]),
  transactionUuid: z.string().optional(),
  environment: z.string().optional(),
  puppetVersion: z.string().optional(),
  resources: z.object({ total: count, changed: count, failed: count, skipped: count, outOfSync: count }),
  /** The run's error lines (level err and above), deduplicated and bounded; empty unless failed. */
  errors: z.array(z.string()),
});
const runsResponse = z.object({ name, runs: z.array(puppetRun) });

const backendStatus = z.object({
  status: z.enum(["ok", "down", "not_configured"]),
  detail: z.string().optional(),
});
// Without the PSK, health says only up ("ok") or down; the rest comes with the PSK.
const health = z.object({
  status: z.enum(["ok", "down"]),
  version: z.string().optional(),
  protocol: z.literal(PROTOCOL_VERSION).optional(),
  backends: z.record(z.string(), backendStatus).optional(),
});

const errorBody = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.unknown().optional(),
  }),
});

/** Every schema of protocol v1, by name. */
export const schemas = {
  name,
  environment,
  classification,
  createNodeRequest,
  node,
  group,
  groupsResponse,
  puppetClass,
  classesResponse,
  signRequest,
  certificateIssued,
  certificateStatus,
  enrollmentRequest,
  enrollmentUpdate,
  enrollment,
  enrollmentIssued,
  puppetRun,
  runsResponse,
  backendStatus,
  health,
  errorBody,
};

export type Protocol = typeof schemas;
export type Classification = z.output<Protocol["classification"]>;
export type ClassificationInput = z.input<Protocol["classification"]>;
export type CreateNodeRequest = z.output<Protocol["createNodeRequest"]>;
export type CreateNodeInput = z.input<Protocol["createNodeRequest"]>;
export type Node = z.output<Protocol["node"]>;
export type Group = z.output<Protocol["group"]>;
export type GroupsResponse = z.output<Protocol["groupsResponse"]>;
export type PuppetClass = z.output<Protocol["puppetClass"]>;
export type ClassesResponse = z.output<Protocol["classesResponse"]>;
export type SignRequest = z.output<Protocol["signRequest"]>;
export type CertificateIssued = z.output<Protocol["certificateIssued"]>;
export type CertificateStatus = z.output<Protocol["certificateStatus"]>;
export type EnrollmentInput = z.input<Protocol["enrollmentRequest"]>;
export type Enrollment = z.output<Protocol["enrollment"]>;
export type EnrollmentIssued = z.output<Protocol["enrollmentIssued"]>;
export type PuppetRun = z.output<Protocol["puppetRun"]>;
export type RunsResponse = z.output<Protocol["runsResponse"]>;
export type Health = z.output<Protocol["health"]>;
export type BackendStatus = z.output<Protocol["backendStatus"]>;
export type ErrorBody = z.output<Protocol["errorBody"]>;

/** Error codes of protocol v1, each with the HTTP status it travels with. */
/**
 * The environment a node is classified in: its own, else that of the first of its groups that names
 * one; undefined leaves it to espm's default. espm stores it with the node, and preview validation
 * checks classes against it, so both sides use this one rule.
 */
export function nodeEnvironment(
  node: { environment?: string; groups: readonly string[] },
  groupEnvironment: (group: string) => string | undefined,
): string | undefined {
  return node.environment ?? node.groups.map(groupEnvironment).find((e) => e !== undefined);
}

export const ERROR_STATUS = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unprocessable: 422,
  too_many_requests: 429,
  internal: 500,
  /** A backend espm needs is down or not yet ready: retry later. Nothing was done. */
  backend_unavailable: 503,
  /** espm is not set up for this call (no CA, no report directory): retrying cannot help. Nothing was done. */
  not_configured: 503,
  backend_error: 502,
} as const;
export type ErrorCode = keyof typeof ERROR_STATUS;

/** Header carrying the client's key for one logical create; reused only by that create's retries. */
export const IDEMPOTENCY_HEADER = "idempotency-key";
export const IDEMPOTENCY_KEY_PATTERN = /^[A-Za-z0-9_-]{16,128}$/;
