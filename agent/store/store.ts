/**
 * espm's own state: the nodes it created, the certificates it asked the CA for, enrollments,
 * idempotency records, and an append-only audit log. Two implementations with the same semantics:
 * SQLite (sqlite.ts), embedded, the default for one Puppet server; PostgreSQL
 * (postgres.ts), for several espm processes and compile masters. `store =` in espm.ini
 * chooses (see openStore).
 *
 * Every write that answers a request is durable before the answer. A transaction's writes land
 * together or not at all; inside one, use the transaction's handle (`tx`), never the store.
 */
import type { Classification, Group, Node } from "espm-sdk/protocol";
import type { PuppetServerNames } from "../ca/certname-policy";

export interface CertificateRecord {
  certname: string;
  state: "requested" | "signed" | "revoked";
  /** SHA-256 (hex) of the submitted CSR's public key; null for records older than schema 2. */
  publicKey: string | null;
  serial: string | null;
  notAfter: string | null;
}

export type EnrollmentRecordState = "issued" | "used" | "signed" | "refused" | "revoked";

export interface EnrollmentRecord {
  id: number;
  certname: string;
  extensions: Record<string, string>;
  expiresAt: string;
  state: EnrollmentRecordState;
  /** SHA-256 (hex) of the public key of the CSR the token signed, once presented and accepted. */
  publicKey: string | null;
  serial: string | null;
  reason: string | null;
}

export interface IdempotencyRecord {
  scope: string;
  bodyHash: string;
  status: number;
  response: unknown;
}

export interface AuditEntry {
  actor: string;
  action: string;
  target?: string;
  outcome: string;
  detail?: string;
}

export interface NodeRow {
  name: string;
  environment: string;
  groups: string;
  classes: string;
  parameters: string;
  created_at: string;
  updated_at: string;
}

export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;

/** A nodes row as the node it is (also what `espm enc` reads on PostgreSQL). */
export function toNode(row: NodeRow): Node {
  return {
    name: row.name,
    environment: row.environment,
    groups: JSON.parse(row.groups),
    classes: JSON.parse(row.classes),
    parameters: JSON.parse(row.parameters),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** Reads and writes, inside a transaction or alone. */
export interface StoreOps {
  liveNode(name: string): Promise<Node | undefined>;
  liveNodes(): Promise<Node[]>;
  /** The names of the live nodes alone, in order: what a review of the certname policy needs. */
  liveNodeNames(): Promise<string[]>;
  liveNodeCount(): Promise<number>;
  /** True when espm created a node of this name at some time, live or deleted. */
  everCreatedNode(name: string): Promise<boolean>;
  /** A new live node; fails with a StoreConflict when the name has one. */
  insertNode(name: string, classification: Required<Classification>, now: string): Promise<Node>;
  updateNode(name: string, classification: Required<Classification>, now: string): Promise<Node | undefined>;
  /**
   * Marks the live node deleted (a tombstone with its name and times, its classification dropped);
   * false when there was no live node of that name.
   */
  deleteNode(name: string, now: string): Promise<boolean>;

  /** The newest certificate espm asked the CA for under this name. */
  certificate(certname: string): Promise<CertificateRecord | undefined>;
  /**
   * Records that espm is about to submit a CSR with this public key for this name, before it does.
   * A newer attempt replaces an unfinished one, so failed attempts leave one `requested` record.
   */
  recordCertificateRequested(certname: string, publicKey: string, now: string): Promise<void>;
  /** How many certificate records espm keeps for this name (one per signed attempt, at most one unfinished). */
  certificateRecordCount(certname: string): Promise<number>;
  recordCertificateSigned(certname: string, serial: string, notAfter: string, now: string): Promise<void>;
  recordCertificateRevoked(certname: string, now: string): Promise<void>;

  insertEnrollment(
    certname: string,
    tokenHash: string,
    extensions: Record<string, string>,
    expiresAt: string,
    now: string,
  ): Promise<EnrollmentRecord>;
  /** The name's enrollment that is not revoked, in whatever state. */
  liveEnrollment(certname: string): Promise<EnrollmentRecord | undefined>;
  /** The enrollment a token belongs to, in whatever state (a revoked one too: its token is dead). */
  enrollmentByToken(tokenHash: string): Promise<EnrollmentRecord | undefined>;
  everEnrolled(certname: string): Promise<boolean>;
  /** Every enrollment that is not revoked, for the sweep of pending requests. */
  liveEnrollments(): Promise<EnrollmentRecord[]>;
  updateEnrollment(id: number, change: EnrollmentChange, now: string): Promise<void>;

  /** The answer recorded for an Idempotency-Key within the last 24 hours. */
  idempotency(key: string, nowMs: number): Promise<IdempotencyRecord | undefined>;
  saveIdempotency(key: string, record: IdempotencyRecord, nowMs: number): Promise<void>;

  /** Appends to the audit log, which nothing updates or deletes. */
  audit(entry: AuditEntry, now: string): Promise<void>;
}

export interface EnrollmentChange {
  state?: EnrollmentRecordState;
  publicKey?: string;
  serial?: string;
  reason?: string;
  expiresAt?: string;
}

export interface Store extends StoreOps {
  /** Where it is, for health and logs (never a password). */
  readonly description: string;
  /** Runs `work` in one transaction: all of its writes land, or none. */
  transaction<T>(work: (tx: StoreOps) => Promise<T>): Promise<T>;
  /**
   * Runs `work` while no other espm process sharing this store runs work under the same key (an
   * Idempotency-Key); one process alone needs nothing more than its own in-flight map.
   */
  exclusive<T>(key: string, work: () => Promise<T>): Promise<T>;
  /** The validated groups, where every espm process and `espm enc` read them (PostgreSQL only). */
  publishGroups?(groups: Map<string, Group>): Promise<void>;
  /** Puppet Server's names as espm learned them, where `espm enc` reads them (PostgreSQL only). */
  publishServerNames?(names: PuppetServerNames): Promise<void>;
  /** The groups last published there. */
  publishedGroups?(): Promise<Map<string, Group>>;
  /**
   * SQLite: a value that changes with every write to the nodes table, by espm or anyone, and
   * differs between stores; what a clean stop records beside the export (see EncExport).
   */
  nodesVersion?(): Promise<string>;
  /** Answers when the store can be read. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** A second live node of one name: the caller answers 409. */
export class StoreConflict extends Error {
  override name = "StoreConflict";
}
