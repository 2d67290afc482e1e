/**
 * Opens the store espm.ini names: SQLite (`[store] database = PATH`, the default) or PostgreSQL
 * (`[store] url = postgres://USER@HOST:PORT/DB`, with the password in `password_file`). The
 * PostgreSQL driver loads only for a PostgreSQL store.
 */
import type { Group } from "espm-sdk/protocol";
import type { PuppetServerNames } from "../ca/certname-policy";
import type { EspmConfig } from "../config/config";
import type { EncPublication } from "../enc/export";
import type { Store } from "./store";
import { openSqliteStore } from "./sqlite";

export async function openStore(config: EspmConfig): Promise<Store> {
  const { database, url, password_file: passwordFile, enc_role: encRole } = config.store;
  if (url) {
    const { openPostgresStore } = await import("./postgres");
    return openPostgresStore({ url, passwordFile, encRole });
  }
  return openSqliteStore(database!);
}

/**
 * What `espm enc` reads, when it reads the PostgreSQL store: the nodes are there already, and the
 * validated groups and Puppet Server's names are published there for every espm process and compile master.
 */
export class StorePublication implements EncPublication {
  /** Where a failed publication is reported (the daemon's log, once it has one). */
  onError: (err: Error) => void = (err) =>
    process.stderr.write(`espm: publishing to the store failed: ${err.message}\n`);

  constructor(private readonly store: Store) {}

  writeNode(): void {}

  removeNode(): void {}

  distrust(): void {}

  writeGroups(groups: Map<string, Group>): void {
    this.store.publishGroups?.(groups).catch((err: Error) => this.onError(err));
  }

  writeServerNames(names: PuppetServerNames): void {
    this.store.publishServerNames?.(names).catch((err: Error) => this.onError(err));
  }
}
