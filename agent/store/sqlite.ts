/**
 * The SQLite store: embedded, the default for one Puppet server.
 *
 * WAL with synchronous=FULL: a write is on disk before its request is answered, so kill -9 (or a
 * power cut) never loses an acknowledged write. The queries are queries.ts's, shared with
 * PostgreSQL; the schema and its migrations are SQLite's own, below.
 */
import { closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { Kysely, sql, SqliteDialect, type SqliteDatabase } from "kysely";
import { storeQueries, type Dialect, type Tables } from "./queries";
import type { Store } from "./store";

const SQLITE: Dialect = { rowLocks: false };

const SCHEMA_V1 = `
CREATE TABLE nodes (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  environment TEXT NOT NULL,
  groups TEXT NOT NULL,
  classes TEXT NOT NULL,
  parameters TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  deleted_at TEXT
);
-- A name is taken by at most one live node; a deleted node frees it but stays as a tombstone,
-- so that deleting it again is still recognised as ours.
CREATE UNIQUE INDEX nodes_live_name ON nodes(name) WHERE deleted_at IS NULL;
CREATE INDEX nodes_name ON nodes(name);

CREATE TABLE certificates (
  id INTEGER PRIMARY KEY,
  certname TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('requested', 'signed', 'revoked')),
  serial TEXT,
  not_after TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX certificates_certname ON certificates(certname);

CREATE TABLE idempotency (
  key TEXT PRIMARY KEY,
  scope TEXT NOT NULL,
  body_hash TEXT NOT NULL,
  status INTEGER NOT NULL,
  response TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX idempotency_created ON idempotency(created_at);

CREATE TABLE audit (
  id INTEGER PRIMARY KEY,
  at TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT,
  outcome TEXT NOT NULL,
  detail TEXT
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
`;

/**
 * Version 3: enrollments. espm keeps only the token's hash. A name has at most one enrollment that
 * is not revoked; a revoked one stays as a tombstone for the audit trail.
 */
const ENROLLMENTS = `
CREATE TABLE enrollments (
  id INTEGER PRIMARY KEY,
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
`;

/** Version 4: deleted nodes keep no classification (what deleteNode does since; see queries.ts). */
const DROP_DELETED_CLASSIFICATIONS = `UPDATE nodes SET groups = '[]', classes = '{}', parameters = '{}' WHERE deleted_at IS NOT NULL;`;

/**
 * Version 5: a version of the nodes table that every write to it moves, espm's or anyone's (its
 * triggers fire for the sqlite3 shell too), beside a random id of this store. A clean stop records
 * it beside the export; a start that finds it unchanged skips reading every row to heal the export.
 */
const NODES_VERSION = `
CREATE TABLE nodes_version (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  store_id TEXT NOT NULL,
  changes INTEGER NOT NULL
);
INSERT INTO nodes_version VALUES (1, lower(hex(randomblob(16))), 0);
CREATE TRIGGER nodes_version_insert AFTER INSERT ON nodes BEGIN UPDATE nodes_version SET changes = changes + 1; END;
CREATE TRIGGER nodes_version_update AFTER UPDATE ON nodes BEGIN UPDATE nodes_version SET changes = changes + 1; END;
CREATE TRIGGER nodes_version_delete AFTER DELETE ON nodes BEGIN UPDATE nodes_version SET changes = changes + 1; END;
`;

/**
 * Each step brings the schema from version i to i + 1. Version 2: the public key of the CSR espm
 * submitted (SHA-256 of its SPKI), so that a pending request at the CA is recognised as espm's own
 * by its key, not by its name alone.
 */
const MIGRATIONS = [
  SCHEMA_V1,
  "ALTER TABLE certificates ADD COLUMN public_key TEXT;",
  ENROLLMENTS,
  DROP_DELETED_CLASSIFICATIONS,
  NODES_VERSION,
];
const SCHEMA_VERSION = MIGRATIONS.length;

/** The database file, created for espm's user alone, opened durable, at this espm's schema. */
function openDatabase(path: string): Database.Database {
  // Only espm's own user may open the store; SQLite gives the -wal and -shm files the same mode.
  mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  if (!existsSync(path)) closeSync(openSync(path, "a", 0o600));
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 5000");
  const version = db.pragma("user_version", { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    db.close();
    throw new Error(`the store was written by a newer espm (schema ${version}, this one knows ${SCHEMA_VERSION})`);
  }
  db.transaction(() => {
    for (let step = version; step < SCHEMA_VERSION; step++) db.exec(MIGRATIONS[step]!);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  })();
  return db;
}

/** How many prepared statements the store keeps: espm's queries are a few dozen texts. */
const STATEMENTS_KEPT = 256;

/**
 * The database as Kysely's driver uses it, with each statement prepared once: the driver prepares
 * every query it runs, and SQLite's parsing of them was a tenth of espm's CPU in a burst of creates.
 * A statement still being iterated is busy, so a query meeting one gets a fresh statement.
 */
function keepingStatements(db: Database.Database): SqliteDatabase {
  const statements = new Map<string, Database.Statement>();
  return {
    close: () => db.close(),
    prepare(text) {
      let statement = statements.get(text);
      if (!statement || statement.busy) {
        statement = db.prepare(text);
        if (statements.size >= STATEMENTS_KEPT) statements.delete(statements.keys().next().value!);
        statements.set(text, statement);
      }
      return statement;
    },
  };
}

export function openSqliteStore(path: string): Store {
  // Kysely's SQLite driver runs one statement at a time on the one connection, in the order they
  // came; `connection()` holds it for a whole transaction, so a transaction's awaits never let
  // another request's reads or writes into it.
  const db = new Kysely<Tables>({ dialect: new SqliteDialect({ database: keepingStatements(openDatabase(path)) }) });
  return {
    ...storeQueries(db, SQLITE),
    description: `SQLite ${path}`,
    transaction: (work) =>
      db.connection().execute(async (connection) => {
        // IMMEDIATE: the write lock from the start, as espm's only writer expects.
        await sql`BEGIN IMMEDIATE`.execute(connection);
        try {
          const result = await work(storeQueries(connection, SQLITE));
          await sql`COMMIT`.execute(connection);
          return result;
        } catch (err) {
          await sql`ROLLBACK`.execute(connection);
          throw err;
        }
      }),
    // One process owns an SQLite store: its in-flight map is all the exclusion there is to have.
    exclusive: (_key, work) => work(),
    async nodesVersion() {
      const { rows } = await sql<{
        version: string;
      }>`SELECT store_id || ':' || changes AS version FROM nodes_version`.execute(db);
      return rows[0]!.version;
    },
    ping: async () => void (await sql`SELECT 1`.execute(db)),
    // After whatever is running: the driver's destroy closes the file without waiting its turn.
    close: () =>
      db
        .connection()
        .execute(async () => undefined)
        .then(() => db.destroy()),
  };
}
