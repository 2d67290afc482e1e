import type { ErrorCode } from "./protocol";

/**
 * An error answered by espm or met on the way to it. It carries the HTTP status (0 when no answer
 * came), the protocol's error code and a message for people. It never carries the PSK: the client
 * builds messages only from the URL, the status and espm's own error body.
 *
 * `unreachable` and `tls_pin_mismatch` mean the request never left this process (no connection, or
 * not to the pinned espm): nothing can have been done. `network` means a request was sent and its
 * answer lost: espm may have acted.
 */
export class EspmError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode | "network" | "unreachable" | "tls_pin_mismatch" | "bad_response" | "client_config",
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = "EspmError";
  }
}
