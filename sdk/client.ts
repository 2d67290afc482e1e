/**
 * EspmClient: the typed client of protocol v1, on undici.
 *
 * The server certificate is pinned: during the TLS handshake, before any request (and so the PSK)
 * is sent, the certificate the server presents must have the pinned SHA-256 fingerprint. The host
 * name need not match, since espm's certificate is self-signed and may be reached by IP.
 *
 * POSTs carry an Idempotency-Key made once per call and reused by that call's retries, so a retried
 * create after a lost answer returns the first result instead of creating twice.
 */
import { randomBytes } from "node:crypto";
import { connect as tlsConnect } from "node:tls";
import type { buildConnector, Dispatcher } from "undici";
import { Agent, request } from "./http";
import type { z } from "zod";
import { EspmError } from "./errors";
import {
  ERROR_STATUS,
  IDEMPOTENCY_HEADER,
  schemas,
  type CertificateIssued,
  type CertificateStatus,
  type ClassesResponse,
  type ClassificationInput,
  type CreateNodeInput,
  type Enrollment,
  type EnrollmentInput,
  type EnrollmentIssued,
  type ErrorCode,
  type GroupsResponse,
  type Health,
  type Node,
  type RunsResponse,
} from "./protocol";
import { certificateFingerprint, normalizeFingerprint } from "./keys";

export interface EspmClientOptions {
  /** Base URL, e.g. https://puppet.example.com:8443 */
  url: string;
  psk: string;
  /** The server certificate (PEM) to pin; or give `fingerprint`. */
  certificate?: string;
  /** SHA-256 fingerprint of the server certificate, hex, colons optional, any case. */
  fingerprint?: string;
  /** Per-attempt timeout in milliseconds (default 30 s). */
  timeoutMs?: number;
  /** Attempts for network errors and 5xx answers (default 4). */
  attempts?: number;
  /** First backoff delay in milliseconds, doubled on each retry (default 250). */
  backoffMs?: number;
}

const KNOWN_CODES = new Set(Object.keys(ERROR_STATUS));

function pinnedFingerprint(options: EspmClientOptions): string {
  if (options.certificate) {
    try {
      return certificateFingerprint(options.certificate);
    } catch {
      throw new EspmError(
        0,
        "client_config",
        "the pinned espm certificate is not a PEM certificate; check espm:certificate",
      );
    }
  }
  const normalized = options.fingerprint ? normalizeFingerprint(options.fingerprint) : undefined;
  if (!normalized)
    throw new EspmError(
      0,
      "client_config",
      "pin espm's certificate: give its PEM (espm:certificate) or its SHA-256 fingerprint (espm:fingerprint, 64 hex digits)",
    );
  return normalized;
}

/** A TLS connector that accepts exactly the pinned certificate, checked before the socket is handed to undici. */
function pinningConnector(fingerprint: string, timeoutMs: number): buildConnector.connector {
  return (opts, callback) => {
    const socket = tlsConnect({
      host: opts.hostname,
      port: Number(opts.port),
      // Trust comes from the pin, not from a CA chain or the host name.
      rejectUnauthorized: false,
      ALPNProtocols: ["http/1.1"],
      timeout: timeoutMs,
    });
    let settled = false;
    const settle = (err: Error | null) => {
      if (settled) return;
      settled = true;
      if (err) {
        socket.destroy();
        callback(err, null);
      } else callback(null, socket);
    };
    socket.once("secureConnect", () => {
      const presented = socket.getPeerCertificate().fingerprint256;
      if (presented !== fingerprint) {
        settle(
          new EspmError(
            0,
            "tls_pin_mismatch",
            `espm at ${opts.hostname}:${opts.port} presented a certificate with fingerprint ${presented ?? "none"}, not the pinned ${fingerprint}; check espm:certificate or espm:fingerprint`,
          ),
        );
        return;
      }
      settle(null);
    });
    // Whatever fails before the pinned handshake completes, no request was sent: nothing can have been done.
    const unreachable = (why: string) =>
      new EspmError(
        0,
        "unreachable",
        `cannot connect to espm at ${opts.hostname}:${opts.port}: ${why}; check espm:url (and that espm is running there)`,
      );
    socket.once("timeout", () => settle(unreachable("the TLS handshake timed out")));
    socket.once("error", (err) => settle(unreachable(err.message)));
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One attempt's outcome: an answer, or a failure and whether a retry may mend it. */
type Attempt<T> = { answer: T } | { failed: EspmError; retry: boolean };

/**
 * Runs `attempt` up to `attempts` times, with backoff doubling from `backoffMs`, while it fails in a
 * way a retry may mend. The error thrown at the end is the last one, except that the first failure
 * after which espm may have acted is never hidden behind a later "nothing was done" (a 503, no
 * connection): a caller must not forget what may exist.
 */
async function retrying<T>(attempts: number, backoffMs: number, attempt: () => Promise<Attempt<T>>): Promise<T> {
  let last: EspmError | undefined;
  let mayHaveActed: EspmError | undefined;
  for (let i = 1; i <= attempts; i++) {
    if (i > 1) await sleep(backoffMs * 2 ** (i - 2));
    const outcome = await attempt();
    if ("answer" in outcome) return outcome.answer;
    last = outcome.failed;
    if (!last.nothingWasDone) mayHaveActed ??= last;
    if (!outcome.retry) break;
  }
  if (mayHaveActed && mayHaveActed !== last && last!.nothingWasDone)
    throw new EspmError(
      mayHaveActed.status,
      mayHaveActed.code,
      `${mayHaveActed.message} (retries then failed: ${last!.message})`,
      mayHaveActed.details,
    );
  throw last!;
}

/** A 2xx answer's body read against the schema of its route (undefined for routes with no body). */
function readAnswer<S extends z.ZodType>(
  status: number,
  text: string,
  schema: S | undefined,
  what: string,
): z.output<S> {
  if (!schema) return undefined as z.output<S>;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new EspmError(status, "bad_response", `espm answered ${what} with a body that is not JSON`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success)
    throw new EspmError(
      status,
      "bad_response",
      `espm answered ${what} with a body this client does not understand: ${parsed.error.issues[0]?.message}`,
    );
  return parsed.data;
}

/** What `call` returns for a 304 to a conditional GET. */
const NOT_MODIFIED = Symbol("not modified");

export class EspmClient {
  private readonly base: URL;
  private readonly dispatcher: Dispatcher;
  private readonly psk: string;
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly backoffMs: number;
  constructor(options: EspmClientOptions) {
    try {
      this.base = new URL(options.url);
    } catch {
      throw new EspmError(
        0,
        "client_config",
        `espm URL ${JSON.stringify(options.url)} is not a URL; expected https://HOST:PORT`,
      );
    }
    if (this.base.protocol !== "https:")
      throw new EspmError(0, "client_config", `espm URL must be https://, not ${this.base.protocol}`);
    this.psk = options.psk;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.attempts = Math.max(1, options.attempts ?? 4);
    this.backoffMs = options.backoffMs ?? 250;
    this.dispatcher = new Agent({
      connect: pinningConnector(pinnedFingerprint(options), this.timeoutMs),
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
  }

  health(): Promise<Health> {
    return this.call("GET", "/v1/health", schemas.health);
  }

  groups(): Promise<GroupsResponse> {
    return this.call("GET", "/v1/groups", schemas.groupsResponse);
  }

  classes(environment?: string): Promise<ClassesResponse> {
    const query = environment ? `?environment=${encodeURIComponent(environment)}` : "";
    return this.call("GET", `/v1/classes${query}`, schemas.classesResponse);
  }

  registerNode(node: CreateNodeInput): Promise<Node> {
    return this.call("POST", "/v1/nodes", schemas.node, node);
  }

  /** The node, or undefined when espm has no live node of that name. */
  async getNode(name: string): Promise<Node | undefined> {
    return this.orUndefined(() => this.call("GET", `/v1/nodes/${encodeURIComponent(name)}`, schemas.node));
  }

  updateNode(name: string, classification: ClassificationInput): Promise<Node> {
    return this.call("PUT", `/v1/nodes/${encodeURIComponent(name)}`, schemas.node, classification);
  }

  async deleteNode(name: string): Promise<void> {
    await this.call("DELETE", `/v1/nodes/${encodeURIComponent(name)}`);
  }

  signCertificate(certname: string, csr: string): Promise<CertificateIssued> {
    return this.call("POST", `/v1/certificates/${encodeURIComponent(certname)}`, schemas.certificateIssued, { csr });
  }

  /** The certificate's state at the CA, or undefined when espm never signed one of that name. */
  async certificateStatus(certname: string): Promise<CertificateStatus | undefined> {
    return this.orUndefined(() =>
      this.call("GET", `/v1/certificates/${encodeURIComponent(certname)}`, schemas.certificateStatus),
    );
  }

  async revokeCertificate(certname: string): Promise<void> {
    await this.call("DELETE", `/v1/certificates/${encodeURIComponent(certname)}`);
  }

  /**
   * A one-time enrollment token for a registered node that makes its own key. A retry is safe: a
   * new token replaces one that was never presented.
   */
  enroll(certname: string, input: EnrollmentInput = {}): Promise<EnrollmentIssued> {
    return this.call("POST", `/v1/enrollments/${encodeURIComponent(certname)}`, schemas.enrollmentIssued, input);
  }

  /** The enrollment's state (never its token), or undefined when espm has none for that name. */
  async enrollment(certname: string): Promise<Enrollment | undefined> {
    return this.orUndefined(() =>
      this.call("GET", `/v1/enrollments/${encodeURIComponent(certname)}`, schemas.enrollment),
    );
  }

  /** A new time to live for a token not yet presented; a used one is left as it is. */
  updateEnrollment(certname: string, ttlMinutes: number): Promise<Enrollment> {
    return this.call("PUT", `/v1/enrollments/${encodeURIComponent(certname)}`, schemas.enrollment, { ttlMinutes });
  }

  /** Revokes and cleans whatever was signed through the enrollment, and invalidates an unused token. */
  async deleteEnrollment(certname: string): Promise<void> {
    await this.call("DELETE", `/v1/enrollments/${encodeURIComponent(certname)}`);
  }

  /** The node's Puppet runs as espm read them from Puppet Server's reports, newest first; undefined for a node espm did not create. */
  async nodeRuns(name: string, limit?: number): Promise<RunsResponse | undefined> {
    const query = limit === undefined ? "" : `?limit=${limit}`;
    return this.orUndefined(() =>
      this.call("GET", `/v1/nodes/${encodeURIComponent(name)}/runs${query}`, schemas.runsResponse),
    );
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  private async orUndefined<T>(call: () => Promise<T>): Promise<T | undefined> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof EspmError && err.status === 404) return undefined;
      throw err;
    }
  }

  /**
   * The groups, or undefined when the caller's copy (tagged `etag`) is still current: one request
   * that costs espm a header. The answer carries the ETag to revalidate with next time.
   */
  groupsIfChanged(etag?: string): Promise<{ value: GroupsResponse; etag?: string } | undefined> {
    return this.conditional("/v1/groups", schemas.groupsResponse, etag);
  }

  /** The classes of an environment (espm's default when none), or undefined when the caller's copy is current. */
  classesIfChanged(
    environment?: string,
    etag?: string,
  ): Promise<{ value: ClassesResponse; etag?: string } | undefined> {
    const query = environment ? `?environment=${encodeURIComponent(environment)}` : "";
    return this.conditional(`/v1/classes${query}`, schemas.classesResponse, etag);
  }

  private async conditional<S extends z.ZodType>(
    path: string,
    schema: S,
    etag: string | undefined,
  ): Promise<{ value: z.output<S>; etag?: string } | undefined> {
    let seen: string | undefined;
    const value = await this.call("GET", path, schema, undefined, {
      headers: etag ? { "if-none-match": etag } : {},
      etag: (tag) => (seen = tag),
    });
    return value === NOT_MODIFIED ? undefined : { value: value as z.output<S>, etag: seen };
  }

  /**
   * One request of the protocol: retried (retrying) over one attempt at a time (attempt), whose
   * answer is read against its schema (readAnswer) or mapped to espm's error (errorFrom).
   */
  private call<S extends z.ZodType>(
    method: string,
    path: string,
    schema?: S,
    body?: unknown,
    conditional?: { headers: Record<string, string>; etag: (etag: string | undefined) => void },
  ): Promise<z.output<S>> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.psk}`,
      accept: "application/json",
      ...conditional?.headers,
    };
    if (body !== undefined) headers["content-type"] = "application/json";
    // Made once per call, so that its retries carry the same key.
    if (method === "POST") headers[IDEMPOTENCY_HEADER] = randomBytes(18).toString("base64url");
    const what = `${method} ${path}`;
    return retrying(this.attempts, this.backoffMs, async (): Promise<Attempt<z.output<S>>> => {
      const sent = await this.attempt(method, path, headers, body);
      if ("failed" in sent) return sent;
      const { response, text } = sent;
      if (conditional) {
        const etag = response.headers.etag;
        conditional.etag(typeof etag === "string" ? etag : undefined);
        if (response.statusCode === 304) return { answer: NOT_MODIFIED as z.output<S> };
      }
      if (response.statusCode >= 200 && response.statusCode < 300)
        return { answer: readAnswer(response.statusCode, text, schema, what) };
      const failed = this.errorFrom(response.statusCode, text, what);
      // Refusals do not change on a retry: 4xx, and a 503 for something espm is not set up to do.
      return { failed, retry: response.statusCode >= 500 && failed.code !== "not_configured" };
    });
  }

  /**
   * The transport: one request and its whole body, or the failure when no answer came. No
   * connection is worth a retry (espm may be restarting); a pin mismatch or a bad config is thrown,
   * since it will not change.
   */
  private async attempt(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: unknown,
  ): Promise<{ response: Dispatcher.ResponseData; text: string } | { failed: EspmError; retry: true }> {
    try {
      const response = await request(new URL(path, this.base).toString(), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        dispatcher: this.dispatcher,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      return { response, text: await response.body.text() };
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause;
      const known = err instanceof EspmError ? err : cause instanceof EspmError ? cause : undefined;
      if (known?.code === "unreachable") return { failed: known, retry: true };
      if (known) throw known;
      const lost = `${method} ${path} to espm at ${this.base.host} failed: ${(err as Error).message}`;
      return { failed: new EspmError(0, "network", lost), retry: true };
    }
  }

  private errorFrom(status: number, text: string, what: string): EspmError {
    // espm's own 401 message is advice for curl users; a Pulumi user fixes the stack's config.
    if (status === 401)
      return new EspmError(
        401,
        "unauthorized",
        `espm at ${this.base.host} refused the PSK: check espm:psk (or the resource's connection)`,
      );
    try {
      const parsed = schemas.errorBody.safeParse(JSON.parse(text));
      if (parsed.success) {
        const { code, message, details } = parsed.data.error;
        return new EspmError(
          status,
          KNOWN_CODES.has(code) ? (code as ErrorCode) : "bad_response",
          `espm: ${message}`,
          details,
        );
      }
    } catch {
      // not JSON: fall through to a generic message
    }
    return new EspmError(status, "bad_response", `espm answered ${what} with HTTP ${status}`);
  }
}
