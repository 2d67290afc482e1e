/** Timing helpers the benchmarks share. */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { FOLLOWER_HEARTBEAT } from "espm-agent/enc/export";
import { ESPM_BIN } from "../scripts/lab/espm";
import type { EspmDatabase } from "../scripts/lab/postgres";

const run = promisify(execFile);

/** Runs `work` on each item, `concurrency` at a time. */
export async function pool<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

/** How long `work` took, in ms. */
export async function timed(work: () => Promise<void>): Promise<number> {
  const started = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** `total` calls of `call`, `concurrency` at a time: each call's latency in ms, and the whole run's. */
export async function latencies(total: number, concurrency: number, call: (i: number) => Promise<void>) {
  const each: number[] = [];
  const wall = await timed(() =>
    pool(
      Array.from({ length: total }, (_, i) => i),
      concurrency,
      async (i) => void each.push(await timed(() => call(i))),
    ),
  );
  return { wall, p50: percentile(each, 50), p99: percentile(each, 99) };
}

/**
 * `espm enc-follow` for a compile master's espm.ini whose enc_export is `cacheDir`, once its first
 * heartbeat is written (the whole store copied), and how long that took in ms.
 */
export async function startFollower(ini: string, cacheDir: string): Promise<{ child: ChildProcess; copyMs: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, [ESPM_BIN, "enc-follow", "-c", ini], { stdio: "ignore" });
  while (!existsSync(join(cacheDir, FOLLOWER_HEARTBEAT))) {
    if (Date.now() - started > 60_000 || child.exitCode !== null)
      throw new Error("espm enc-follow wrote no heartbeat within 60 s");
    await new Promise((r) => setTimeout(r, 20));
  }
  return { child, copyMs: Date.now() - started };
}

/**
 * A compile master's espm.ini for `db` in `dir` (its `espm enc` reads with the read-only role; its
 * enc_export, the cache and espm enc-follow's copy, is `dir`/enc-cache), for names under *.example.test.
 */
export function compileMasterIni(dir: string, db: EspmDatabase): { ini: string; cacheDir: string } {
  const ini = join(dir, "compile-master.ini");
  const cacheDir = join(dir, "enc-cache");
  writeFileSync(
    ini,
    `[store]\nurl = ${db.encUrl}\npassword_file = ${db.encPasswordFile}\nenc_export = ${cacheDir}\n` +
      `[certnames]\nallow[] = *.example.test\n`,
  );
  return { ini, cacheDir };
}

/**
 * Mean ms of `espm enc -c ini certname` and of `node -e 0`, `runs` times each, alternating; fails
 * when espm enc's answer lacks `expected` (a class of the node's group).
 */
export async function encBesideNode(ini: string, certname: string, runs: number, expected: string) {
  let enc = 0;
  let node = 0;
  for (let i = 0; i < runs; i++) {
    node += await timed(async () => void (await run(process.execPath, ["-e", "0"])));
    enc += await timed(async () => {
      const { stdout } = await run(process.execPath, [ESPM_BIN, "enc", "-c", ini, certname]);
      if (!stdout.includes(expected)) throw new Error(`espm enc classified ${certname} without ${expected}: ${stdout}`);
    });
  }
  return { enc: enc / runs, node: node / runs };
}
