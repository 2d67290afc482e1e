/**
 * Starts a real espm process on a loopback port, configured by the real espm-setup, and stops it:
 * the lab's espm, for the tests and the benchmarks alike.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { removeOnInterrupt, stopOnInterrupt } from "./interrupt";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { Agent, request } from "undici";
import { freePort } from "./ports";
import { LAB_CERTNAME_PATTERNS, type PuppetServerLab } from "./puppetserver";

export { freePort };

export const ROOT = resolve(__dirname, "../../..");
export const ESPM_BIN = join(ROOT, "agent/dist/agent/cli/espm.js");
export const SETUP_BIN = join(ROOT, "agent/dist/agent/cli/espm-setup.js");

export const run = promisify(execFile);

/** A fresh directory readable by other users (espm enc is tested as an unprivileged user). */
export function scratchDir(prefix: string): string {
  const dir = removeOnInterrupt(mkdtempSync(join(tmpdir(), `${prefix}-`)));
  chmodSync(dir, 0o755);
  return dir;
}

export interface SetupResult {
  dir: string;
  configDir: string;
  ini: string;
  port: number;
  psk: string;
  certificate: string;
  stdout: string;
}

/** espm-setup's certname arguments for the lab's names, unless a test gives its own. */
function certnameArgs(extraArgs: string[]): string[] {
  if (extraArgs.some((a) => a === "--certname-pattern" || a === "--allow-any-certname")) return [];
  return LAB_CERTNAME_PATTERNS.flatMap((p) => ["--certname-pattern", p]);
}

/** espm-setup's arguments that point espm at a lab's Puppet Server (its CA, classes and, unless told not to, reports). */
export function puppetServerArgs(lab: PuppetServerLab, o: { reports?: boolean } = {}): string[] {
  const args = ["--puppetserver-url", lab.url, "--puppetserver-ca", lab.caBundle];
  args.push("--puppetserver-cert", lab.espmCert, "--puppetserver-key", lab.espmKey);
  if (lab.bulkSign) args.push("--puppetserver-bulk-sign");
  return o.reports === false ? args : [...args, "--puppetserver-reportdir", lab.reportDir];
}

export async function setupEspm(
  extraArgs: string[] = [],
  groupsYaml?: string,
  dir = scratchDir("espm"),
): Promise<SetupResult> {
  const configDir = join(dir, "etc");
  mkdirSync(join(configDir, "certs"), { recursive: true, mode: 0o755 });
  chmodSync(configDir, 0o755);
  const port = await freePort();
  const argv = [
    SETUP_BIN,
    "-d",
    configDir,
    "--state-dir",
    configDir,
    "-p",
    String(port),
    "--host",
    "127.0.0.1",
    "--listen",
    "127.0.0.1",
    ...certnameArgs(extraArgs),
    ...extraArgs,
  ];
  const { stdout } = await run(process.execPath, argv);
  if (groupsYaml !== undefined) writeFileSync(join(configDir, "groups.yaml"), groupsYaml, { mode: 0o644 });
  return setupIn(dir, configDir, port, stdout);
}

/** What an espm-setup run left in `configDir` (espm.ini, the PSK, the TLS certificate), for EspmProcess. */
export function setupIn(dir: string, configDir: string, port: number, stdout: string): SetupResult {
  return {
    dir,
    configDir,
    ini: join(configDir, "espm.ini"),
    port,
    psk: readFileSync(join(configDir, "psk"), "utf8").trim(),
    certificate: readFileSync(join(configDir, "certs/espm.crt"), "utf8"),
    stdout,
  };
}

export class EspmProcess {
  readonly url: string;
  readonly logLines: string[] = [];
  private constructor(
    readonly setup: SetupResult,
    readonly child: ChildProcess,
  ) {
    this.url = `https://127.0.0.1:${setup.port}`;
  }

  /**
   * Starts espm on `setup`; with `user`, as that user with its own groups only (as systemd's User=
   * does), from `bin` (an installed copy that user can read; the checkout may sit where it cannot).
   */
  static async start(setup: SetupResult, o: { user?: string; bin?: string } = {}): Promise<EspmProcess> {
    const argv = [process.execPath, o.bin ?? ESPM_BIN, "-c", setup.ini];
    const as = o.user ? ["setpriv", `--reuid=${o.user}`, `--regid=${o.user}`, "--init-groups", ...argv] : argv;
    const child = spawn(as[0]!, as.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    const release = stopOnInterrupt(child.pid, { group: false });
    child.once("exit", release);
    const espm = new EspmProcess(setup, child);
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((ready, failed) => {
      let buffer = "";
      const timer = setTimeout(() => failed(new Error(`espm did not start within 15 s: ${stderr}`)), 15_000);
      child.stdout.on("data", (d: Buffer) => {
        buffer += d.toString();
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          espm.logLines.push(line);
          if (line.includes('"espm ready"')) {
            clearTimeout(timer);
            ready();
          }
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        failed(new Error(`espm exited with ${code} before it was ready: ${stderr}`));
      });
    });
    return espm;
  }

  /** Sends a signal and waits for the exit code. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    const exited = new Promise<number | null>((done) => this.child.once("exit", (code) => done(code)));
    this.child.kill(signal);
    return exited;
  }

  /** A raw HTTPS request trusting espm's certificate, for what the typed client would never send. */
  async raw(
    method: string,
    path: string,
    options: { body?: string; headers?: Record<string, string>; psk?: string | null } = {},
  ) {
    const headers: Record<string, string> = { ...options.headers };
    const psk = options.psk === undefined ? this.setup.psk : options.psk;
    if (psk !== null) headers.authorization = `Bearer ${psk}`;
    const response = await request(`${this.url}${path}`, {
      method: method as "GET",
      headers,
      body: options.body,
      dispatcher: rawAgent(this.setup.certificate),
    });
    const text = await response.body.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return {
      status: response.statusCode,
      headers: response.headers,
      text,
      json: json as { error?: { code: string; message: string; details?: unknown } } & Record<string, unknown>,
    };
  }
}

const agents = new Map<string, Agent>();
function rawAgent(certificate: string): Agent {
  let agent = agents.get(certificate);
  if (!agent) {
    agent = new Agent({ connect: { ca: certificate } });
    agents.set(certificate, agent);
  }
  return agent;
}
