/**
 * An isolated Puppet Server as a child process: its own directories (CA, code, logs) under one
 * folder, listening on loopback. By default the host's: Debian 12's Puppet Server 7 on OpenJDK 17;
 * with `root`, the one installed in that Debian root (Debian 13's Puppet Server 8 on OpenJDK 21,
 * scripts/lab/debian-root.ts), run inside it with the server's folder and `binds` at their own
 * paths, so its ENC and autosign policy (its child processes) find espm where the host has it.
 * With fast-start JVM flags (-XX:TieredStopAtLevel=1 and a small heap: about 25 s to ready
 * instead of 70) unless told `jvm: "production"`. Used by the tests, the benchmark and the demo.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { Agent, request } from "undici";
import { authConfForEspm, withRulesFirst, type CertnameRules } from "espm-agent/puppetserver/config";
import { rootCommand } from "./debian-root";
import { stopOnInterrupt } from "./interrupt";
import { createCsr, generateRsaKeyPairAsync } from "espm-sdk/x509";

const run = promisify(execFile);
/** Where Debian's puppetserver package keeps its configuration, on Debian 12 and 13 alike. */
const PACKAGE_CONF = "/etc/puppet/puppetserver";

/** The certname patterns of the lab: tests, the demo and the benchmark name their nodes under these. */
export const LAB_CERTNAME_PATTERNS = [
  "*.example.test",
  "*.lab.test",
  "*.provider.test",
  "*.plugin.test",
  "*.engine.test",
  "*.failures.test",
  "*.serialization.test",
  "*.first-boot.test",
  "*.first-run.test",
  "web-01.exact.test",
  "*.faults.test",
  "*.enroll.test",
  "*.yaml.test",
  "*.python.test",
];

export interface PuppetServerOptions {
  /** Everything the server writes goes under this directory. */
  dir: string;
  port?: number;
  certname?: string;
  /** Command Puppet Server runs as its ENC (node_terminus = exec); none means plain nodes. */
  enc?: string;
  /** Modules copied into the production environment. */
  modules?: string[];
  /** The names espm may sign, which auth.conf enforces (default: the lab patterns). */
  certnames?: CertnameRules;
  /** Aborting it while the server starts stops the server and rejects (a Ctrl-C during start-up). */
  signal?: AbortSignal;
  /** false: leave espm's client certificate to `espm enroll`, as an operator would (default: issue it). */
  issueEspmCertificate?: boolean;
  /** "stock": Debian's auth.conf as the package installs it, for `espm puppet-config` to change (default: with espm's rules). */
  authConf?: "stock" | "espm";
  /** The site's own auth.conf rules (HOCON objects, each followed by a comma), first in the stock rule list. */
  siteAuthRules?: string;
  /** The policy executable for policy-based autosigning (the wrapper `espm puppet-config` writes); default none. */
  autosign?: string;
  /** Also auth.conf's rule for Puppet 8's bulk sign, as `espm puppet-config --bulk-sign` prints it. */
  bulkSign?: boolean;
  /** A Debian root with puppetserver installed, to run that Puppet Server instead of the host's. */
  root?: string;
  /** Host paths the server's child processes need inside `root` (espm's checkout, its config, node). */
  binds?: string[];
  /**
   * "fast" (default): -XX:TieredStopAtLevel=1, about 25 s to ready, but every RSA signature costs
   * several times more; "production": the JIT as Debian's package runs it (-Xms1g -Xmx1g).
   */
  jvm?: "fast" | "production";
  /**
   * PuppetDB's URL (scripts/lab/puppetdb.ts): facts, catalogs and reports go there as well
   * (storeconfigs, `reports = store,puppetdb`, the facts route), through Debian's puppet-terminus-puppetdb.
   */
  puppetdb?: string;
}

export interface PuppetServerLab {
  dir: string;
  url: string;
  port: number;
  certname: string;
  confFile: string;
  caBundle: string;
  /** espm's client certificate and key at this server (CN espm). */
  espmCert: string;
  espmKey: string;
  environmentDir: string;
  /** Where the server stores agents' reports (reports = store). */
  reportDir: string;
  /** The Debian root it runs in, if not the host's. */
  root?: string;
  /** Puppet Server's major version: 7 (Debian 12) or 8 (Debian 13). */
  puppetVersion: number;
  /** Whether auth.conf has "espm bulk sign", so an espm here may be set up with bulk_sign. */
  bulkSign: boolean;
  /**
   * `argv` as a command line that runs where this server runs: as it is on the host, or inside its
   * Debian root (over an overlay of its own) with the server's folder and `binds` bound.
   */
  command(argv: string[]): string[];
  stop(): Promise<void>;
  /** Reloads its config (auth.conf, puppet.conf) as `systemctl reload puppetserver` would, and waits until it has. */
  reload(): Promise<void>;
}

/**
 * The OpenJDK Debian's puppetserver runs on, by its path inside `root` (default the host): on the
 * host OpenJDK 17 even when another JDK is first on PATH (Puppet 7's JRuby wants 17); in a root,
 * the one it installed (21 on Debian 13).
 */
export function findJava(root = ""): string {
  const jvm = "/usr/lib/jvm";
  const wanted = root ? /^java-\d+-openjdk/ : /^java-17-openjdk/;
  const candidates = existsSync(root + jvm) ? readdirSync(root + jvm).filter((d) => wanted.test(d)) : [];
  for (const d of candidates) {
    const java = join(jvm, d, "bin/java");
    if (existsSync(root + java)) return java;
  }
  throw new Error(
    root
      ? `no OpenJDK under ${root}${jvm}; rebuild the root (scripts/lab/debian-root.ts)`
      : "OpenJDK 17 is not installed under /usr/lib/jvm; run scripts/install-deps.sh",
  );
}

function writeLayout(
  o: Pick<Required<PuppetServerOptions>, "dir" | "port" | "certname" | "certnames"> &
    Pick<
      PuppetServerOptions,
      "enc" | "modules" | "authConf" | "autosign" | "root" | "bulkSign" | "puppetdb" | "siteAuthRules"
    >,
): { confFile: string; environmentDir: string } {
  const S = o.dir;
  const DEBIAN_CONF = `${o.root ?? ""}${PACKAGE_CONF}`;
  for (const d of [
    "conf.d",
    "services.d",
    "puppet",
    "code/environments/production/manifests",
    "code/environments/production/modules",
    "var",
    "run",
    "log",
    "jruby-gems",
    "ssl",
    "ca",
    "enc",
  ]) {
    mkdirSync(join(S, d), { recursive: true });
  }
  writeFileSync(
    join(S, "conf.d/webserver.conf"),
    `webserver: { access-log-config: ${S}/request-logging.xml, client-auth: want, ssl-host: 127.0.0.1, ssl-port: ${o.port} }\n`,
  );
  writeFileSync(
    join(S, "conf.d/puppetserver.conf"),
    `jruby-puppet: {
  ruby-load-path: [/usr/lib/puppetserver/ruby/vendor_ruby]
  gem-home: ${S}/jruby-gems
  gem-path: [\${jruby-puppet.gem-home}, "/usr/lib/puppetserver/vendored-jruby-gems"]
  server-conf-dir: ${S}/puppet
  server-code-dir: ${S}/code
  server-var-dir: ${S}/var
  server-run-dir: ${S}/run
  server-log-dir: ${S}/log
  max-active-instances: 1
}
http-client: {}
profiler: { enabled: false }
`,
  );
  writeFileSync(join(S, "conf.d/global.conf"), `global: { logging-config: ${S}/logback.xml }\n`);
  writeFileSync(join(S, "logback.xml"), logbackConfig(`${S}/log/puppetserver.log`));
  writeFileSync(
    join(S, "request-logging.xml"),
    readFileSync(join(DEBIAN_CONF, "request-logging.xml"), "utf8").replaceAll("/var/log/puppetserver", `${S}/log`),
  );
  for (const f of ["web-routes.conf", "metrics.conf"])
    copyFileSync(join(DEBIAN_CONF, "conf.d", f), join(S, "conf.d", f));
  // As on a site with compile masters, whose certificates carry dns_alt_names: the CA signs SANs,
  // so espm's own check (a SAN may be only DNS:<certname>) is what keeps them out of its CSRs.
  writeFileSync(join(S, "conf.d/ca.conf"), "certificate-authority: {\n    allow-subject-alt-names: true\n}\n");
  for (const f of ["bootstrap.cfg", "ca.cfg"])
    copyFileSync(join(DEBIAN_CONF, "services.d", f), join(S, "services.d", f));
  const debian = readFileSync(join(DEBIAN_CONF, "conf.d/auth.conf"), "utf8");
  const stock = o.siteAuthRules ? withRulesFirst(debian, `\n${o.siteAuthRules}`) : debian;
  writeFileSync(
    join(S, "conf.d/auth.conf"),
    o.authConf === "stock" ? stock : authConfForEspm(stock, o.certnames, { bulkSign: o.bulkSign }),
  );

  let enc = "";
  if (o.enc) {
    const wrapper = join(S, "enc/enc.sh");
    // Puppet splits external_nodes on spaces; a wrapper keeps paths with any characters safe.
    writeFileSync(wrapper, `#!/bin/sh\nexec ${o.enc} "$1"\n`, { mode: 0o755 });
    enc = `node_terminus = exec\nexternal_nodes = ${wrapper}\n`;
  }
  let reports = "reports = store\n";
  if (o.puppetdb) {
    // soft_write_failure off: a run whose report or facts PuppetDB refused fails, as it should in a lab.
    writeFileSync(join(S, "puppet/puppetdb.conf"), `[main]\nserver_urls = ${o.puppetdb}\nsoft_write_failure = false\n`);
    writeFileSync(join(S, "puppet/routes.yaml"), "---\nserver:\n  facts:\n    terminus: puppetdb\n    cache: yaml\n");
    reports = "storeconfigs = true\nstoreconfigs_backend = puppetdb\nreports = store,puppetdb\n";
  }
  const confFile = join(S, "puppet/puppet.conf");
  writeFileSync(
    confFile,
    `[main]
certname = ${o.certname}
server = localhost
serverport = ${o.port}
ssldir = ${S}/ssl
logdir = ${S}/log
rundir = ${S}/run
[server]
vardir = ${S}/var
cadir = ${S}/ca
dns_alt_names = puppet,puppetmaster,localhost,${o.certname},IP:127.0.0.1
environmentpath = ${S}/code/environments
basemodulepath = ${S}/code/modules:/usr/share/puppet/modules
${enc}autosign = ${o.autosign ?? "false"}
${reports}`,
  );
  const environmentDir = join(S, "code/environments/production");
  for (const module of o.modules ?? []) copyDir(module, join(environmentDir, "modules", module.split("/").pop()!));
  return { confFile, environmentDir };
}

/** A logback configuration for a lab JVM (Puppet Server, PuppetDB): INFO and up, to one file. */
export function logbackConfig(logFile: string): string {
  return `<configuration scan="false">
  <appender name="F1" class="ch.qos.logback.core.FileAppender">
    <file>${logFile}</file>
    <encoder><pattern>%d %-5p [%c{2}] %m%n</pattern></encoder>
  </appender>
  <root level="info"><appender-ref ref="F1"/></root>
</configuration>
`;
}

/** Stops a lab server: SIGTERM, SIGKILL if it is still there 15 s later; resolves when it has exited. */
export async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

function copyDir(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    if (entry.isDirectory()) copyDir(join(from, entry.name), join(to, entry.name));
    else copyFileSync(join(from, entry.name), join(to, entry.name));
  }
}

async function waitUntilRunning(
  url: string,
  ca: string,
  child: ChildProcess,
  logFile: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  const agent = new Agent({ connect: { ca } });
  const deadline = Date.now() + timeoutMs;
  try {
    while (Date.now() < deadline) {
      signal?.throwIfAborted();
      if (child.exitCode !== null)
        throw new Error(`Puppet Server exited with ${child.exitCode} while starting; see ${logFile}`);
      try {
        const res = await request(`${url}/status/v1/simple`, { dispatcher: agent });
        if ((await res.body.text()).trim() === "running") return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`Puppet Server was not ready within ${timeoutMs / 1000} s; see ${logFile}`);
  } finally {
    await agent.close();
  }
}

/**
 * espm's client certificate: key and CSR made here, submitted through the open CSR endpoint, and
 * signed with the server's own certificate, which carries pp_cli_auth.
 */
async function issueEspmCertificate(S: string, url: string, certname: string): Promise<{ cert: string; key: string }> {
  const ssl = join(S, "ssl");
  const ca = readFileSync(join(ssl, "certs/ca.pem"), "utf8");
  const admin = new Agent({
    connect: {
      ca,
      cert: readFileSync(join(ssl, `certs/${certname}.pem`)),
      key: readFileSync(join(ssl, `private_keys/${certname}.pem`)),
    },
  });
  const { privateKeyPem } = await generateRsaKeyPairAsync(2048);
  const call = async (method: "PUT" | "GET", path: string, body?: string, type = "application/json") => {
    const res = await request(`${url}/puppet-ca/v1/${path}`, {
      method,
      dispatcher: admin,
      body,
      headers: body ? { "content-type": type } : {},
    });
    const text = await res.body.text();
    if (res.statusCode >= 300)
      throw new Error(`issuing espm's certificate: ${method} ${path} answered ${res.statusCode}: ${text}`);
    return text;
  };
  try {
    await call("PUT", "certificate_request/espm", createCsr("espm", privateKeyPem), "text/plain");
    await call("PUT", "certificate_status/espm", JSON.stringify({ desired_state: "signed" }));
    const cert = await call("GET", "certificate/espm");
    const certFile = join(S, "espm-client.crt");
    const keyFile = join(S, "espm-client.key");
    writeFileSync(certFile, cert, { mode: 0o644 });
    writeFileSync(keyFile, privateKeyPem, { mode: 0o600 });
    return { cert: certFile, key: keyFile };
  } finally {
    await admin.close();
  }
}

export async function startPuppetServer(options: PuppetServerOptions): Promise<PuppetServerLab> {
  const o = {
    port: 8140,
    certname: "puppet.lab.test",
    certnames: { patterns: LAB_CERTNAME_PATTERNS, allowAny: false, deny: [] },
    ...options,
  };
  const S = o.dir;
  const { confFile, environmentDir } = writeLayout(o);
  // In a root, each command runs inside it in a mount namespace of its own, over an overlay beside S.
  const command = (argv: string[]) =>
    o.root ? rootCommand(o.root, mkdtempSync(`${S}.run-`), argv, { binds: [S, ...(o.binds ?? [])] }) : argv;
  const setup = command(["puppetserver", "ca", "setup", "--config", confFile]);
  await run(setup[0]!, setup.slice(1));
  writeFileSync(join(S, "run/restart"), "0");
  const logFile = join(S, "log/stdout.log");
  const out = openSync(logFile, "a");
  const jvm =
    o.jvm === "production"
      ? ["-Xms1g", "-Xmx1g"]
      : ["-Xms256m", "-Xmx768m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"];
  const server = command([
    findJava(o.root),
    ...jvm,
    "--add-opens",
    "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.io=ALL-UNNAMED",
    "-Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger",
    "-Djruby.lib=/usr/share/jruby/lib",
    "-XX:+CrashOnOutOfMemoryError",
    "-jar",
    "/usr/share/puppetserver/puppetserver.jar",
    "--config",
    join(S, "conf.d"),
    "--bootstrap-config",
    join(S, "services.d"),
    "--restart-file",
    join(S, "run/restart"),
  ]);
  const child = spawn(server[0]!, server.slice(1), { stdio: ["ignore", out, out], detached: true });
  closeSync(out); // the JVM has its own copy
  writeFileSync(join(S, "run/server.pid"), String(child.pid));
  const release = stopOnInterrupt(child.pid, { group: true });
  const url = `https://127.0.0.1:${o.port}`;
  const caBundle = join(S, "ssl/certs/ca.pem");
  const stop = () => stopServer(child).then(release);
  try {
    await waitUntilRunning(url, readFileSync(caBundle, "utf8"), child, logFile, 180_000, o.signal);
    const espm =
      o.issueEspmCertificate === false
        ? { cert: join(S, "espm-client.crt"), key: join(S, "espm-client.key") }
        : await issueEspmCertificate(S, url, o.certname);
    // Puppet Server counts its restarts in the restart file: a SIGHUP reload bumps it when done.
    const restarts = () => Number(readFileSync(join(S, "run/restart"), "utf8").trim() || 0);
    const reload = async () => {
      const before = restarts();
      child.kill("SIGHUP");
      for (const deadline = Date.now() + 120_000; restarts() <= before;) {
        if (Date.now() > deadline)
          throw new Error(`Puppet Server did not finish reloading within 120 s; see ${logFile}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    return {
      dir: S,
      url,
      port: o.port,
      certname: o.certname,
      confFile,
      caBundle,
      espmCert: espm.cert,
      espmKey: espm.key,
      environmentDir,
      reportDir: join(S, "var/reports"),
      root: o.root,
      puppetVersion: puppetVersion(o.root),
      bulkSign: o.bulkSign === true,
      command,
      stop,
      reload,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The major version of the puppetserver package installed on the host or in `root`. */
export function puppetVersion(root = ""): number {
  const status = readFileSync(`${root}/var/lib/dpkg/status`, "utf8");
  const version = /^Package: puppetserver\n(?:[^\n]+\n)*?Version: (\d+)\./m.exec(status)?.[1];
  if (!version) throw new Error(`puppetserver is not installed${root ? ` in ${root}` : ""}`);
  return Number(version);
}

/** A dispatcher that speaks to a lab's Puppet Server as espm does: espm's client certificate, the lab's CA. */
export function espmDispatcher(lab: Pick<PuppetServerLab, "caBundle" | "espmCert" | "espmKey">): Agent {
  return new Agent({
    connect: { ca: readFileSync(lab.caBundle), cert: readFileSync(lab.espmCert), key: readFileSync(lab.espmKey) },
  });
}
