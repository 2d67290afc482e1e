/**
 * Minimal Debian roots built with debootstrap, cached outside the repository and reused, and
 * throw-away runs inside them: each run gets an overlay over the cached root (so whatever it writes
 * there is gone afterwards), /proc, /dev and /sys, the host's network (so servers on the host's
 * loopback are reachable both ways) and host directories bound at their own paths, in a private
 * mount namespace that the kernel tears down when the run's last process ends.
 *
 * Run as a script it builds (or finds) the Puppet 8 root and prints where it is:
 *   node dist/scripts/lab/debian-root.js puppet8
 */
import { execFile, execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
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
  /** What the build stamped: the date, and each installed package's version. */
  stamp: string;
}

export interface RootRecipe {
  suite: string;
  /** Installed with apt-get --no-install-recommends after debootstrap; none for a bare minbase root. */
  packages?: string[];
  /** The cache directory's name; with packages it carries the build month, so a root is rebuilt monthly with that month's packages. */
  name: string;
}

/** The bare minbase root of `suite` (about 36 s and 206 MB for bookworm here). */
export function minbase(suite: string): RootRecipe {
  return { suite, name: `${suite}-minbase` };
}

/**
 * Debian 13's Puppet 8: puppetserver 8.7 with trixie's own OpenJDK 21, and puppet-agent 8.10.
 * Built in about 40 s and 860 MB here, then reused until the month changes.
 */
export function puppet8(): RootRecipe {
  const month = new Date().toISOString().slice(0, 7);
  return { suite: "trixie", packages: ["puppetserver", "puppet-agent"], name: `trixie-puppet8-${month}` };
}

/** The cached root `recipe` describes, built first when missing. */
export async function debianRoot(recipe: RootRecipe | string = "bookworm"): Promise<DebianRoot> {
  const r = typeof recipe === "string" ? minbase(recipe) : recipe;
  const dir = join(ROOTS_CACHE, r.name);
  const marker = join(dir, ".espm-complete");
  if (existsSync(marker)) return { dir, builtInSeconds: 0, stamp: readFileSync(marker, "utf8") };
  mkdirSync(ROOTS_CACHE, { recursive: true });
  const started = Date.now();
  const partial = mkdtempSync(join(ROOTS_CACHE, `.${r.name}-`));
  try {
    await run("debootstrap", ["--variant=minbase", r.suite, partial, mirror()], { maxBuffer: 64 * 1024 * 1024 });
    let versions = "";
    if (r.packages?.length) {
      const install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", ...r.packages];
      for (const argv of [["apt-get", "update", "-q"], install]) {
        const result = await runInRoot(partial, "", argv, {
          overlay: false,
          env: { DEBIAN_FRONTEND: "noninteractive" },
        });
        if (result.code !== 0)
          throw new Error(`${argv.join(" ")} exited ${result.code}: ${result.stderr.slice(-2000)}`);
      }
      const query = await runInRoot(partial, "", ["dpkg-query", "-W", "-f=${Package} ${Version}\\n", ...r.packages], {
        overlay: false,
      });
      versions = query.stdout;
      // apt's downloaded archives are not part of the root: 200 MB less to keep.
      rmSync(join(partial, "var/cache/apt/archives"), { recursive: true, force: true });
      mkdirSync(join(partial, "var/cache/apt/archives/partial"), { recursive: true });
    }
    const stamp = `built ${new Date().toISOString()} in ${Math.round((Date.now() - started) / 1000)} s\n${versions}`;
    writeFileSync(join(partial, ".espm-complete"), stamp);
    rmSync(dir, { recursive: true, force: true });
    renameSync(partial, dir);
    // An older month's root of the same kind is stale now.
    const kind = r.name.replace(/-\d{4}-\d\d$/, "-");
    for (const old of readdirSync(ROOTS_CACHE)) {
      if (old !== r.name && kind !== r.name && old.startsWith(kind))
        rmSync(join(ROOTS_CACHE, old), { recursive: true, force: true });
    }
    return { dir, builtInSeconds: Math.round((Date.now() - started) / 1000), stamp };
  } catch (err) {
    rmSync(partial, { recursive: true, force: true });
    throw new Error(`building the Debian ${r.suite} root failed: ${(err as Error).message}`);
  }
}

export interface RootOptions {
  /**
   * true (the default): the run writes into an overlay under `scratch`, and the cached root stays
   * as built; false: straight into the root (only while building it).
   */
  overlay?: boolean;
  /** Host paths (directories or files) bound at the same paths in the root. */
  binds?: string[];
  /** A host file bound as the root's /etc/hosts (default: a copy of the host's). */
  hosts?: string;
  env?: Record<string, string>;
}

/**
 * The command line that runs `argv` as root inside `root`: in a private mount namespace, with
 * the mounts RootOptions describe. unshare, sh and chroot each exec the next, so the process
 * started is `argv`'s own (a signal to it reaches the program), and when it ends the namespace,
 * and every mount in it, go with it. The script is fixed text: every path and value reaches it as
 * a positional argument, never inside the script.
 */
export function rootCommand(root: string, scratch: string, argv: string[], o: RootOptions = {}): string[] {
  const values: string[] = [];
  /** A value passed as the next positional argument, as the script refers to it. */
  const ref = (value: string) => {
    values.push(value);
    return `"\${${values.length}}"`;
  };
  const steps: string[] = [];
  if (o.overlay !== false) {
    for (const d of ["upper", "work", "merged"]) mkdirSync(join(scratch, d), { recursive: true });
    const options = `lowerdir=${root},upperdir=${join(scratch, "upper")},workdir=${join(scratch, "work")}`;
    steps.push(`R=${ref(join(scratch, "merged"))}`, `mount -t overlay overlay -o ${ref(options)} "$R"`);
  } else {
    steps.push(`R=${ref(root)}`);
  }
  steps.push('mount -t proc proc "$R/proc"', 'mount --rbind /dev "$R/dev"', 'mount --bind /sys "$R/sys"');
  steps.push(o.hosts ? `mount --bind ${ref(o.hosts)} "$R/etc/hosts"` : 'cp /etc/hosts "$R/etc/hosts"');
  steps.push('cp /etc/resolv.conf "$R/etc/resolv.conf"');
  for (const path of o.binds ?? []) {
    const host = ref(path);
    const inRoot = `"$R"${host}`;
    steps.push(
      statSync(path).isDirectory() ? `mkdir -p ${inRoot}` : `mkdir -p "$(dirname ${inRoot})" && touch ${inRoot}`,
      `mount --bind ${host} ${inRoot}`,
    );
  }
  for (const [key, value] of Object.entries(o.env ?? {})) steps.push(`export ${ref(`${key}=${value}`)}`);
  steps.push(`shift ${values.length}`, 'exec chroot "$R" env PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"');
  return ["unshare", "--mount", "--propagation", "private", "sh", "-ec", steps.join("\n"), "sh", ...values, ...argv];
}

export interface RootRun {
  code: number;
  stdout: string;
  stderr: string;
  /** The overlay's upper directory: every file the run wrote, by its path in the root. */
  changes: string;
}

/**
 * Runs `argv` as root inside a throw-away overlay of `root` under `scratch`, with `files` (path in
 * the root → text) written first. The caller removes `scratch` when done with `changes`.
 */
export async function runInRoot(
  root: string,
  scratch: string,
  argv: string[],
  o: RootOptions & { files?: Record<string, { text: string; mode?: number }>; timeoutMs?: number } = {},
): Promise<RootRun> {
  const upper = join(scratch, "upper");
  for (const [path, { text, mode }] of Object.entries(o.files ?? {})) {
    const target = join(upper, path);
    mkdirSync(join(target, ".."), { recursive: true });
    writeFileSync(target, text, { mode: mode ?? 0o644 });
  }
  const command = rootCommand(root, scratch, argv, o);
  try {
    const { stdout, stderr } = await run(command[0]!, command.slice(1), {
      timeout: o.timeoutMs ?? 300_000,
      maxBuffer: 16 * 1024 * 1024,
    });
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

if (require.main === module) {
  const which = process.argv[2] ?? "puppet8";
  const recipe = which === "puppet8" ? puppet8() : minbase(which);
  debianRoot(recipe).then(
    (root) => {
      const size = execFileSync("du", ["-sh", root.dir]).toString().split("\t")[0];
      console.log(
        `${root.dir}\n${root.builtInSeconds ? `built in ${root.builtInSeconds} s` : "reused"}, ${size}\n${root.stamp}`,
      );
    },
    (err: Error) => {
      console.error(err.message);
      process.exit(1);
    },
  );
}
