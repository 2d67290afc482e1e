/**
 * Opens the store espm.ini names: SQLite (`[store] database = PATH`, the default) or PostgreSQL
 * (`[store] url = postgres://USER@HOST:PORT/DB`, with the password in `password_file`). The
 * PostgreSQL driver loads only for a PostgreSQL store.
 */
import type { EspmConfig } from "./config";
import type { Store } from "./store";
import { openSqliteStore } from "./store-sqlite";

export async function openStore(config: EspmConfig): Promise<Store> {
  return openSqliteStore(config.store.database);
}
