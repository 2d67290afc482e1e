import type { ErrorCode } from "./protocol";

/**
 * An error answered by espm or met on the way to it. It carries the HTTP status (0 when no answer
 * came), the protocol's error code and a message for people. It never carries the PSK: the client
 * builds messages only from the URL, the status and espm's own error body.
 */
export class EspmError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode | "network" | "tls_pin_mismatch" | "bad_response" | "client_config",
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = "EspmError";
  }
}
