/**
 * Imports nothing: `espm enc` on PostgreSQL loads it (through the store's connection code) for every
 * catalog compile, which must not pay for the protocol's schemas.
 */

/**
 * A backend (Puppet Server, PuppetDB, the PostgreSQL store) that answered wrongly or not at all.
 * `status` is the HTTP status espm passes on: 503 when the backend could not be reached, 502 when
 * it answered with an error.
 */
export class BackendError extends Error {
  override name = "BackendError";
  constructor(
    readonly status: 502 | 503,
    message: string,
  ) {
    super(message);
  }
}
