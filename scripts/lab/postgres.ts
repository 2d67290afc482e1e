/**
 * An isolated PostgreSQL cluster as the lab's database: Debian's PostgreSQL 15, a cluster of its
 * own (initdb) in a scratch directory, on a free loopback port, with its socket in that directory,
 * so it never meets a system cluster. PostgreSQL refuses to run as root: initdb, pg_ctl and the
 * lab's psql run as the `postgres` user (runuser). Over TCP every role logs in with its password
 * (scram-sha-256); the lab itself speaks as the superuser over the private socket.
 */
import { removeOnInterrupt, stopOnInterrupt } from "./interrupt";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  appendFileSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./ports";

const run = promisify(execFile);

export interface PostgresLab {
  host: "127.0.0.1";
  port: number;
  /** The cluster's directory (data/, its socket and log), owned by postgres. */
  dir: string;
  /** The postmaster's process id. */
  pid(): number;
  /** Runs SQL as the superuser in `database`; returns psql's unaligned, tuples-only output. */
  sql(database: string, statement: string): Promise<string>;
  /** A role that logs in with `password`, and a database it owns. */
  createDatabase(name: string, owner: string, password: string): Promise<void>;
  stop(): Promise<void>;
}

/** Debian's PostgreSQL binaries (the newest installed major version). */
export function postgresBin(): string {
  const base = "/usr/lib/postgresql";
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(join(base, v, "bin/initdb")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (!versions[0])
    throw new Error("PostgreSQL is not installed under /usr/lib/postgresql; run scripts/install-deps.sh");
  return join(base, versions[0], "bin");
}

/** A SQL string literal. */
export function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** A SQL identifier. */
export function identifier(value: string): string {
  return `"${value.replaceAll('"', '""')}"`;
}

function asPostgres(argv: string[], timeoutMs = 60_000) {
  return run("runuser", ["-u", "postgres", "--", ...argv], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
}

export async function startPostgres(): Promise<PostgresLab> {
  const bin = postgresBin();
  // Under the system's temporary directory (not a test's 0700 scratch), which postgres can reach.
  const dir = removeOnInterrupt(mkdtempSync(join(tmpdir(), "espm-pg-")));
  const { uid, gid } = await postgresIds();
  chownSync(dir, uid, gid);
  const data = join(dir, "data");
  await asPostgres([
    join(bin, "initdb"),
    "-D",
    data,
    "-U",
    "postgres",
    "--auth-local=trust",
    "--auth-host=scram-sha-256",
    "--no-sync",
    "-E",
    "UTF8",
    "--locale=C",
  ]);
  const port = await freePort();
  // Settings in the config file rather than on pg_ctl's -o, which pg_ctl hands to a shell.
  appendFileSync(
    join(data, "postgresql.conf"),
    `\nlisten_addresses = '127.0.0.1'\nport = ${port}\nunix_socket_directories = '${dir}'\nmax_connections = 100\n`,
  );
  await asPostgres([join(bin, "pg_ctl"), "-D", data, "-l", join(dir, "postgres.log"), "-w", "-t", "60", "start"]);
  // pg_ctl daemonizes the postmaster, which leads a process group with its backends.
  const release = stopOnInterrupt(Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]), {
    group: true,
  });
  const psql = (database: string, statement: string) =>
    asPostgres([
      join(bin, "psql"),
      "-h",
      dir,
      "-p",
      String(port),
      "-U",
      "postgres",
      "-d",
      database,
      "-X",
      "-q",
      "-A",
      "-t",
      "-v",
      "ON_ERROR_STOP=1",
      "-c",
      statement,
    ]).then((r) => r.stdout.trim());
  let stopped = false;
  return {
    host: "127.0.0.1",
    port,
    dir,
    pid: () => Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]),
    sql: psql,
    async createDatabase(name, owner, password) {
      // Separate calls: CREATE DATABASE cannot run in the transaction one -c with several statements makes.
      await psql("postgres", `CREATE ROLE ${identifier(owner)} LOGIN PASSWORD ${literal(password)}`);
      await psql("postgres", `CREATE DATABASE ${identifier(name)} OWNER ${identifier(owner)}`);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (existsSync(join(data, "postmaster.pid")))
        await asPostgres([join(bin, "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"]).catch(() => undefined);
      release();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const { stdout } = await run("id", ["-u", "postgres"]).catch(() => {
    throw new Error("there is no postgres user: install Debian's postgresql (scripts/install-deps.sh)");
  });
  const gid = (await run("id", ["-g", "postgres"])).stdout;
  return { uid: Number(stdout.trim()), gid: Number(gid.trim()) };
}

/**
 * The memory of a process and its direct children (PostgreSQL's backends), in MiB, from /proc: the
 * proportional set size, so memory they share (PostgreSQL's shared buffers) counts once.
 */
export function residentMiB(pid: number): number {
  const rss = (p: string) =>
    Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/smaps_rollup`, "utf8"))?.[1] ?? 0);
  let kib = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The parent's pid is the fourth field of /proc/PID/stat, after the command in parentheses.
      const ppid = Number(readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]?.split(" ")[1]);
      if (Number(entry) === pid || ppid === pid) kib += rss(entry);
    } catch {
      // the process ended meanwhile
    }
  }
  return Math.round(kib / 1024);
}

export interface EspmDatabase {
  /** postgres://espm@HOST:PORT/DATABASE: the role espm runs as (it owns the database, so it migrates). */
  url: string;
  passwordFile: string;
  /** The read-only role `espm enc` uses on compile masters, and its URL and password file. */
  encRole: string;
  encUrl: string;
  encPasswordFile: string;
}

/**
 * A database for espm's store, as the README tells a DBA to make it: a role for espm (named as the
 * database) that owns it,
 * and a login role for `espm enc` that espm grants SELECT on nodes and groups. Passwords go to
 * files under `dir` (0600), never into a URL.
 */
export async function createEspmDatabase(pg: PostgresLab, dir: string, name = "espm"): Promise<EspmDatabase> {
  const password = () => randomBytes(18).toString("base64url");
  const owner = name;
  const encRole = `${name}_enc`;
  const ownerPassword = password();
  const encPassword = password();
  await pg.createDatabase(name, owner, ownerPassword);
  await pg.sql("postgres", `CREATE ROLE ${identifier(encRole)} LOGIN PASSWORD ${literal(encPassword)}`);
  const passwordFile = join(dir, `${name}.password`);
  const encPasswordFile = join(dir, `${encRole}.password`);
  writeFileSync(passwordFile, `${ownerPassword}\n`, { mode: 0o600 });
  writeFileSync(encPasswordFile, `${encPassword}\n`, { mode: 0o600 });
  const at = `${pg.host}:${pg.port}/${name}`;
  return {
    url: `postgres://${owner}@${at}`,
    passwordFile,
    encRole,
    encUrl: `postgres://${encRole}@${at}`,
    encPasswordFile,
  };
}
