/**
 * CPU time by kind of process while some work runs, for the benches' "where the time goes": on a
 * machine of two cores the engine, the dynamic-provider host, espm and Puppet Server share them,
 * so what each burns is as much a part of a wall time as what each waits for.
 *
 * It reads /proc every 100 ms and keeps each process's last user + system time, so a process that
 * starts and exits during the work (the dynamic-provider host does) counts up to its last sample.
 */
import { readdirSync, readFileSync } from "node:fs";
import { basename } from "node:path";

/**
 * What a process is, from its command line: one of these, or for any other process the name of
 * its executable.
 */
export type ProcessKind =
  "engine" | "provider host" | "program" | "espm" | "autosign wrapper" | "puppetserver" | (string & {});

/** Clock ticks per second of /proc's times (USER_HZ, 100 on Linux). */
const TICKS = 100;

function kindOf(pid: number, cmdline: string[]): ProcessKind {
  if (pid === process.pid) return "program";
  const [exe = "", ...args] = cmdline;
  const all = cmdline.join(" ");
  if (/(^|\/)pulumi$/.test(exe)) return "engine";
  if (/dynamic-provider|pulumi-resource-pulumi-nodejs|pulumi-resource-espm/.test(all)) return "provider host";
  if (/java$/.test(exe) && /puppetserver/.test(all)) return "puppetserver";
  if (args.includes("autosign")) return "autosign wrapper";
  if (args.some((a) => /espm/.test(a)) && /node$/.test(exe)) return "espm";
  return basename(exe) || "?";
}

/**
 * Each live process's kind and CPU seconds so far. A process keeps the kind `known` gives it: its
 * command line is read once, when first seen (an exited one, not yet reaped, has none left).
 */
function sample(
  known: ReadonlyMap<number, { kind: ProcessKind }> = new Map(),
): Map<number, { kind: ProcessKind; seconds: number }> {
  const out = new Map<number, { kind: ProcessKind; seconds: number }>();
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // Fields after the command's closing parenthesis; utime and stime are the 14th and 15th.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const seconds = (Number(fields[11]) + Number(fields[12])) / TICKS;
      const kind =
        known.get(pid)?.kind ?? kindOf(pid, readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean));
      out.set(pid, { kind, seconds });
    } catch {
      // exited between the listing and the read
    }
  }
  return out;
}

/** Runs `work` and returns its result with the CPU seconds each kind of process spent during it. */
export async function cpuDuring<T>(work: () => Promise<T>): Promise<{ result: T; cpu: Map<ProcessKind, number> }> {
  const before = sample();
  const last = new Map(before);
  const update = () => {
    for (const [pid, entry] of sample(last)) last.set(pid, entry);
  };
  const timer = setInterval(update, 100);
  try {
    const result = await work();
    update();
    const cpu = new Map<ProcessKind, number>();
    for (const [pid, { kind, seconds }] of last) {
      const spent = seconds - (before.get(pid)?.seconds ?? 0);
      if (spent > 0) cpu.set(kind, (cpu.get(kind) ?? 0) + spent);
    }
    return { result, cpu };
  } finally {
    clearInterval(timer);
  }
}

/** "engine 3.1 s, provider host 1.2 s, …", largest first. */
export function formatCpu(cpu: Map<ProcessKind, number>): string {
  const total = [...cpu.values()].reduce((a, b) => a + b, 0);
  const each = [...cpu]
    .filter(([, s]) => s >= 0.05)
    .sort((a, b) => b[1] - a[1])
    .map(([kind, s]) => `${kind} ${s.toFixed(1)}`)
    .join(", ");
  return `CPU ${total.toFixed(1)} s: ${each}`;
}
