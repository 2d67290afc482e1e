/**
 * The store's tables as TypeScript sees them, and every read and write of the store's operations,
 * written once for both dialects with Kysely's query builder. Each dialect keeps only what is its
 * own: its DDL and migrations, its connection and its transactions (sqlite.ts, postgres.ts).
 *
 * Adding a column is an edit to its table here and a migration step in each dialect.
 */
import type { ColumnType, Generated, Kysely, Selectable, SelectQueryBuilder, Transaction } from "kysely";
import type { Classification } from "espm-sdk/protocol";
import {
  IDEMPOTENCY_TTL_MS,
  StoreConflict,
  toNode,
  type CertificateRecord,
  type NodeRow,
  type EnrollmentChange,
  type EnrollmentRecord,
  type EnrollmentRecordState,
  type StoreOps,
} from "./store";

/** Ids: BIGSERIAL on PostgreSQL, whose driver answers them as strings; espm's ids fit a number. */
type Id = Generated<number | string>;

/** A node's row: the columns `espm enc` reads too (NodeRow, whose groups, classes and parameters are JSON), and these. */
export interface NodesTable extends NodeRow {
  id: Id;
  deleted_at: string | null;
}

export interface CertificatesTable {
  id: Id;
  certname: string;
  state: CertificateRecord["state"];
  /** SHA-256 (hex) of the submitted CSR's public key; null for records older than SQLite's schema 2. */
  public_key: string | null;
  serial: string | null;
  not_after: string | null;
  created_at: string;
  updated_at: string;
}

export interface EnrollmentsTable {
  id: Id;
  certname: string;
  /** Only the token's hash: espm never keeps a token. */
  token_hash: string;
  /** JSON. */
  extensions: string;
  expires_at: string;
  state: EnrollmentRecordState;
  public_key: string | null;
  serial: string | null;
  reason: string | null;
  created_at: string;
  updated_at: string;
}

export interface IdempotencyTable {
  key: string;
  scope: string;
  body_hash: string;
  status: number;
  /** JSON. */
  response: string;
  /** Milliseconds since the epoch (BIGINT on PostgreSQL). */
  created_at: ColumnType<number | string, number, number>;
}

/** Append-only: triggers in both dialects refuse UPDATE and DELETE. */
export interface AuditTable {
  id: Id;
  at: string;
  actor: string;
  action: string;
  target: string | null;
  outcome: string;
  detail: string | null;
}

/** The tables both dialects share (PostgreSQL's snapshots for `espm enc` are its own). */
export interface Tables {
  nodes: NodesTable;
  certificates: CertificatesTable;
  enrollments: EnrollmentsTable;
  idempotency: IdempotencyTable;
  audit: AuditTable;
}

/** What a dialect can do that the other cannot. */
export interface Dialect {
  /**
   * SELECT … FOR UPDATE: a transaction that reads an enrollment to change it holds the row until
   * it commits, so two processes deciding on one token decide one after the other. SQLite has no
   * row locks and needs none: its transactions are serial.
   */
  rowLocks: boolean;
}

type Db = Kysely<Tables> | Transaction<Tables>;

/** A classification as the nodes table keeps it. */
function classificationColumns(c: Required<Classification>) {
  return {
    environment: c.environment,
    groups: JSON.stringify(c.groups),
    classes: JSON.stringify(c.classes),
    parameters: JSON.stringify(c.parameters),
  };
}

/**
 * A deleted node keeps its name and times (for the audit and for tombstones) but not its
 * classification, whose parameters may hold secrets and which the ENC's role can read.
 */
const DROPPED_CLASSIFICATION = { groups: "[]", classes: "{}", parameters: "{}" } as const;

const NODE_COLUMNS = ["name", "environment", "groups", "classes", "parameters", "created_at", "updated_at"] as const;

const ENROLLMENT_COLUMNS = [
  "id",
  "certname",
  "extensions",
  "expires_at",
  "state",
  "public_key",
  "serial",
  "reason",
] as const;

function toEnrollment(row: Pick<Selectable<EnrollmentsTable>, (typeof ENROLLMENT_COLUMNS)[number]>): EnrollmentRecord {
  return {
    id: Number(row.id),
    certname: row.certname,
    extensions: JSON.parse(row.extensions),
    expiresAt: row.expires_at,
    state: row.state,
    publicKey: row.public_key,
    serial: row.serial,
    reason: row.reason,
  };
}

function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === "SQLITE_CONSTRAINT_UNIQUE" || code === "23505";
}

/** The store's reads and writes on `db`: the store itself, or a transaction's handle. */
export function storeQueries(db: Db, dialect: Dialect): StoreOps {
  const nodes = () => db.selectFrom("nodes").select(NODE_COLUMNS).where("deleted_at", "is", null);
  const liveNode = async (name: string) => {
    const row = await nodes().where("name", "=", name).executeTakeFirst();
    return row && toNode(row);
  };
  const enrollments = () =>
    db
      .selectFrom("enrollments")
      .select(ENROLLMENT_COLUMNS)
      .$if(dialect.rowLocks, (q) => q.forUpdate());
  const liveEnrollment = async (certname: string) => {
    const row = await enrollments().where("certname", "=", certname).where("state", "<>", "revoked").executeTakeFirst();
    return row && toEnrollment(row);
  };
  /** The newest certificate record of a name: the one every change of a certificate's state is about. */
  const newestCertificate = (certname: string) =>
    db
      .selectFrom("certificates")
      .select((eb) => eb.fn.max("id").as("id"))
      .where("certname", "=", certname);
  const exists = async (query: SelectQueryBuilder<Tables, keyof Tables, object>) =>
    (await query
      .select((eb) => eb.lit(1).as("one"))
      .limit(1)
      .executeTakeFirst()) !== undefined;
  const count = async (query: SelectQueryBuilder<Tables, keyof Tables, object>) =>
    Number((await query.select((eb) => eb.fn.countAll().as("n")).executeTakeFirstOrThrow()).n);

  return {
    liveNode,
    async liveNodes() {
      return (await nodes().orderBy("name").execute()).map(toNode);
    },
    async liveNodeNames() {
      return (
        await db.selectFrom("nodes").select("name").where("deleted_at", "is", null).orderBy("name").execute()
      ).map((row) => row.name);
    },
    liveNodeCount: () => count(db.selectFrom("nodes").where("deleted_at", "is", null)),
    everCreatedNode: (name) => exists(db.selectFrom("nodes").where("name", "=", name)),
    async insertNode(name, classification, now) {
      try {
        const row = await db
          .insertInto("nodes")
          .values({ name, ...classificationColumns(classification), created_at: now, updated_at: now })
          .returning(NODE_COLUMNS)
          .executeTakeFirstOrThrow();
        return toNode(row);
      } catch (err) {
        if (isUniqueViolation(err)) throw new StoreConflict(`a live node named ${name} exists`);
        throw err;
      }
    },
    async updateNode(name, classification, now) {
      const row = await db
        .updateTable("nodes")
        .set({ ...classificationColumns(classification), updated_at: now })
        .where("name", "=", name)
        .where("deleted_at", "is", null)
        .returning(NODE_COLUMNS)
        .executeTakeFirst();
      return row && toNode(row);
    },
    async deleteNode(name, now) {
      const result = await db
        .updateTable("nodes")
        .set({ deleted_at: now, ...DROPPED_CLASSIFICATION })
        .where("name", "=", name)
        .where("deleted_at", "is", null)
        .executeTakeFirst();
      return result.numUpdatedRows === 1n;
    },

    certificate(certname) {
      return db
        .selectFrom("certificates")
        .select(["certname", "state", "public_key as publicKey", "serial", "not_after as notAfter"])
        .where("certname", "=", certname)
        .orderBy("id", "desc")
        .limit(1)
        .executeTakeFirst();
    },
    async recordCertificateRequested(certname, publicKey, now) {
      const replaced = await db
        .updateTable("certificates")
        .set({ public_key: publicKey, updated_at: now })
        .where("id", "=", newestCertificate(certname))
        .where("state", "=", "requested")
        .executeTakeFirst();
      if (replaced.numUpdatedRows === 0n) {
        await db
          .insertInto("certificates")
          .values({ certname, state: "requested", public_key: publicKey, created_at: now, updated_at: now })
          .execute();
      }
    },
    certificateRecordCount: (certname) => count(db.selectFrom("certificates").where("certname", "=", certname)),
    async recordCertificateSigned(certname, serial, notAfter, now) {
      await db
        .updateTable("certificates")
        .set({ state: "signed", serial, not_after: notAfter, updated_at: now })
        .where("id", "=", newestCertificate(certname))
        .execute();
    },
    async recordCertificateRevoked(certname, now) {
      await db
        .updateTable("certificates")
        .set({ state: "revoked", updated_at: now })
        .where("id", "=", newestCertificate(certname))
        .execute();
    },

    async insertEnrollment(certname, tokenHash, extensions, expiresAt, now) {
      const row = await db
        .insertInto("enrollments")
        .values({
          certname,
          token_hash: tokenHash,
          extensions: JSON.stringify(extensions),
          expires_at: expiresAt,
          state: "issued",
          created_at: now,
          updated_at: now,
        })
        .returning(ENROLLMENT_COLUMNS)
        .executeTakeFirstOrThrow();
      return toEnrollment(row);
    },
    liveEnrollment,
    async enrollmentByToken(tokenHash) {
      const row = await enrollments().where("token_hash", "=", tokenHash).executeTakeFirst();
      return row && toEnrollment(row);
    },
    everEnrolled: (certname) => exists(db.selectFrom("enrollments").where("certname", "=", certname)),
    async liveEnrollments() {
      const rows = await db
        .selectFrom("enrollments")
        .select(ENROLLMENT_COLUMNS)
        .where("state", "<>", "revoked")
        .orderBy("id")
        .execute();
      return rows.map(toEnrollment);
    },
    async updateEnrollment(id, change: EnrollmentChange, now) {
      await db
        .updateTable("enrollments")
        .set({
          // Only what the change names: undefined columns are left out of the statement.
          state: change.state,
          public_key: change.publicKey,
          serial: change.serial,
          reason: change.reason,
          expires_at: change.expiresAt,
          updated_at: now,
        })
        .where("id", "=", id)
        .execute();
    },

    async idempotency(key, nowMs) {
      const row = await db
        .selectFrom("idempotency")
        .select(["scope", "body_hash", "status", "response"])
        .where("key", "=", key)
        .where("created_at", ">", nowMs - IDEMPOTENCY_TTL_MS)
        .executeTakeFirst();
      return (
        row && { scope: row.scope, bodyHash: row.body_hash, status: row.status, response: JSON.parse(row.response) }
      );
    },
    async saveIdempotency(key, record, nowMs) {
      await db
        .deleteFrom("idempotency")
        .where("created_at", "<=", nowMs - IDEMPOTENCY_TTL_MS)
        .execute();
      const columns = {
        scope: record.scope,
        body_hash: record.bodyHash,
        status: record.status,
        response: JSON.stringify(record.response),
        created_at: nowMs,
      };
      await db
        .insertInto("idempotency")
        .values({ key, ...columns })
        .onConflict((oc) => oc.column("key").doUpdateSet(columns))
        .execute();
    },

    async audit(entry, now) {
      await db
        .insertInto("audit")
        .values({
          at: now,
          actor: entry.actor,
          action: entry.action,
          target: entry.target ?? null,
          outcome: entry.outcome,
          detail: entry.detail ?? null,
        })
        .execute();
    },
  };
}
