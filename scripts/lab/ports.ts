/**
 * Who holds a TCP port, read from /proc (no ss or lsof needed), so that a demo or lab that cannot
 * listen says which process is in the way instead of failing later with a confusing error.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createServer } from "node:net";

/** Socket inodes listening on `port` (IPv4 and IPv6). */
function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      // State 0A is LISTEN; the local address ends in :PORT in hex.
      if (!local || fields[3] !== "0A" || parseInt(local.split(":").pop()!, 16) !== port) continue;
      inodes.add(fields[9]!);
    }
  }
  return inodes;
}

export interface PortOwner {
  pid: number;
  command: string;
}

/** The process listening on `port`, or undefined when none is (or it cannot be seen). */
export function portOwner(port: number): PortOwner | undefined {
  const inodes = listeningInodes(port);
  if (inodes.size === 0) return undefined;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode && inodes.has(inode)) return { pid: Number(entry), command: commandLine(Number(entry)) };
    }
  }
  return { pid: 0, command: "a process this user cannot see" };
}

/** A process's command line, shortened to `max` characters for a message. */
export function commandLine(pid: number, max = 160): string {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    const text = argv.join(" ");
    return text.length > max ? `${text.slice(0, max - 3)}...` : text;
  } catch {
    return "(gone)";
  }
}

/** Whether a process with this pid is running. */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
