/**
 * The espm HTTP server: fastify with its body limit and pino logging, PSK authentication on every
 * route but health, and the error shape of protocol v1 for every failure, expected or not.
 *
 * No client can hold espm: the TLS handshake, the request headers and the whole request each have a
 * deadline of seconds (checked every second), so slowloris and slow-body connections are cut off,
 * authenticated or not. JSON bodies nested deeper than MAX_JSON_DEPTH are refused before parsing.
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { jsonDepthExceeds, MAX_JSON_DEPTH } from "./json-depth";
import type { AgentContext } from "./context";
import { bearerToken, FailureThrottle, pskMatches } from "./auth";
import { BackendError, CaRefusal } from "../puppetserver/contract";
import { ApiError, sendError } from "./errors";
import { certificateRoutes } from "../routes/certificates";
import { discoveryRoutes } from "../routes/discovery";
import { enrollmentRoutes } from "../routes/enrollments";
import { healthRoutes } from "../routes/health";
import { nodeRoutes } from "../routes/nodes";
import { runRoutes } from "../routes/runs";

export interface ServerOptions {
  psk: string;
  tls?: { key: string; cert: string };
  /** false silences the log (tests); otherwise JSON lines on stdout. */
  logger?: boolean;
}

/**
 * TLS 1.2 suites with forward secrecy and authenticated encryption only (TLS 1.3's are all AEAD):
 * no CBC suites such as AES128-SHA.
 */
const AEAD_CIPHERS = [
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
  "TLS_AES_128_GCM_SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
].join(":");

declare module "fastify" {
  interface FastifyRequest {
    /** Whether the request carried the right PSK (health answers more to those that did). */
    authenticated: boolean;
  }
}

function fastifyErrorToApi(error: FastifyError, bodyLimit: number): ApiError | undefined {
  switch (error.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new ApiError(
        "payload_too_large",
        `the request body is larger than espm accepts (${bodyLimit} bytes at most)`,
      );
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new ApiError("unsupported_media_type", "send the request body as application/json");
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new ApiError("invalid_request", "the request body is empty; send a JSON object", [
        { field: "body", message: "empty" },
      ]);
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new ApiError("invalid_request", `the request body is not valid JSON: ${error.message}`, [
        { field: "body", message: "malformed JSON" },
      ]);
  }
  if (error instanceof SyntaxError || error.statusCode === 400) {
    return new ApiError("invalid_request", `the request body is not valid JSON: ${error.message}`, [
      { field: "body", message: "malformed JSON" },
    ]);
  }
  if (error.statusCode === 413)
    return new ApiError(
      "payload_too_large",
      `the request body is larger than espm accepts (${bodyLimit} bytes at most)`,
    );
  if (error.statusCode === 415)
    return new ApiError("unsupported_media_type", "send the request body as application/json");
  return undefined;
}

export function buildServer(ctx: AgentContext, options: ServerOptions): FastifyInstance {
  const limits = ctx.config.server;
  // Node checks the header and request deadlines on this interval (30 s by default).
  const deadlines = { headersTimeout: limits.headers_timeout_seconds * 1000, connectionsCheckingInterval: 1000 };
  const app = Fastify({
    https: options.tls
      ? {
          key: options.tls.key,
          cert: options.tls.cert,
          minVersion: "TLSv1.2",
          ciphers: AEAD_CIPHERS,
          honorCipherOrder: true,
          handshakeTimeout: limits.headers_timeout_seconds * 1000,
          ...deadlines,
        }
      : null,
    requestTimeout: limits.request_timeout_seconds * 1000,
    // An idle connection (no bytes either way) is closed after the request deadline too.
    connectionTimeout: limits.request_timeout_seconds * 1000,
    bodyLimit: limits.body_limit,
    return503OnClosing: true,
    // Long enough for a 253-character name, so that a longer one gets our 400 naming the field.
    routerOptions: { maxParamLength: 512 },
    // Forbid prototype pollution through JSON bodies outright.
    onProtoPoisoning: "error",
    onConstructorPoisoning: "error",
    logger:
      options.logger === false
        ? false
        : {
            level: "info",
            redact: {
              paths: ["req.headers.authorization", "psk", "*.psk", "privateKey", "*.privateKey"],
              censor: "[redacted]",
            },
          },
  }) as unknown as FastifyInstance;

  // On stop, in-flight requests finish; their answers close the connection, so that an idle
  // keep-alive socket does not hold the process open for the keep-alive timeout.
  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
  });
  app.addHook("onSend", async (_request, reply) => {
    if (closing) reply.header("connection", "close");
  });

  // JSON only: fastify's default text/plain parser would let a non-JSON body reach the routes.
  app.removeContentTypeParser("text/plain");
  // Nesting is checked on the raw text before parsing, so no route or validator ever recurses
  // through a hostile body, and whatever the API accepts `espm enc` can render.
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    if (jsonDepthExceeds(body as string, MAX_JSON_DEPTH)) {
      done(
        new ApiError("invalid_request", `the request body is nested deeper than ${MAX_JSON_DEPTH} levels`, [
          { field: "body", message: "too deep" },
        ]),
        undefined,
      );
      return;
    }
    void parseJson(request, body as string, done);
  });

  const throttle = new FailureThrottle(
    ctx.config.server.auth_failures_allowed,
    ctx.config.server.auth_failure_window_seconds * 1000,
  );
  /** The answer to a request without the right PSK, slower for an address that keeps failing. */
  const refuse = (request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const wait = throttle.retryAfter(request.ip);
    if (wait > 0) {
      reply.header("retry-after", String(wait));
      return sendError(
        reply,
        new ApiError(
          "too_many_requests",
          `too many failed authentication attempts from ${request.ip}; retry in ${wait} s with the right PSK`,
        ),
      );
    }
    throttle.recordFailure(request.ip);
    request.log.warn({ address: request.ip }, "authentication failed");
    return sendError(
      reply,
      new ApiError("unauthorized", "missing or wrong PSK: send it as 'Authorization: Bearer <psk>'"),
    );
  };

  app.decorateRequest("authenticated", false);
  app.addHook("onRequest", async (request) => {
    request.authenticated = pskMatches(options.psk, bearerToken(request.headers.authorization));
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof ApiError) return sendError(reply, error);
    if (error instanceof CaRefusal) {
      return sendError(
        reply,
        new ApiError(error.isConflict ? "conflict" : "unprocessable", error.message, [
          { field: "csr", message: error.reason },
        ]),
      );
    }
    if (error instanceof BackendError) {
      request.log.warn({ err: error.message }, "backend error");
      return sendError(
        reply,
        new ApiError(error.status === 503 ? "backend_unavailable" : "backend_error", error.message),
      );
    }
    const mapped = fastifyErrorToApi(error, limits.body_limit);
    if (mapped) return sendError(reply, mapped);
    request.log.error({ err: error }, "unexpected error");
    return sendError(reply, new ApiError("internal", "espm failed to handle the request; its log has the details"));
  });

  // An unknown path is refused like any other without the PSK, so that it tells a stranger nothing.
  app.setNotFoundHandler((request, reply) =>
    request.authenticated
      ? sendError(reply, new ApiError("not_found", `no such endpoint: ${request.method} ${request.url.split("?")[0]}`))
      : refuse(request, reply),
  );

  // Health answers anyone; every other route needs the PSK.
  void app.register(healthRoutes, { ctx });
  void app.register(async (authenticated) => {
    authenticated.addHook("onRequest", async (request, reply) => {
      if (!request.authenticated) return refuse(request, reply);
    });
    await authenticated.register(discoveryRoutes, { ctx });
    await authenticated.register(nodeRoutes, { ctx });
    await authenticated.register(runRoutes, { ctx });
    await authenticated.register(certificateRoutes, { ctx });
    await authenticated.register(enrollmentRoutes, { ctx });
  });
  return app;
}
