/**
 * The SQLite store: embedded, the default for one Puppet server.
 *
 * WAL with synchronous=FULL: a write is on disk before its request is answered, so kill -9 (or a
 * power cut) never loses an acknowledged write. better-sqlite3 is synchronous; the store's methods
 * are async only to share the PostgreSQL store's interface, and one lock orders every call, so a
 * transaction's awaits never let another request's reads or writes into it.
 */
import { closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import type { Classification, Node } from "../../sdk/protocol";
import {
  classificationColumns,
  IDEMPOTENCY_TTL_MS,
  StoreConflict,
  toEnrollment,
  toNode,
  type CertificateRecord,
  type EnrollmentChange,
  type EnrollmentRecord,
  type EnrollmentRow,
  type IdempotencyRecord,
  type AuditEntry,
  type NodeRow,
  type Store,
  type StoreOps,
} from "./store";

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

/**
 * A deleted node keeps its name and times (for the audit and for tombstones) but not its
 * classification, whose parameters may hold secrets and which the ENC's role can read.
 */
const DELETE_NODE = `UPDATE nodes SET deleted_at = ?, groups = '[]', classes = '{}', parameters = '{}'`;
const DROP_DELETED_CLASSIFICATIONS = `UPDATE nodes SET groups = '[]', classes = '{}', parameters = '{}' WHERE deleted_at IS NOT NULL;`;

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
];
const SCHEMA_VERSION = MIGRATIONS.length;

/** The statements, synchronous, on one connection. */
class SqliteOps {
  private readonly db: Database.Database;

  constructor(path: string) {
    // Only espm's own user may open the store; SQLite gives the -wal and -shm files the same mode.
    mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
    if (!existsSync(path)) closeSync(openSync(path, "a", 0o600));
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = FULL");
    this.db.pragma("busy_timeout = 5000");
    this.migrate();
  }

  private migrate(): void {
    const version = this.db.pragma("user_version", { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new Error(`the store was written by a newer espm (schema ${version}, this one knows ${SCHEMA_VERSION})`);
    }
    this.db.transaction(() => {
      for (let step = version; step < SCHEMA_VERSION; step++) this.db.exec(MIGRATIONS[step]!);
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    })();
  }

  close(): void {
    this.db.close();
  }

  exec(sql: string): void {
    this.db.exec(sql);
  }

  liveNode(name: string): Node | undefined {
    const row = this.db
      .prepare<[string], NodeRow>("SELECT * FROM nodes WHERE name = ? AND deleted_at IS NULL")
      .get(name);
    return row ? toNode(row) : undefined;
  }

  liveNodes(): Node[] {
    return this.db.prepare<[], NodeRow>("SELECT * FROM nodes WHERE deleted_at IS NULL ORDER BY name").all().map(toNode);
  }

  liveNodeCount(): number {
    return (this.db.prepare("SELECT count(*) AS n FROM nodes WHERE deleted_at IS NULL").get() as { n: number }).n;
  }

  /** True when espm created a node of this name at some time, live or deleted. */
  everCreatedNode(name: string): boolean {
    return this.db.prepare("SELECT 1 FROM nodes WHERE name = ? LIMIT 1").get(name) !== undefined;
  }

  insertNode(name: string, classification: Required<Classification>, now: string): Node {
    try {
      this.db
        .prepare(
          `INSERT INTO nodes (name, environment, groups, classes, parameters, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(name, ...classificationColumns(classification), now, now);
    } catch (err) {
      if ((err as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE")
        throw new StoreConflict(`a live node named ${name} exists`);
      throw err;
    }
    return this.liveNode(name)!;
  }

  updateNode(name: string, classification: Required<Classification>, now: string): Node | undefined {
    const result = this.db
      .prepare(
        `UPDATE nodes SET environment = ?, groups = ?, classes = ?, parameters = ?, updated_at = ?
         WHERE name = ? AND deleted_at IS NULL`,
      )
      .run(...classificationColumns(classification), now, name);
    return result.changes === 1 ? this.liveNode(name) : undefined;
  }

  /** Marks the live node deleted, its classification dropped; false when there was no live node of that name. */
  deleteNode(name: string, now: string): boolean {
    return this.db.prepare(`${DELETE_NODE} WHERE name = ? AND deleted_at IS NULL`).run(now, name).changes === 1;
  }

  /** The newest certificate espm asked the CA for under this name. */
  certificate(certname: string): CertificateRecord | undefined {
    return this.db
      .prepare<[string], CertificateRecord>(
        `SELECT certname, state, public_key AS publicKey, serial, not_after AS notAfter FROM certificates
         WHERE certname = ? ORDER BY id DESC LIMIT 1`,
      )
      .get(certname);
  }

  /**
   * Records that espm is about to submit a CSR with this public key for this name, before it does.
   * A newer attempt replaces an unfinished one, so failed attempts leave one `requested` record.
   */
  recordCertificateRequested(certname: string, publicKey: string, now: string): void {
    const replaced = this.db
      .prepare(
        `UPDATE certificates SET public_key = ?, updated_at = ?
         WHERE id = (SELECT max(id) FROM certificates WHERE certname = ?) AND state = 'requested'`,
      )
      .run(publicKey, now, certname).changes;
    if (replaced === 0) {
      this.db
        .prepare(
          "INSERT INTO certificates (certname, state, public_key, created_at, updated_at) VALUES (?, 'requested', ?, ?, ?)",
        )
        .run(certname, publicKey, now, now);
    }
  }

  /** How many certificate records espm keeps for this name (one per signed attempt, at most one unfinished). */
  certificateRecordCount(certname: string): number {
    return (this.db.prepare("SELECT count(*) AS n FROM certificates WHERE certname = ?").get(certname) as { n: number })
      .n;
  }

  recordCertificateSigned(certname: string, serial: string, notAfter: string, now: string): void {
    this.db
      .prepare(
        `UPDATE certificates SET state = 'signed', serial = ?, not_after = ?, updated_at = ?
         WHERE id = (SELECT max(id) FROM certificates WHERE certname = ?)`,
      )
      .run(serial, notAfter, now, certname);
  }

  recordCertificateRevoked(certname: string, now: string): void {
    this.db
      .prepare(
        `UPDATE certificates SET state = 'revoked', updated_at = ?
         WHERE id = (SELECT max(id) FROM certificates WHERE certname = ?)`,
      )
      .run(now, certname);
  }

  insertEnrollment(
    certname: string,
    tokenHash: string,
    extensions: Record<string, string>,
    expiresAt: string,
    now: string,
  ): EnrollmentRecord {
    this.db
      .prepare(
        `INSERT INTO enrollments (certname, token_hash, extensions, expires_at, state, created_at, updated_at)
         VALUES (?, ?, ?, ?, 'issued', ?, ?)`,
      )
      .run(certname, tokenHash, JSON.stringify(extensions), expiresAt, now, now);
    return this.liveEnrollment(certname)!;
  }

  /** The name's enrollment that is not revoked, in whatever state. */
  liveEnrollment(certname: string): EnrollmentRecord | undefined {
    const row = this.db
      .prepare<[string], EnrollmentRow>("SELECT * FROM enrollments WHERE certname = ? AND state <> 'revoked'")
      .get(certname);
    return row && toEnrollment(row);
  }

  /** The enrollment a token belongs to, in whatever state (a revoked one too: its token is dead). */
  enrollmentByToken(tokenHash: string): EnrollmentRecord | undefined {
    const row = this.db
      .prepare<[string], EnrollmentRow>("SELECT * FROM enrollments WHERE token_hash = ?")
      .get(tokenHash);
    return row && toEnrollment(row);
  }

  everEnrolled(certname: string): boolean {
    return this.db.prepare("SELECT 1 FROM enrollments WHERE certname = ? LIMIT 1").get(certname) !== undefined;
  }

  /** Every enrollment that is not revoked, for the sweep of pending requests. */
  liveEnrollments(): EnrollmentRecord[] {
    return this.db
      .prepare<[], EnrollmentRow>("SELECT * FROM enrollments WHERE state <> 'revoked' ORDER BY id")
      .all()
      .map(toEnrollment);
  }

  updateEnrollment(id: number, change: EnrollmentChange, now: string): void {
    this.db
      .prepare(
        `UPDATE enrollments SET state = coalesce(?, state), public_key = coalesce(?, public_key),
           serial = coalesce(?, serial), reason = coalesce(?, reason), expires_at = coalesce(?, expires_at),
           updated_at = ? WHERE id = ?`,
      )
      .run(
        change.state ?? null,
        change.publicKey ?? null,
        change.serial ?? null,
        change.reason ?? null,
        change.expiresAt ?? null,
        now,
        id,
      );
  }

  idempotency(key: string, nowMs: number): IdempotencyRecord | undefined {
    const row = this.db
      .prepare<[string, number], { scope: string; body_hash: string; status: number; response: string }>(
        "SELECT scope, body_hash, status, response FROM idempotency WHERE key = ? AND created_at > ?",
      )
      .get(key, nowMs - IDEMPOTENCY_TTL_MS);
    return row && { scope: row.scope, bodyHash: row.body_hash, status: row.status, response: JSON.parse(row.response) };
  }

  saveIdempotency(key: string, record: IdempotencyRecord, nowMs: number): void {
    this.db.prepare("DELETE FROM idempotency WHERE created_at <= ?").run(nowMs - IDEMPOTENCY_TTL_MS);
    this.db
      .prepare(
        "INSERT OR REPLACE INTO idempotency (key, scope, body_hash, status, response, created_at) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(key, record.scope, record.bodyHash, record.status, JSON.stringify(record.response), nowMs);
  }

  audit(entry: AuditEntry, now: string): void {
    this.db
      .prepare("INSERT INTO audit (at, actor, action, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)")
      .run(now, entry.actor, entry.action, entry.target ?? null, entry.outcome, entry.detail ?? null);
  }
}

/** One call at a time, in the order they came: a transaction holds it across its awaits. */
class Lock {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(work: () => T | Promise<T>): Promise<T> {
    const result = this.tail.then(work);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** The store's operations over the synchronous ones, each run through `guard`. */
function asyncOps(ops: SqliteOps, guard: <T>(work: () => T) => Promise<T>): StoreOps {
  return {
    liveNode: (name) => guard(() => ops.liveNode(name)),
    liveNodes: () => guard(() => ops.liveNodes()),
    liveNodeCount: () => guard(() => ops.liveNodeCount()),
    everCreatedNode: (name) => guard(() => ops.everCreatedNode(name)),
    insertNode: (name, classification, now) => guard(() => ops.insertNode(name, classification, now)),
    updateNode: (name, classification, now) => guard(() => ops.updateNode(name, classification, now)),
    deleteNode: (name, now) => guard(() => ops.deleteNode(name, now)),
    certificate: (certname) => guard(() => ops.certificate(certname)),
    recordCertificateRequested: (certname, publicKey, now) =>
      guard(() => ops.recordCertificateRequested(certname, publicKey, now)),
    certificateRecordCount: (certname) => guard(() => ops.certificateRecordCount(certname)),
    recordCertificateSigned: (certname, serial, notAfter, now) =>
      guard(() => ops.recordCertificateSigned(certname, serial, notAfter, now)),
    recordCertificateRevoked: (certname, now) => guard(() => ops.recordCertificateRevoked(certname, now)),
    insertEnrollment: (certname, tokenHash, extensions, expiresAt, now) =>
      guard(() => ops.insertEnrollment(certname, tokenHash, extensions, expiresAt, now)),
    liveEnrollment: (certname) => guard(() => ops.liveEnrollment(certname)),
    enrollmentByToken: (tokenHash) => guard(() => ops.enrollmentByToken(tokenHash)),
    everEnrolled: (certname) => guard(() => ops.everEnrolled(certname)),
    liveEnrollments: () => guard(() => ops.liveEnrollments()),
    updateEnrollment: (id, change, now) => guard(() => ops.updateEnrollment(id, change, now)),
    idempotency: (key, nowMs) => guard(() => ops.idempotency(key, nowMs)),
    saveIdempotency: (key, record, nowMs) => guard(() => ops.saveIdempotency(key, record, nowMs)),
    audit: (entry, now) => guard(() => ops.audit(entry, now)),
  };
}

export function openSqliteStore(path: string): Store {
  const ops = new SqliteOps(path);
  const lock = new Lock();
  // Inside a transaction the lock is already held: its handle runs the statements directly.
  const tx = asyncOps(ops, async (work) => work());
  return {
    ...asyncOps(ops, (work) => lock.run(work)),
    description: `SQLite ${path}`,
    transaction: (work) =>
      lock.run(async () => {
        ops.exec("BEGIN IMMEDIATE");
        try {
          const result = await work(tx);
          ops.exec("COMMIT");
          return result;
        } catch (err) {
          ops.exec("ROLLBACK");
          throw err;
        }
      }),
    // One process owns an SQLite store: its in-flight map is all the exclusion there is to have.
    exclusive: (_key, work) => work(),
    ping: () => lock.run(() => void ops.liveNode("health-check.invalid")),
    close: () => lock.run(() => ops.close()),
  };
}
