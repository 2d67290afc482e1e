/**
 * What an interrupted test run must not leave behind. The lab's servers run apart from the
 * terminal's process group (detached JVMs and moto, a PostgreSQL that pg_ctl daemonizes), so that a
 * Ctrl-C reaches their owner, which stops them in order. A test run interrupted before its `after`
 * hooks never gets there: so each server and scratch directory is registered here as it is made,
 * and `cleanUpOnInterrupt` (the test hooks call it) makes SIGINT and SIGTERM stop every registered
 * process (SIGTERM, SIGKILL 5 s later), remove every registered directory, and exit 130 or 143.
 */
import { rmSync } from "node:fs";

/** Signal targets: a pid, or minus a process group's id. */
const processes = new Set<number>();
const directories = new Set<string>();

/**
 * Registers a server; returns the release to call once it is stopped. A detached server leads a
 * process group of its own, which is stopped whole (a JVM started through a Debian root's wrapper,
 * PostgreSQL's backends); any other is stopped alone.
 */
export function stopOnInterrupt(pid: number | undefined, o: { group: boolean }): () => void {
  if (pid === undefined) return () => undefined;
  const target = o.group ? -pid : pid;
  processes.add(target);
  return () => processes.delete(target);
}

/** Registers a directory to remove on an interrupt (removing it normally needs no release). */
export function removeOnInterrupt(dir: string): string {
  directories.add(dir);
  return dir;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops every registered process and removes every registered directory, synchronously. */
export function cleanUpNow(): void {
  const pids = [...processes];
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
  const waiter = new Int32Array(new SharedArrayBuffer(4));
  for (const deadline = Date.now() + 5000; pids.some(alive) && Date.now() < deadline;) Atomics.wait(waiter, 0, 0, 100);
  for (const pid of pids.filter(alive)) process.kill(pid, "SIGKILL");
  for (let i = 0; i < 20 && pids.some(alive); i++) Atomics.wait(waiter, 0, 0, 100);
  for (const dir of directories) rmSync(dir, { recursive: true, force: true });
  processes.clear();
  directories.clear();
}

let installed = false;

/** From now on, SIGINT and SIGTERM clean up (cleanUpNow) and exit. */
export function cleanUpOnInterrupt(): void {
  if (installed) return;
  installed = true;
  for (const [signal, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    process.prependListener(signal, () => {
      process.stderr.write(`\n${signal}: stopping the lab's servers and removing their directories\n`);
      cleanUpNow();
      process.exit(code);
    });
  }
}
