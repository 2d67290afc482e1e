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

  /**
   * Whether this failure proves that espm did nothing: the request never reached it (no
   * connection, not the pinned espm, a bad config), or espm refused before acting (every 4xx, and
   * 503, which espm answers only before it acts). Anything else (an answer lost, another 5xx, an
   * answer this client cannot read) may follow an action.
   */
  get nothingWasDone(): boolean {
    if (this.code === "unreachable" || this.code === "tls_pin_mismatch" || this.code === "client_config") return true;
    return (this.status >= 400 && this.status < 500) || this.status === 503;
  }
}
