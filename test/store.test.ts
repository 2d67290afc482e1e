/**
 * The store suite, one suite run against both stores: SQLite (a file) and PostgreSQL (Debian's
 * PostgreSQL 15, a cluster of the test's own). The same semantics on both: one live node per name,
 * tombstones, transactions that land whole or not at all (the idempotency record with its create),
 * the append-only audit log, enrollments and certificate records, and migrations.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Client } from "pg";
import { StoreConflict, type Store } from "espm-agent/store/store";
import { openPostgresStore } from "espm-agent/store/postgres";
import { connectionConfig, readPassword } from "espm-agent/store/postgres-connection";
import { openSqliteStore } from "espm-agent/store/sqlite";
import { createEspmDatabase, startPostgres, type EspmDatabase, type PostgresLab } from "../scripts/lab/postgres";

const NOW = "2026-11-28T00:00:00.000Z";
const CLASSIFICATION = { environment: "production", groups: ["base"], classes: { motd: {} }, parameters: { n: 1 } };

interface Backend {
  label: string;
  open(): Promise<Store>;
  /** Runs SQL as espm's own role, around the store: to try what the interface never does. */
  rawAsEspm(sql: string): Promise<void>;
  /** How the store refuses a change to the audit log: a trigger (SQLite), the role's missing grants (PostgreSQL). */
  auditRefusal: RegExp;
  /** Opens a second store on the same data at the same time (another process would). */
  second?(): Promise<Store>;
  cleanup(): Promise<void>;
}

function sqliteBackend(): Backend {
  const dir = mkdtempSync(join(tmpdir(), "espm-store-"));
  const file = join(dir, "espm.db");
  return {
    label: "SQLite",
    auditRefusal: /the audit log is append-only/,
    open: async () => openSqliteStore(file),
    rawAsEspm: async (sql) => {
      const db = new Database(file);
      try {
        db.exec(sql);
      } finally {
        db.close();
      }
    },
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

function postgresBackend(): Backend {
  let pg: PostgresLab;
  let db: EspmDatabase;
  let dir: string;
  const ready = (async () => {
    pg = await startPostgres();
    dir = mkdtempSync(join(tmpdir(), "espm-store-pg-"));
    db = await createEspmDatabase(pg, dir);
  })();
  const open = async () => {
    await ready;
    return openPostgresStore({ url: db.url, passwordFile: db.passwordFile, encRole: db.encRole });
  };
  const rawAs = async (url: string, passwordFile: string, sql: string) => {
    const client = new Client(connectionConfig(url, readPassword(passwordFile)));
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  return {
    label: "PostgreSQL",
    auditRefusal: /permission denied for table audit/,
    open,
    second: open,
    rawAsEspm: async (sql) => rawAs(db.url, db.passwordFile, sql),
    cleanup: async () => {
      await ready.catch(() => undefined);
      await pg?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

for (const make of [sqliteBackend, postgresBackend]) {
  describe(`the store: ${make === sqliteBackend ? "SQLite" : "PostgreSQL"}`, function () {
    this.timeout(60_000);
    let backend: Backend;
    let store: Store;

    before(async () => {
      backend = make();
      store = await backend.open();
    });

    after(async () => {
      await store?.close();
      await backend?.cleanup();
    });

    it("keeps one live node per name, a tombstone after delete, and frees the name", async () => {
      const created = await store.insertNode("one.example.test", CLASSIFICATION, NOW);
      assert.deepEqual(created.classes, { motd: {} });
      await assert.rejects(store.insertNode("one.example.test", CLASSIFICATION, NOW), StoreConflict);
      assert.equal(await store.deleteNode("one.example.test", NOW), true);
      assert.equal(await store.deleteNode("one.example.test", NOW), false);
      assert.equal(await store.liveNode("one.example.test"), undefined);
      assert.equal(await store.everCreatedNode("one.example.test"), true);
      await store.insertNode("one.example.test", { ...CLASSIFICATION, environment: "staging" }, NOW);
      assert.equal((await store.liveNode("one.example.test"))?.environment, "staging");
    });

    it("names its live nodes alone, and (SQLite) moves its nodes' version with every write, a rolled-back one not", async () => {
      const version = async () => (store.nodesVersion ? await store.nodesVersion() : undefined);
      const at = [await version()];
      await store.insertNode("names-b.example.test", CLASSIFICATION, NOW);
      await store.insertNode("names-a.example.test", CLASSIFICATION, NOW);
      at.push(await version());
      await store.updateNode("names-a.example.test", { ...CLASSIFICATION, environment: "staging" }, NOW);
      at.push(await version());
      await store.deleteNode("names-b.example.test", NOW);
      at.push(await version());
      await assert.rejects(
        store.transaction(async (tx) => {
          await tx.insertNode("names-c.example.test", CLASSIFICATION, NOW);
          throw new Error("rolled back");
        }),
      );
      at.push(await version());
      const names = await store.liveNodeNames();
      assert.ok(names.includes("names-a.example.test"));
      assert.ok(!names.includes("names-b.example.test") && !names.includes("names-c.example.test"));
      assert.deepEqual(names, [...names].sort());
      if (make === sqliteBackend) {
        assert.equal(new Set(at.slice(0, 4)).size, 4, at.join(", "));
        assert.equal(at[4], at[3], "a rollback leaves the version as it was");
      } else assert.deepEqual(at, [undefined, undefined, undefined, undefined, undefined]);
    });

    it("lands a transaction whole or not at all: the idempotency record goes with its create", async () => {
      await assert.rejects(
        store.transaction(async (tx) => {
          await tx.insertNode("rolled.example.test", CLASSIFICATION, NOW);
          await tx.saveIdempotency("k-rolled-0123456789", { scope: "s", bodyHash: "h", status: 201, response: {} }, 1);
          throw new Error("the create failed after its writes");
        }),
        /failed after its writes/,
      );
      assert.equal(await store.liveNode("rolled.example.test"), undefined);
      assert.equal(await store.idempotency("k-rolled-0123456789", 2), undefined);
      await store.transaction(async (tx) => {
        const node = await tx.insertNode("kept.example.test", CLASSIFICATION, NOW);
        await tx.saveIdempotency(
          "k-kept-0123456789",
          { scope: "POST /v1/nodes", bodyHash: "h", status: 201, response: node },
          Date.now(),
        );
      });
      const record = await store.idempotency("k-kept-0123456789", Date.now());
      assert.equal((record?.response as { name: string }).name, "kept.example.test");
    });

    it("gives exactly one of many concurrent creates of one name, and all of distinct names", async () => {
      const same = await Promise.allSettled(
        Array.from({ length: 12 }, () =>
          store.transaction((tx) => tx.insertNode("race.example.test", CLASSIFICATION, NOW)),
        ),
      );
      assert.equal(same.filter((r) => r.status === "fulfilled").length, 1);
      for (const r of same.filter((r) => r.status === "rejected"))
        assert.ok(r.reason instanceof StoreConflict, String(r.reason));
      const distinct = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          store.transaction((tx) => tx.insertNode(`many-${i}.example.test`, CLASSIFICATION, NOW)),
        ),
      );
      assert.equal(distinct.length, 40);
      assert.equal((await store.liveNodes()).filter((n) => n.name.startsWith("many-")).length, 40);
    });

    it("keeps the audit log append-only: espm's own role cannot change or delete an entry", async () => {
      await store.audit({ actor: "test", action: "node.create", target: "a.example.test", outcome: "created" }, NOW);
      await assert.rejects(backend.rawAsEspm("UPDATE audit SET outcome = 'forged'"), backend.auditRefusal);
      await assert.rejects(backend.rawAsEspm("DELETE FROM audit"), backend.auditRefusal);
    });

    it("keeps certificate records: one unfinished request per name, then signed and revoked", async () => {
      await store.recordCertificateRequested("c.example.test", "key-1", NOW);
      await store.recordCertificateRequested("c.example.test", "key-2", NOW);
      assert.equal(await store.certificateRecordCount("c.example.test"), 1);
      assert.equal((await store.certificate("c.example.test"))?.publicKey, "key-2");
      await store.recordCertificateSigned("c.example.test", "1A", "2031-01-01T00:00:00Z", NOW);
      await store.recordCertificateRequested("c.example.test", "key-3", NOW);
      assert.equal(await store.certificateRecordCount("c.example.test"), 2);
      await store.recordCertificateSigned("c.example.test", "1B", "2031-01-01T00:00:00Z", NOW);
      await store.recordCertificateRevoked("c.example.test", NOW);
      assert.deepEqual(await store.certificate("c.example.test"), {
        certname: "c.example.test",
        state: "revoked",
        publicKey: "key-3",
        serial: "1B",
        notAfter: "2031-01-01T00:00:00Z",
      });
    });

    it("keeps one live enrollment per name, found by its token's hash", async () => {
      const issued = await store.insertEnrollment("e.example.test", "hash-1", { pp_role: "web" }, NOW, NOW);
      assert.equal(typeof issued.id, "number");
      await assert.rejects(store.insertEnrollment("e.example.test", "hash-2", {}, NOW, NOW));
      await store.updateEnrollment(issued.id, { state: "used", publicKey: "k" }, NOW);
      assert.deepEqual((await store.enrollmentByToken("hash-1"))?.extensions, { pp_role: "web" });
      assert.equal((await store.liveEnrollment("e.example.test"))?.state, "used");
      await store.updateEnrollment(issued.id, { state: "revoked" }, NOW);
      assert.equal(await store.liveEnrollment("e.example.test"), undefined);
      assert.equal(await store.everEnrolled("e.example.test"), true);
      await store.insertEnrollment("e.example.test", "hash-3", {}, NOW, NOW);
      assert.equal((await store.liveEnrollments()).length, 1);
    });

    it("lets one of two transactions deciding on one token at once use it", async () => {
      await store.insertEnrollment("t.example.test", "hash-race", {}, NOW, NOW);
      const decided = await Promise.all(
        [1, 2].map(() =>
          store.transaction(async (tx) => {
            const enrollment = await tx.enrollmentByToken("hash-race");
            if (enrollment?.state !== "issued") return false;
            await new Promise((r) => setTimeout(r, 50)); // the other one reads meanwhile
            await tx.updateEnrollment(enrollment.id, { state: "used" }, NOW);
            return true;
          }),
        ),
      );
      assert.deepEqual(decided.sort(), [false, true]);
    });

    it("opens again on migrated data, and two stores opening at once migrate once", async function () {
      await store.close();
      store = await backend.open();
      assert.equal((await store.liveNode("kept.example.test"))?.name, "kept.example.test");
      if (!backend.second) return;
      const [a, b] = await Promise.all([backend.second(), backend.second()]);
      await Promise.all([a.close(), b.close()]);
    });
  });
}
