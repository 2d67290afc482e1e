/**
 * The PostgreSQL store, for sites with several espm processes and compile masters (which already
 * run PostgreSQL for PuppetDB). The same semantics as the SQLite store:
 *
 * - one live node per name (a partial unique index), deleted nodes kept as tombstones;
 * - an idempotency record written in the create's own transaction, and one create per key across
 *   processes: a retry waits on a session advisory lock the first attempt holds (released by
 *   PostgreSQL if that process dies), then reads the record;
 * - an append-only audit log: espm's role has no UPDATE, DELETE or TRUNCATE on it, and a trigger
 *   refuses them to anyone;
 * - a commit before every answer (synchronous_commit stays on).
 *
 * Migrations are numbered, applied at start-up in one transaction under an advisory lock, so two
 * processes starting at once apply each step once. The validated groups live here too, so every
 * espm process and every compile master's `espm enc` (read-only role, see enc/postgres.ts) agree.
 */
import { Kysely, PostgresDialect, type Transaction } from "kysely";
import { Pool } from "pg";
import type { Group } from "espm-sdk/protocol";
import type { PuppetServerNames } from "../ca/certname-policy";
import { BackendError } from "../http/backend-error";
import { connectionConfig, describeUrl, readPassword } from "./postgres-connection";
import { storeQueries, type Dialect, type Tables } from "./queries";
import type { Store, StoreOps } from "./store";

/** Each step brings the schema from version i to i + 1 (version 1: everything SQLite's version 3 has). */
const MIGRATIONS = [
  `
CREATE TABLE nodes (
  id BIGSERIAL PRIMARY KEY,
  name TEXT NOT NULL,
  environment TEXT NOT NULL,
  groups TEXT NOT NULL,
  classes TEXT NOT NULL,
  parameters TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  deleted_at TEXT
);
CREATE UNIQUE INDEX nodes_live_name ON nodes(name) WHERE deleted_at IS NULL;
CREATE INDEX nodes_name ON nodes(name);

CREATE TABLE certificates (
  id BIGSERIAL PRIMARY KEY,
  certname TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('requested', 'signed', 'revoked')),
  serial TEXT,
  not_after TEXT,
  public_key TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX certificates_certname ON certificates(certname);

CREATE TABLE enrollments (
  id BIGSERIAL PRIMARY KEY,
  certname TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  extensions TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('issued', 'used', 'signed', 'refused', 'revoked')),
  public_key TEXT,
  serial TEXT,
  reason TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX enrollments_live ON enrollments(certname) WHERE state <> 'revoked';

CREATE TABLE idempotency (
  key TEXT PRIMARY KEY,
  scope TEXT NOT NULL,
  body_hash TEXT NOT NULL,
  status INTEGER NOT NULL,
  response TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX idempotency_created ON idempotency(created_at);

CREATE TABLE audit (
  id BIGSERIAL PRIMARY KEY,
  at TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT,
  outcome TEXT NOT NULL,
  detail TEXT
);
CREATE FUNCTION espm_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
  FOR EACH ROW EXECUTE FUNCTION espm_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
  FOR EACH STATEMENT EXECUTE FUNCTION espm_audit_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM PUBLIC, CURRENT_USER;

CREATE TABLE groups_snapshot (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  groups TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
`,
  // Version 2: deleted nodes keep no classification; the names of Puppet Server and its compile
  // masters as espm learned them, so that `espm enc` applies the whole certname policy; an index
  // for the deletions `espm enc` drops from its cache.
  `
UPDATE nodes SET groups = '[]', classes = '{}', parameters = '{}' WHERE deleted_at IS NOT NULL;
CREATE INDEX nodes_deleted_at ON nodes(deleted_at) WHERE deleted_at IS NOT NULL;
CREATE TABLE server_names_snapshot (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  names TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
`,
  // Version 3: every change of what `espm enc` reads notifies espm_enc when it commits, whatever
  // wrote it, for the compile masters' `espm enc-follow` (enc/follow.ts): "node NAME", "groups",
  // "server-names", or "resync" after a truncate.
  `
CREATE FUNCTION espm_enc_notify() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN
  IF TG_LEVEL = 'STATEMENT' THEN
    PERFORM pg_notify('espm_enc', 'resync');
  ELSIF TG_TABLE_NAME = 'nodes' THEN
    PERFORM pg_notify('espm_enc', 'node ' || (CASE WHEN TG_OP = 'DELETE' THEN OLD.name ELSE NEW.name END));
    IF TG_OP = 'UPDATE' AND OLD.name <> NEW.name THEN
      PERFORM pg_notify('espm_enc', 'node ' || OLD.name);
    END IF;
  ELSIF TG_TABLE_NAME = 'groups_snapshot' THEN
    PERFORM pg_notify('espm_enc', 'groups');
  ELSE
    PERFORM pg_notify('espm_enc', 'server-names');
  END IF;
  RETURN NULL;
END$$;
CREATE TRIGGER nodes_enc_notify AFTER INSERT OR UPDATE OR DELETE ON nodes
  FOR EACH ROW EXECUTE FUNCTION espm_enc_notify();
CREATE TRIGGER groups_enc_notify AFTER INSERT OR UPDATE OR DELETE ON groups_snapshot
  FOR EACH ROW EXECUTE FUNCTION espm_enc_notify();
CREATE TRIGGER server_names_enc_notify AFTER INSERT OR UPDATE OR DELETE ON server_names_snapshot
  FOR EACH ROW EXECUTE FUNCTION espm_enc_notify();
CREATE TRIGGER nodes_truncate_notify AFTER TRUNCATE ON nodes
  FOR EACH STATEMENT EXECUTE FUNCTION espm_enc_notify();
CREATE TRIGGER groups_truncate_notify AFTER TRUNCATE ON groups_snapshot
  FOR EACH STATEMENT EXECUTE FUNCTION espm_enc_notify();
CREATE TRIGGER server_names_truncate_notify AFTER TRUNCATE ON server_names_snapshot
  FOR EACH STATEMENT EXECUTE FUNCTION espm_enc_notify();
`,
];
const SCHEMA_VERSION = MIGRATIONS.length;
/** The advisory lock key migrations take (any constant of espm's own). */
const MIGRATION_LOCK = 0x65_73_70_6d;

export interface PostgresSettings {
  /** postgres://USER@HOST:PORT/DATABASE, with no password in it. */
  url: string;
  /** The file with the role's password (not in espm.ini). */
  passwordFile?: string;
  /** The role `espm enc` reads with, granted SELECT on nodes and the groups (nothing else). */
  encRole?: string;
}

const POSTGRES: Dialect = { rowLocks: true };

/** The store's operations, each failure to reach the server answered as the 503 it is (see unreachable). */
function pgQueries(db: Kysely<Tables> | Transaction<Tables>, url: string): StoreOps {
  const ops = storeQueries(db, POSTGRES);
  const guarded = Object.entries(ops).map(
    ([name, op]: [string, (...args: unknown[]) => Promise<unknown>]): [string, typeof op] => [
      name,
      (...args) => op(...args).catch((err: unknown) => Promise.reject(unreachable(url, err))),
    ],
  );
  // The same methods under the same names, each wrapped: what StoreOps says of ops holds of these.
  return Object.fromEntries(guarded) as unknown as StoreOps;
}

/**
 * A store that cannot be reached (refused, timed out, the connection lost, the server shutting
 * down) is a 503 the caller may retry, not espm's own failure; any other error stays as it is.
 */
function unreachable(url: string, err: unknown): Error {
  // Already answered (an operation inside a transaction, whose failure the transaction sees again).
  if (err instanceof BackendError) return err;
  const e = err as { code?: string; message?: string };
  const lost =
    (e.code !== undefined && /^(E[A-Z]+|57P0[1-3]|08\w{3})$/.test(e.code)) ||
    /Connection terminated|timeout exceeded when trying to connect/i.test(e.message ?? "");
  return lost
    ? new BackendError(503, `the PostgreSQL store at ${describeUrl(url)} cannot be reached: ${e.message ?? e.code}`)
    : (err as Error);
}

/** Brings the schema to this espm's version, once, however many processes start at once. */
async function migrate(pool: Pool, encRole: string | undefined): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await client.query("CREATE TABLE IF NOT EXISTS espm_schema (version INTEGER NOT NULL)");
    const current = Number(
      (await client.query<{ v: number | null }>("SELECT max(version) AS v FROM espm_schema")).rows[0]?.v ?? 0,
    );
    if (current > SCHEMA_VERSION)
      throw new Error(`the store was written by a newer espm (schema ${current}, this one knows ${SCHEMA_VERSION})`);
    for (let step = current; step < SCHEMA_VERSION; step++) {
      await client.query(MIGRATIONS[step]!);
      await client.query("INSERT INTO espm_schema (version) VALUES ($1)", [step + 1]);
    }
    if (encRole) {
      // `espm enc`'s role reads the nodes and the groups, and nothing else: no write, no audit, no tokens.
      const role = `"${encRole.replaceAll('"', '""')}"`;
      await client.query(`GRANT SELECT ON nodes, groups_snapshot, server_names_snapshot TO ${role}`);
    }
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

export async function openPostgresStore(settings: PostgresSettings): Promise<Store> {
  const connection = connectionConfig(settings.url, readPassword(settings.passwordFile));
  const pool = new Pool({ ...connection, max: 16, connectionTimeoutMillis: 10_000 });
  // Session advisory locks for Idempotency-Keys, each held on a connection of its own for the
  // length of a create: a separate pool, so waiting creates never starve the queries.
  const locks = new Pool({ ...connection, max: 64, connectionTimeoutMillis: 10_000 });
  // An idle client whose server went away reports here; the next query gets a new one.
  pool.on("error", () => undefined);
  locks.on("error", () => undefined);
  try {
    await migrate(pool, settings.encRole);
  } catch (err) {
    await Promise.allSettled([pool.end(), locks.end()]);
    throw new Error(`the PostgreSQL store at ${describeUrl(settings.url)}: ${(err as Error).message}`);
  }
  const db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
  return {
    ...pgQueries(db, settings.url),
    description: `PostgreSQL ${describeUrl(settings.url)}`,
    transaction: (work) =>
      db
        .transaction()
        .execute((tx) => work(pgQueries(tx, settings.url)))
        .catch((err: unknown) => Promise.reject(unreachable(settings.url, err))),
    async exclusive(key, work) {
      const client = await locks.connect().catch((err: unknown) => {
        throw unreachable(settings.url, err);
      });
      let healthy = true;
      try {
        await client
          .query("SELECT pg_advisory_lock(hashtextextended($1, 0))", [`espm idempotency ${key}`])
          .catch((err: unknown) => {
            healthy = false;
            throw unreachable(settings.url, err);
          });
        try {
          return await work();
        } finally {
          await client
            .query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [`espm idempotency ${key}`])
            .catch(() => {
              healthy = false;
            });
        }
      } finally {
        // A connection whose unlock failed may still hold the lock: close it, which releases it.
        client.release(!healthy);
      }
    },
    async publishGroups(groups: Map<string, Group>) {
      await pool.query(
        `INSERT INTO groups_snapshot (id, groups, updated_at) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET groups = $1, updated_at = $2`,
        [JSON.stringify([...groups.values()]), new Date().toISOString()],
      );
    },
    async publishServerNames(names: PuppetServerNames) {
      await pool.query(
        `INSERT INTO server_names_snapshot (id, names, updated_at) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET names = $1, updated_at = $2`,
        [JSON.stringify(names), new Date().toISOString()],
      );
    },
    async publishedGroups() {
      const row = (await pool.query<{ groups: string }>("SELECT groups FROM groups_snapshot WHERE id = 1")).rows[0];
      const groups = row ? (JSON.parse(row.groups) as Group[]) : [];
      return new Map(groups.map((g) => [g.name, g]));
    },
    async ping() {
      await pool.query("SELECT 1").catch((err: unknown) => Promise.reject(unreachable(settings.url, err)));
    },
    async close() {
      // Kysely's destroy ends the pool it was given.
      await Promise.allSettled([db.destroy(), locks.end()]);
    },
  };
}
