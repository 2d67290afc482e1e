/**
 * One Puppet Server lab and one espm process, shared by every suite that needs them in a mocha run
 * (the server takes about 40 s to start). Started on first use; stopped by the root hook in hooks.ts.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { randomBytes, randomUUID } from "node:crypto";
import { Agent, request } from "undici";
import { EspmClient } from "espm-sdk/client";
import { createCsr, generateKeyPairAsync, normalizeSerial, type KeyType } from "espm-sdk/x509";
import { caFingerprint } from "pulumi-espm/ca-trust";
import { renderUserData, type UserDataInput } from "pulumi-espm/userdata";
import type { ConfigValue } from "@pulumi/pulumi/automation";
import type { StackConfig } from "pulumi-espm/connection";
import { espmDispatcher, startPuppetServer, type PuppetServerLab } from "../../scripts/lab/puppetserver";
import {
  ESPM_BIN,
  EspmProcess,
  freePort,
  puppetServerArgs,
  ROOT,
  scratchDir,
  setupEspm,
  type SetupResult,
} from "./espm";

const execFileP = promisify(execFile);

export interface BootResult {
  code: number;
  stdout: string;
  stderr: string;
  log: string;
}

export class World {
  private constructor(
    readonly dir: string,
    readonly lab: PuppetServerLab,
    public espm: EspmProcess,
  ) {}

  /** A world of its own; `jvm: "production"` starts Puppet Server with Debian's JVM settings (benches). */
  static async start(o: { jvm?: "fast" | "production" } = {}): Promise<World> {
    const dir = scratchDir("espm-world");
    const espmDir = join(dir, "espm");
    mkdirSync(espmDir);
    // As production sets it up: the ENC and the autosign policy are espm's, the latter through the
    // wrapper `espm puppet-config` writes beside espm.ini once espm is set up.
    const lab = await startPuppetServer({
      dir: join(dir, "puppetserver"),
      port: await freePort(),
      enc: `${process.execPath} ${ESPM_BIN} enc -c ${join(espmDir, "etc/espm.ini")}`,
      autosign: join(espmDir, "etc/espm-autosign"),
      modules: ["espm_file", "espm_fact", "espm_typed"].map((m) => join(ROOT, "test/fixtures/modules", m)),
      jvm: o.jvm,
    });
    try {
      const setup = await setupEspm(
        [...puppetServerArgs(lab)],
        "groups:\n  base:\n    parameters:\n      managed_by: espm\n",
        espmDir,
      );
      // The sweep looks for undecided requests every 2 s here (15 s by default), so tests wait less.
      writeFileSync(
        setup.ini,
        readFileSync(setup.ini, "utf8").replace("[autosign]\n", "[autosign]\nsweep_seconds = 2\n"),
      );
      await execFileP(process.execPath, [ESPM_BIN, "puppet-config", "-c", setup.ini]);
      return new World(dir, lab, await EspmProcess.start(setup));
    } catch (err) {
      await lab.stop();
      throw err;
    }
  }

  get setup(): SetupResult {
    return this.espm.setup;
  }

  /** The stack config a Pulumi program would have: `espm:url`, `espm:psk`, `espm:certificate`. */
  stackConfig(overrides: Record<string, string | undefined> = {}): StackConfig {
    const values: Record<string, string | undefined> = {
      "espm:url": this.espm.url,
      "espm:psk": this.setup.psk,
      "espm:certificate": this.setup.certificate,
      ...overrides,
    };
    return { get: (key) => values[key] };
  }

  /** The same, as stack config for the Automation API, the PSK a secret. */
  engineConfig(): Record<string, ConfigValue> {
    return {
      "espm:url": { value: this.espm.url },
      "espm:psk": { value: this.setup.psk, secret: true },
      "espm:certificate": { value: this.setup.certificate },
    };
  }

  client(): EspmClient {
    return new EspmClient({ url: this.espm.url, psk: this.setup.psk, certificate: this.setup.certificate });
  }

  /**
   * The requests espm received while `action` ran whose log line matches `which`, as "METHOD URL".
   * espm's log reaches this process through a pipe, after the fact: counting all lines before and
   * after once counted the late line of the previous test's own request (the flake of `1 !== 0`).
   * So the window is fenced by two marker requests, each awaited until its own line has arrived.
   */
  async espmCallsDuring(action: () => Promise<unknown>, which: RegExp): Promise<string[]> {
    const fence = async () => {
      const marker = `fence-${randomUUID()}`;
      const res = await this.espm.raw("GET", `/v1/health?${marker}`);
      if (res.status !== 200) throw new Error(`espm's health answered ${res.status}`);
      for (let waited = 0; !this.espm.logLines.some((l) => l.includes(marker)); waited += 10) {
        if (waited > 10_000) throw new Error("espm did not log the marker request within 10 s");
        await new Promise((r) => setTimeout(r, 10));
      }
      return this.espm.logLines.findIndex((l) => l.includes(marker));
    };
    const start = await fence();
    await action();
    const end = await fence();
    return this.espm.logLines
      .slice(start + 1, end)
      .filter((l) => l.includes('"incoming request"') && which.test(l))
      .map((l) => (JSON.parse(l) as { req: { method: string; url: string } }).req)
      .map((r) => `${r.method} ${r.url}`);
  }

  /** Stops espm and starts it again on the same port, with the same setup. */
  async restartEspm(): Promise<void> {
    await this.espm.stop();
    this.espm = await EspmProcess.start(this.setup);
  }

  /** Writes a new PSK (or `psk`) and restarts espm on the same port, as an operator rotating it would. */
  async rotatePsk(psk = randomBytes(36).toString("base64url")): Promise<string> {
    writeFileSync(join(this.setup.configDir, "psk"), `${psk}\n`, { mode: 0o600 });
    await this.espm.stop();
    this.espm = await EspmProcess.start({ ...this.setup, psk });
    return psk;
  }

  /** Runs userdata as cloud-init would, with Puppet's directories under this world's folder. */
  async boot(short: string, script: string): Promise<BootResult> {
    const agent = join(this.dir, `agent-${short}`);
    mkdirSync(agent, { recursive: true });
    const file = join(agent, "userdata.sh");
    writeFileSync(file, script, { mode: 0o700 });
    return bootAgent(agent, file);
  }

  async stop(): Promise<void> {
    await this.espm.stop();
    await this.lab.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface SignedUserdataOptions {
  masterPort: number;
  /** How the node reaches the master (default localhost). */
  master?: string;
  keyType?: KeyType;
  /** pp_* extensions in the CSR. */
  extensions?: Record<string, string>;
  /** Only the CA bundle's fingerprint in the userdata (as with `includeCaBundle: false`): the agent downloads and checks the bundle. */
  caFingerprintOnly?: boolean;
  /** Any other userdata input (hooks, facts, a template of the user's own). */
  userdata?: Partial<UserDataInput>;
  /** Also write the script here, as cloud-init would find it (0700). */
  file?: string;
}

/**
 * For a node already registered: has espm sign a key made here (as PuppetCertificate makes it, off
 * the event loop; RSA-2048 unless told) and renders the node's first-boot userdata with the
 * certificate, the key and the CA.
 */
export async function signedUserdata(client: EspmClient, name: string, o: SignedUserdataOptions) {
  const { privateKeyPem } = await generateKeyPairAsync(o.keyType ?? "rsa-2048");
  const issued = await client.signCertificate(name, createCsr(name, privateKeyPem, o.extensions));
  const userdata = renderUserData({
    nodeName: name,
    master: o.master ?? "localhost",
    masterPort: o.masterPort,
    certificatePem: issued.certificate,
    privateKeyPem,
    ...(o.caFingerprintOnly
      ? { caFingerprint: caFingerprint(issued.caCertificate) }
      : { caCertificatePem: issued.caCertificate }),
    ...o.userdata,
  });
  if (o.file) writeFileSync(o.file, userdata.script, { mode: 0o700 });
  return { issued, userdata };
}

/**
 * Runs userdata as cloud-init would, with Puppet's directories (conf, var, ssl, the bootstrap log)
 * under `agentDir`; `wrap` changes the command line (to run it in a mount namespace, say).
 */
export async function bootAgent(
  agentDir: string,
  userdataFile: string,
  wrap: (argv: string[]) => string[] = (a) => a,
): Promise<BootResult> {
  const log = join(agentDir, "bootstrap.log");
  const argv = wrap([
    "sh",
    userdataFile,
    "--confdir",
    join(agentDir, "conf"),
    "--vardir",
    join(agentDir, "var"),
    "--ssldir",
    join(agentDir, "ssl"),
    "--logdest",
    log,
  ]);
  const read = () => (existsSync(log) ? readFileSync(log, "utf8") : "");
  try {
    const { stdout, stderr } = await execFileP(argv[0]!, argv.slice(1), { timeout: 120_000 });
    return { code: 0, stdout, stderr, log: read() };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr, log: read() };
  }
}

/** What a lab's CA holds for a name, as espm's client certificate reads it: absent, requested, signed or revoked. */
export async function caState(lab: PuppetServerLab, name: string): Promise<string> {
  const dispatcher = espmDispatcher(lab);
  try {
    // Puppet Server 7 answers 500 when a request's file goes (a clean) while it reads it: ask again.
    for (let attempt = 1; ; attempt++) {
      const res = await request(`${lab.url}/puppet-ca/v1/certificate_status/${name}`, { dispatcher });
      const text = await res.body.text();
      if (res.statusCode === 404) return "absent";
      if (res.statusCode === 200) return (JSON.parse(text) as { state: string }).state;
      if (res.statusCode < 500 || attempt === 5)
        throw new Error(`the CA's status of ${name}: HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await dispatcher.close();
  }
}

/** The serials in a lab CA's revocation list, as espm keeps serials (uppercase hex, no leading zeros). */
export async function crlSerials(lab: PuppetServerLab): Promise<string[]> {
  const dispatcher = new Agent({ connect: { ca: readFileSync(lab.caBundle) } });
  try {
    const res = await request(`${lab.url}/puppet-ca/v1/certificate_revocation_list/ca`, { dispatcher });
    return serialsInCrl(await res.body.text());
  } finally {
    await dispatcher.close();
  }
}

/** The serials a PEM revocation list (the first of a chain) names, as espm keeps serials. */
export function serialsInCrl(pem: string): string[] {
  const text = execFileSync("openssl", ["crl", "-noout", "-text"], { input: pem }).toString();
  return [...text.matchAll(/Serial Number: ([0-9A-F]+)/gi)].map((m) => normalizeSerial(m[1]!));
}

let shared: Promise<World> | undefined;

/** The run's shared world, started on first call. */
export function sharedWorld(): Promise<World> {
  shared ??= World.start();
  return shared;
}

export async function stopSharedWorld(): Promise<void> {
  if (!shared) return;
  const world = await shared.catch(() => undefined);
  shared = undefined;
  await world?.stop();
}
