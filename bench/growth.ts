/**
 * Benchmark (not a test): what espm costs as the site grows. On each store (SQLite, and PostgreSQL
 * in a cluster of the bench's own), with the store holding each size of fleet in turn (100, 1,000
 * and 10,000 nodes by default), it measures:
 *
 *   start     the daemon's start, from exec to its first answer, and its resident memory then: a
 *             restart after a clean stop (the median of three); and the first start after the
 *             fleet was written behind its back, which writes the export of every node it lacks
 *   enc       `espm enc` for one node, 30 runs beside `node -e 0` (on PostgreSQL as a compile
 *             master does: reading the copy `espm enc-follow` keeps with the read-only role; and
 *             how long the follower took to copy the whole store)
 *   create    500 creates (POST /v1/nodes) at concurrency 16: p99
 *   export    what `espm enc` reads beside the store: the export directory (SQLite), the nodes
 *             table with its indexes (PostgreSQL)
 *
 * and prints each figure with its ratio to the same figure at the first size. The fleet is written
 * into the store directly, in one transaction, while espm is stopped.
 *
 *   node dist/bench/growth.js [--sizes 100,1000,10000]     (root; needs no Puppet Server)
 */
import type { ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Client } from "pg";
import { openPostgresStore } from "espm-agent/store/postgres";
import { readPassword, connectionConfig } from "espm-agent/store/postgres-connection";
import { openSqliteStore } from "espm-agent/store/sqlite";
import type { Store } from "espm-agent/store/store";
import { EspmProcess, setupEspm } from "../scripts/lab/espm";
import { createEspmDatabase, startPostgres, type EspmDatabase } from "../scripts/lab/postgres";
import { compileMasterIni, encBesideNode, latencies, percentile, startFollower, timed } from "./measure";

const GROUPS = "groups:\n  web:\n    classes:\n      ntp: { servers: [a, b] }\n    parameters: { role: web }\n";
const ENC_RUNS = 30;
const CREATES = 500;
const START_RUNS = 3;

interface Figures {
  nodes: number;
  startMs: number;
  /** Each of the restarts, in order. */
  startsMs: number[];
  /** The first start after the writes (SQLite: writing the export of every new node). */
  healMs: number;
  rssMiB: number;
  encMs: number;
  nodeMs: number;
  createP99Ms: number;
  exportKiB: number;
  /** PostgreSQL: how long espm enc-follow took to copy the whole store. */
  followerCopyMs?: number;
}

/** The value of `key` in espm.ini's text (the lab writes each once). */
function iniValue(ini: string, key: string): string {
  const value = new RegExp(`^${key}\\s*=\\s*(.*)$`, "m").exec(readFileSync(ini, "utf8"))?.[1];
  if (value === undefined) throw new Error(`${ini} has no ${key}`);
  return value;
}

function directoryBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? directoryBytes(path) : statSync(path).size;
  }
  return total;
}

function residentMiB(pid: number): number {
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  return Number(kib) / 1024;
}

/** Writes nodes into the store, with espm stopped, until it holds `size` live nodes. */
async function grow(store: Store, size: number): Promise<void> {
  const have = await store.liveNodeCount();
  const now = new Date().toISOString();
  await store.transaction(async (tx) => {
    for (let i = have; i < size; i++) {
      await tx.insertNode(
        `seed-${i}.example.test`,
        { environment: "production", groups: ["web"], classes: { motd: { message: `node ${i}` } }, parameters: { i } },
        now,
      );
    }
  });
}

async function storeBench(kind: "SQLite" | "PostgreSQL", sizes: number[]): Promise<Figures[]> {
  const dir = mkdtempSync(join(tmpdir(), "espm-bench-growth-"));
  chmodSync(dir, 0o755);
  const pg = kind === "PostgreSQL" ? await startPostgres() : undefined;
  let db: EspmDatabase | undefined;
  try {
    db = pg && (await createEspmDatabase(pg, dir));
    const storeArgs = db
      ? ["--store-url", db.url, "--store-password-file", db.passwordFile, "--enc-role", db.encRole]
      : [];
    const setup = await setupEspm(["--certname-pattern", "*.example.test", ...storeArgs], GROUPS, join(dir, "espm"));
    const compileMaster = db && compileMasterIni(dir, db);
    const encIni = compileMaster ? compileMaster.ini : setup.ini;
    const openStore = async (): Promise<Store> =>
      db
        ? openPostgresStore({ url: db.url, passwordFile: db.passwordFile })
        : openSqliteStore(iniValue(setup.ini, "database"));
    const figures: Figures[] = [];
    for (const size of sizes) {
      const store = await openStore();
      try {
        await grow(store, size);
      } finally {
        await store.close();
      }
      let espm: EspmProcess | undefined;
      let follower: ChildProcess | undefined;
      const healMs = await timed(async () => void (espm = await EspmProcess.start(setup)));
      // A restart's time moves by a tenth from one start to the next: the median of three.
      const starts: number[] = [];
      for (let i = 0; i < START_RUNS; i++) {
        await espm!.stop();
        starts.push(await timed(async () => void (espm = await EspmProcess.start(setup))));
      }
      const startMs = percentile(starts, 50);
      try {
        const rssMiB = residentMiB(espm!.child.pid!);
        // PostgreSQL: compiles read the copy the compile master's espm enc-follow keeps (fresh for each size).
        if (compileMaster) rmSync(compileMaster.cacheDir, { recursive: true, force: true });
        const following = compileMaster && (await startFollower(compileMaster.ini, compileMaster.cacheDir));
        if (following) follower = following.child;
        const { enc: encMs, node: nodeMs } = await encBesideNode(encIni, "seed-1.example.test", ENC_RUNS, "ntp");
        const creates = await latencies(CREATES, 16, async (i) => {
          const res = await espm!.raw("POST", "/v1/nodes", {
            body: JSON.stringify({ name: `grow-${size}-${i}.example.test`, groups: ["web"], parameters: { i } }),
            headers: { "content-type": "application/json" },
          });
          if (res.status !== 201) throw new Error(`POST /v1/nodes answered ${res.status}: ${res.text}`);
        });
        figures.push({
          nodes: size,
          startMs,
          startsMs: starts,
          healMs,
          rssMiB,
          encMs,
          nodeMs,
          createP99Ms: creates.p99,
          followerCopyMs: following ? following.copyMs : undefined,
          exportKiB: (db ? await nodesTableBytes(db) : directoryBytes(iniValue(setup.ini, "enc_export"))) / 1024,
        });
      } finally {
        follower?.kill("SIGTERM");
        await espm!.stop();
      }
    }
    return figures;
  } finally {
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function nodesTableBytes(db: EspmDatabase): Promise<number> {
  const client = new Client(connectionConfig(db.url, readPassword(db.passwordFile)));
  await client.connect();
  try {
    const { rows } = await client.query<{ bytes: string }>("SELECT pg_total_relation_size('nodes') AS bytes");
    return Number(rows[0]!.bytes);
  } finally {
    await client.end();
  }
}

function print(kind: string, figures: Figures[]): void {
  const first = figures[0]!;
  const ratio = (value: number, base: number) => `${(value / base).toFixed(2)}x`;
  console.log(`  ${kind}`);
  for (const f of figures) {
    const at =
      f === first
        ? ""
        : ` [${ratio(f.startMs, first.startMs)}, ${ratio(f.rssMiB, first.rssMiB)}, ${ratio(f.encMs, first.encMs)}, ${ratio(f.createP99Ms, first.createP99Ms)}, ${ratio(f.exportKiB, first.exportKiB)}]`;
    console.log(
      `    ${String(f.nodes).padStart(6)} nodes: start ${f.startMs.toFixed(0)} ms (${f.startsMs.map((ms) => ms.toFixed(0)).join(", ")}; the first after the writes ${f.healMs.toFixed(0)} ms), ${f.rssMiB.toFixed(0)} MiB; ` +
        `espm enc ${f.encMs.toFixed(0)} ms (${(f.encMs / f.nodeMs).toFixed(2)}x node -e 0); ` +
        `create p99 ${f.createP99Ms.toFixed(1)} ms; export ${f.exportKiB.toFixed(0)} KiB` +
        `${f.followerCopyMs === undefined ? "" : `; enc-follow's copy ${f.followerCopyMs} ms`}${at}`,
    );
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { sizes: { type: "string", default: "100,1000,10000" } } });
  const sizes = values.sizes.split(",").map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1))
    throw new Error(`--sizes takes positive integers: ${values.sizes}`);
  console.log(
    `as the site grows (${sizes.join(", ")} nodes in the store; [start, memory, espm enc, create p99, export] against ${sizes[0]}):`,
  );
  for (const kind of ["SQLite", "PostgreSQL"] as const) print(kind, await storeBench(kind, sizes));
}

main().catch((err: unknown) => {
  console.error(`bench/growth: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
});
