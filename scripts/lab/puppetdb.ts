/**
 * An isolated PuppetDB as a child process: Debian 12's PuppetDB 7.12 on OpenJDK 17, its own config
 * folder, its own database in the lab's PostgreSQL cluster (with pg_trgm, which it wants), and its
 * own certificate from the lab Puppet Server's CA, listening on loopback over HTTPS only. Its
 * certificate allowlist names who may use it at all: the Puppet Server (which sends it facts,
 * catalogs and reports) and espm. Can be stopped and started again (the tests take it down).
 */
import { stopOnInterrupt } from "./interrupt";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { Agent, request } from "undici";
import { residentMiB, type PostgresLab } from "./postgres";
import { findJava, logbackConfig, stopServer, type PuppetServerLab } from "./puppetserver";

const run = promisify(execFile);
const PACKAGE_CONF = "/etc/puppetdb";
const JAR = "/usr/share/puppetdb/puppetdb.jar";

export interface PuppetDbOptions {
  /** Everything PuppetDB writes goes under this directory. */
  dir: string;
  /** The port, chosen before Puppet Server starts (its puppetdb.conf names it). */
  port: number;
  postgres: PostgresLab;
  /** The Puppet Server whose CA issues PuppetDB's certificate and whose certificates it trusts. */
  server: PuppetServerLab;
  /** Certnames allowed to use PuppetDB besides the Puppet Server's (espm's, typically). */
  allow?: string[];
  certname?: string;
}

export interface PuppetDbLab {
  /** https://localhost:PORT: PuppetDB's certificate names localhost. */
  url: string;
  port: number;
  certname: string;
  /** The file its certificate-allowlist setting names (re-read when PuppetDB starts). */
  allowlist: string;
  /** Seconds from spawn to `running`, for the last start. */
  startSeconds: number;
  /** Resident memory of the JVM once running, MiB, for the last start. */
  memoryMiB: number;
  running(): boolean;
  /** A call as the Puppet Server makes it (its certificate is in the allowlist); the answer as JSON. */
  call(method: "GET" | "POST", path: string, body?: unknown): Promise<unknown>;
  /** What PuppetDB holds for a name, deactivated nodes included: absent, active or deactivated. */
  nodeState(certname: string): Promise<"absent" | "active" | "deactivated">;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function startPuppetDb(options: PuppetDbOptions): Promise<PuppetDbLab> {
  const o = { certname: "puppetdb.lab.test", allow: [], ...options };
  const D = o.dir;
  for (const d of ["conf.d", "var", "log"]) mkdirSync(join(D, d), { recursive: true });

  const password = randomBytes(16).toString("hex");
  await o.postgres.createDatabase("puppetdb", "puppetdb", password);
  await o.postgres.sql("puppetdb", "CREATE EXTENSION IF NOT EXISTS pg_trgm");

  // Its own certificate from the lab's CA, for the name Puppet Server connects to (localhost).
  const ssl = join(o.server.dir, "ssl");
  const cert = join(ssl, `certs/${o.certname}.pem`);
  const key = join(ssl, `private_keys/${o.certname}.pem`);
  if (!existsSync(cert)) {
    const generate = o.server.command([
      "puppetserver",
      "ca",
      "generate",
      "--certname",
      o.certname,
      "--subject-alt-names",
      "localhost",
      "--config",
      o.server.confFile,
    ]);
    await run(generate[0]!, generate.slice(1), { timeout: 120_000 });
  }

  const conf = join(D, "conf.d");
  writeFileSync(join(D, "allowlist"), [o.server.certname, ...o.allow].join("\n") + "\n");
  writeFileSync(
    join(conf, "config.ini"),
    `[global]
vardir = ${D}/var
logging-config = ${D}/logback.xml

[puppetdb]
certificate-allowlist = ${D}/allowlist

[command-processing]
threads = 2
`,
  );
  writeFileSync(
    join(conf, "database.ini"),
    `[database]
subname = //127.0.0.1:${o.postgres.port}/puppetdb
username = puppetdb
password = ${password}
`,
    { mode: 0o600 },
  );
  writeFileSync(
    join(conf, "jetty.ini"),
    `[jetty]
ssl-host = 127.0.0.1
ssl-port = ${o.port}
ssl-key = ${key}
ssl-cert = ${cert}
ssl-ca-cert = ${o.server.caBundle}
`,
  );
  copyFileSync(join(PACKAGE_CONF, "conf.d/auth.conf"), join(conf, "auth.conf"));
  writeFileSync(join(D, "logback.xml"), logbackConfig(`${D}/log/puppetdb.log`));

  const url = `https://localhost:${o.port}`;
  const logFile = join(D, "log/stdout.log");
  let child: ChildProcess | undefined;
  const tls = serverTls(o.server);
  const lab: PuppetDbLab = {
    url,
    port: o.port,
    certname: o.certname,
    allowlist: join(D, "allowlist"),
    startSeconds: 0,
    memoryMiB: 0,
    running: () => child !== undefined && child.exitCode === null && child.signalCode === null,
    async call(method, path, body) {
      const dispatcher = new Agent({ connect: tls });
      try {
        const res = await request(`${url}${path}`, {
          method,
          dispatcher,
          body: body === undefined ? undefined : JSON.stringify(body),
          headers: body === undefined ? {} : { "content-type": "application/json" },
        });
        const text = await res.body.text();
        if (res.statusCode >= 300) throw new Error(`PuppetDB ${method} ${path}: ${res.statusCode} ${text}`);
        return JSON.parse(text);
      } finally {
        await dispatcher.close();
      }
    },
    async nodeState(certname) {
      const query = encodeURIComponent(
        JSON.stringify(["and", ["=", "certname", certname], ["=", "node_state", "any"]]),
      );
      const rows = (await lab.call("GET", `/pdb/query/v4/nodes?query=${query}`)) as { deactivated: string | null }[];
      return !rows[0] ? "absent" : rows[0].deactivated ? "deactivated" : "active";
    },
    async start() {
      if (lab.running()) return;
      const started = Date.now();
      const out = openSync(logFile, "a");
      child = spawn(
        findJava(),
        [
          "-Xmx512m",
          "-XX:TieredStopAtLevel=1",
          "-XX:+UseSerialGC",
          "-cp",
          JAR,
          "clojure.main",
          "-m",
          "puppetlabs.puppetdb.core",
          "services",
          "--config",
          conf,
          "--bootstrap-config",
          join(PACKAGE_CONF, "bootstrap.cfg"),
        ],
        { stdio: ["ignore", out, out], detached: true },
      );
      closeSync(out); // the JVM has its own copy; a restart opens the log again
      const release = stopOnInterrupt(child.pid, { group: true });
      child.once("exit", release);
      try {
        await waitUntilRunning(url, tls, child, logFile);
      } catch (err) {
        await lab.stop();
        throw err;
      }
      lab.startSeconds = (Date.now() - started) / 1000;
      lab.memoryMiB = residentMiB(child.pid!);
    },
    async stop() {
      if (child) await stopServer(child);
    },
  };
  await lab.start();
  return lab;
}

/** The Puppet Server's own TLS identity: PuppetDB asks every client for a certificate, even for its status. */
export function serverTls(server: PuppetServerLab): { ca: string; cert: string; key: string } {
  const ssl = join(server.dir, "ssl");
  return {
    ca: readFileSync(server.caBundle, "utf8"),
    cert: readFileSync(join(ssl, `certs/${server.certname}.pem`), "utf8"),
    key: readFileSync(join(ssl, `private_keys/${server.certname}.pem`), "utf8"),
  };
}

async function waitUntilRunning(
  url: string,
  tls: { ca: string; cert: string; key: string },
  child: ChildProcess,
  logFile: string,
): Promise<void> {
  const agent = new Agent({ connect: tls });
  const deadline = Date.now() + 180_000;
  try {
    while (Date.now() < deadline) {
      if (child.exitCode !== null)
        throw new Error(`PuppetDB exited with ${child.exitCode} while starting; see ${logFile}`);
      try {
        const res = await request(`${url}/status/v1/services/puppetdb-status`, { dispatcher: agent });
        const body = (await res.body.json()) as { state?: string };
        if (body.state === "running") return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`PuppetDB was not running within 180 s; see ${logFile}`);
  } finally {
    await agent.close();
  }
}
