/**
 * A minimal Debian root built with debootstrap, cached outside the repository and reused, and
 * throw-away runs inside it: each run gets an overlay over the cached root (so whatever it installs
 * is gone afterwards), /proc, /dev and /sys, and the host's network (so Puppet Server on the host's
 * loopback is reachable), in a private mount namespace that the kernel tears down when it ends.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export const ROOTS_CACHE = process.env.ESPM_ROOTS_CACHE ?? "/var/cache/espm-roots";

/** The Debian mirror apt uses here (the first URIs of debian.sources), else Debian's own. */
function mirror(): string {
  try {
    const sources = readFileSync("/etc/apt/sources.list.d/debian.sources", "utf8");
    return /^URIs:\s*(\S+)/m.exec(sources)?.[1] ?? "http://deb.debian.org/debian";
  } catch {
    return "http://deb.debian.org/debian";
  }
}

export interface DebianRoot {
  dir: string;
  /** Seconds the build took, or 0 when the cached root was reused. */
  builtInSeconds: number;
}

/** The cached minbase root of `suite`, built first when missing (about 36 s and 206 MB for bookworm here). */
export async function debianRoot(suite = "bookworm"): Promise<DebianRoot> {
  const dir = join(ROOTS_CACHE, `${suite}-minbase`);
  if (existsSync(join(dir, ".espm-complete"))) return { dir, builtInSeconds: 0 };
  mkdirSync(ROOTS_CACHE, { recursive: true });
  const started = Date.now();
  const partial = mkdtempSync(join(ROOTS_CACHE, `.${suite}-`));
  try {
    await run("debootstrap", ["--variant=minbase", suite, partial, mirror()], { maxBuffer: 64 * 1024 * 1024 });
    writeFileSync(join(partial, ".espm-complete"), `${new Date().toISOString()}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(partial, dir);
  } catch (err) {
    rmSync(partial, { recursive: true, force: true });
    throw new Error(`debootstrap of Debian ${suite} failed: ${(err as Error).message}`);
  }
  return { dir, builtInSeconds: Math.round((Date.now() - started) / 1000) };
}

export interface RootRun {
  code: number;
  stdout: string;
  stderr: string;
  /** The overlay's upper directory: every file the run wrote, by its path in the root. */
  changes: string;
}

/**
 * Runs `argv` as root inside a throw-away overlay of `root`, with `files` (path in the root → text)
 * written first. The caller removes `scratch` when done with `changes`.
 */
export async function runInRoot(
  root: string,
  scratch: string,
  files: Record<string, { text: string; mode?: number }>,
  argv: string[],
  timeoutMs = 300_000,
): Promise<RootRun> {
  const upper = join(scratch, "upper");
  const work = join(scratch, "work");
  const merged = join(scratch, "merged");
  for (const d of [upper, work, merged]) mkdirSync(d, { recursive: true });
  for (const [path, { text, mode }] of Object.entries(files)) {
    const target = join(upper, path);
    mkdirSync(join(target, ".."), { recursive: true });
    writeFileSync(target, text, { mode: mode ?? 0o644 });
  }
  const setup = [
    'mount -t overlay overlay -o "lowerdir=$0,upperdir=$1,workdir=$2" "$3"',
    'mount -t proc proc "$3/proc"',
    'mount --rbind /dev "$3/dev"',
    'mount --bind /sys "$3/sys"',
    'cp /etc/resolv.conf /etc/hosts "$3/etc/"',
    'root=$3; shift 3; exec chroot "$root" "$@"',
  ].join(" && ");
  try {
    const { stdout, stderr } = await run(
      "unshare",
      ["--mount", "--propagation", "private", "sh", "-c", setup, root, upper, work, merged, ...argv],
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
    );
    return { code: 0, stdout, stderr, changes: upper };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof e.code === "number" ? e.code : 1,
      stdout: e.stdout ?? "",
      stderr: e.stderr ?? "",
      changes: upper,
    };
  }
}
