/**
 * The instance key mode against a real Puppet Server whose `autosign` is the wrapper `espm
 * puppet-config` wrote, and real agents: the node makes its own key, its token has the CSR signed,
 * and every way of misusing a token is refused with the reason in Puppet Server's log, and left unsigned.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { Agent, request } from "undici";
import { signingMarksDir } from "espm-agent/autosign/signing-marks";
import { espmDispatcher } from "../scripts/lab/puppetserver";
import type { EspmClient } from "espm-sdk/client";
import { createCsr, generateRsaKeyPair } from "espm-sdk/x509";
import { renderBootstrap } from "pulumi-espm/bootstrap";
import { renderUserData } from "pulumi-espm/userdata";
import { enrollmentProvider, registrationProvider } from "pulumi-espm";
import type { EnrollmentState } from "pulumi-espm/enrollment";
import type { RegistrationState } from "pulumi-espm/registration";
import { csrWithRepeatedExtension } from "./helpers/csr";
import { configuredProvider } from "./helpers/providers";
import { ESPM_BIN, installedCopy, run, runAs } from "./helpers/espm";
import { caState, crlSerials, sharedWorld, type World } from "./helpers/world";

const DOMAIN = "enroll.test";

describe("the instance key mode: enrollment through Puppet's policy-based autosigning", function () {
  this.timeout(240_000);
  let world: World;
  let client: EspmClient;

  before(async () => {
    world = await sharedWorld();
    client = world.client();
  });

  after(async () => {
    await client?.close();
  });

  const puppetServerLog = () => readFileSync(join(world.lab.dir, "log/puppetserver.log"), "utf8");

  /** A registered node with an enrollment; returns its name and the token. */
  async function enrolled(short: string, extensions: Record<string, string> = {}, ttlMinutes = 60) {
    const name = `${short}.${DOMAIN}`;
    const managed = join(world.dir, `agent-${short}/managed.txt`);
    await client.registerNode({ name, groups: ["base"], classes: { espm_file: { path: managed, content: name } } });
    const issued = await client.enroll(name, { ttlMinutes, extensions });
    return { name, token: issued.token, issued };
  }

  /** Submits a CSR through the CA's open endpoint, as an agent does: Puppet Server then runs the policy. */
  async function submit(name: string, csr: string): Promise<number> {
    const dispatcher = new Agent({ connect: { ca: readFileSync(world.lab.caBundle) } });
    try {
      const res = await request(`${world.lab.url}/puppet-ca/v1/certificate_request/${name}`, {
        method: "PUT",
        body: csr,
        headers: { "content-type": "text/plain" },
        dispatcher,
      });
      await res.body.text();
      return res.statusCode;
    } finally {
      await dispatcher.close();
    }
  }

  async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 40_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const value = await check();
      if (value !== undefined) return value;
      await sleep(500);
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  /** Whether the CA's open endpoint (which anyone may read) has the name's certificate or pending request. */
  async function atCa(endpoint: "certificate" | "certificate_request", name: string): Promise<boolean> {
    const dispatcher = new Agent({ connect: { ca: readFileSync(world.lab.caBundle) } });
    try {
      const res = await request(`${world.lab.url}/puppet-ca/v1/${endpoint}/${name}`, { dispatcher });
      await res.body.text();
      return res.statusCode === 200;
    } finally {
      await dispatcher.close();
    }
  }
  const signedAtCa = (name: string) => atCa("certificate", name);
  const pendingAtCa = (name: string) => atCa("certificate_request", name);

  /** Revokes and removes the name's certificate at the CA, as `puppetserver ca clean` does. */
  async function cleanAtCa(name: string): Promise<void> {
    const dispatcher = espmDispatcher(world.lab);
    try {
      const url = `${world.lab.url}/puppet-ca/v1/certificate_status/${name}`;
      const revoked = await request(url, {
        method: "PUT",
        body: JSON.stringify({ desired_state: "revoked" }),
        headers: { "content-type": "application/json" },
        dispatcher,
      });
      await revoked.body.text();
      const deleted = await request(url, { method: "DELETE", dispatcher });
      await deleted.body.text();
    } finally {
      await dispatcher.close();
    }
  }

  const csrFor = (name: string, token?: string, extensions: Record<string, string> = {}) =>
    createCsr(name, generateRsaKeyPair(2048).privateKeyPem, extensions, token);

  it("boots an agent that makes its own key: signed through its token, exit 2 then 0, and no private key anywhere but on the node", async () => {
    const { name, token, issued } = await enrolled("inst-01", { pp_role: "web" });
    const userdata = renderUserData({
      nodeName: name,
      master: "localhost",
      masterPort: world.lab.port,
      caCertificatePem: issued.caCertificate,
      enrollment: { token, extensions: { pp_role: "web" } },
      maxWaitForCertSeconds: 60,
    });
    assert.doesNotMatch(userdata.script, /PRIVATE KEY/);
    assert.ok(userdata.script.includes(token));

    const first = await world.boot("inst-01", userdata.script);
    assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}\n${first.log}`);
    assert.match(first.stdout, /agent exit 2/);
    assert.equal(existsSync(join(world.dir, "agent-inst-01/conf/csr_attributes.yaml")), false, "token file removed");
    const second = await world.boot("inst-01", userdata.script);
    assert.equal(second.code, 0, second.log);
    assert.match(second.stdout, /agent exit 0/);

    const key = readFileSync(join(world.dir, `agent-inst-01/ssl/private_keys/${name}.pem`), "utf8");
    assert.match(key, /PRIVATE KEY/, "the node made its own key");
    const enrollment = await waitFor("the serial", async () => {
      const e = await client.enrollment(name);
      return e?.state === "signed" ? e : undefined;
    });
    const cert = readFileSync(join(world.dir, `agent-inst-01/ssl/certs/${name}.pem`), "utf8");
    const { describeCertificate } = await import("espm-sdk/x509");
    assert.equal(enrollment.serial, describeCertificate(cert).serial);
    // The sign is an INFO in espm's log and no WARN in Puppet Server's (which logs a policy's stderr as one).
    assert.doesNotMatch(puppetServerLog(), new RegExp(`WARN.*espm signs ${name.replaceAll(".", "\\.")}`));
    const decided = world.espm.logLines.find((l) => l.includes("autosign: decided") && l.includes(name));
    assert.match(decided ?? "", /"level":30/, "the decision is logged at INFO");
    // The GET answered from the CA and wrote nothing; the sweep (every 2 s here) records the sign.
    const signedAudit = await waitFor("the sweep's record of the sign", async () => {
      const db = new Database(join(world.setup.configDir, "espm.db"), { readonly: true });
      try {
        const rows = db
          .prepare("SELECT detail FROM audit WHERE target = ? AND action = 'certificate.sign'")
          .all(name) as Array<{ detail: string }>;
        return rows.length ? rows : undefined;
      } finally {
        db.close();
      }
    });
    assert.match(
      signedAudit.map((a) => a.detail).join("\n"),
      /through its autosign policy, which the enrollment's token allowed/,
    );

    const stateDir = world.setup.configDir;
    for (const file of readdirSync(stateDir).filter((f) => f.startsWith("espm.db"))) {
      const bytes = readFileSync(join(stateDir, file));
      assert.equal(bytes.includes("PRIVATE KEY"), false, `${file} holds no private key`);
      assert.equal(bytes.includes(token), false, `${file} holds no token, only its hash`);
    }
    const log = world.espm.logLines.join("\n");
    assert.equal(log.includes("PRIVATE KEY"), false);
    assert.equal(log.includes(token), false, "espm never logs a token");
  });

  it("boots from the CA bundle's fingerprint alone (includeCaBundle: false): the agent checks the bundle it downloads", async () => {
    const registrations = await configuredProvider(registrationProvider, world.stackConfig());
    const enrollments = await configuredProvider(enrollmentProvider, world.stackConfig());
    const registration = await registrations.create(
      (await registrations.check!({}, { name: `fp-01.${DOMAIN}`, groups: ["base"] })).inputs,
    );
    const reg = registration.outs as RegistrationState;
    const checked = await enrollments.check!({}, { certname: reg.nodeName, includeCaBundle: false });
    const enrollment = (await enrollments.create(checked.inputs)).outs as EnrollmentState;
    assert.equal(enrollment.caCertificatePem, "", "no bundle in state");
    const served = readFileSync(world.lab.caBundle, "utf8");
    assert.equal(enrollment.caFingerprint, createHash("sha256").update(served).digest("hex"));

    const { certname, token, extensions, caCertificatePem, caFingerprint } = enrollment;
    const userdata = renderBootstrap({
      nodeName: reg.nodeName,
      master: "localhost",
      masterPort: world.lab.port,
      enrollment: { certname, token, extensions, caCertificatePem, caFingerprint },
      maxWaitForCertSeconds: 60,
    });
    assert.doesNotMatch(userdata.script, /BEGIN CERTIFICATE/);
    const boot = await world.boot("fp-01", userdata.script);
    assert.equal(boot.code, 0, `${boot.stdout}\n${boot.stderr}\n${boot.log}`);
    const blocks = (pem: string) => pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
    const trusted = readFileSync(join(world.dir, "agent-fp-01/ssl/certs/ca.pem"), "utf8");
    assert.deepEqual(blocks(trusted), blocks(served), "the agent trusts the bundle it downloaded and checked");
    assert.ok(await signedAtCa(reg.nodeName));
  });

  it("refuses a CA bundle that does not match the fingerprint (a master in between): no CA trusted, no CSR, the token unspent", async () => {
    const { name, token } = await enrolled("fp-02");
    const userdata = renderUserData({
      nodeName: name,
      master: "localhost",
      masterPort: world.lab.port,
      caFingerprint: createHash("sha256").update("another site's CA bundle").digest("hex"),
      enrollment: { token },
      maxWaitForCertSeconds: 10,
    });
    const boot = await world.boot("fp-02", userdata.script);
    assert.notEqual(boot.code, 0, boot.stdout);
    assert.match(
      `${boot.log}\n${boot.stderr}`,
      /CA bundle with digest \(SHA256\) [0-9A-F:]+ did not match expected digest/,
    );
    assert.equal(existsSync(join(world.dir, "agent-fp-02/ssl/certs/ca.pem")), false, "no CA trusted");
    assert.equal(await pendingAtCa(name), false, "no CSR submitted");
    assert.equal(await signedAtCa(name), false);
    assert.equal((await client.enrollment(name))?.state, "issued", "the token is unspent");
  });

  it("gives someone who reads the userdata after first boot nothing: their agent gets no certificate, and the node runs on", async () => {
    const { name, token, issued } = await enrolled("inst-03");
    const userdata = renderUserData({
      nodeName: name,
      master: "localhost",
      masterPort: world.lab.port,
      caCertificatePem: issued.caCertificate,
      enrollment: { token },
      maxWaitForCertSeconds: 10,
    });
    const node = await world.boot("inst-03", userdata.script);
    assert.equal(node.code, 0, node.log);
    const before = await client.enrollment(name);

    // The attacker runs the same userdata on a machine of their own.
    const attacker = await world.boot("inst-03-attacker", userdata.script);
    assert.notEqual(attacker.code, 0, "the attacker's agent gets no certificate");
    assert.equal(existsSync(join(world.dir, `agent-inst-03-attacker/ssl/certs/${name}.pem`)), false);
    assert.equal((await client.enrollment(name))?.serial, before?.serial, "the node's certificate is untouched");
    const again = await world.boot("inst-03", userdata.script);
    assert.equal(again.code, 0, "the node itself runs on");
  });

  it("refuses a token presented a second time (another CSR for the name after a clean), and leaves it unsigned", async () => {
    const { name, token } = await enrolled("inst-02");
    assert.equal(await submit(name, csrFor(name, token)), 200);
    await waitFor("the first sign", async () => ((await caState(world.lab, name)) === "signed" ? true : undefined));
    await cleanAtCa(name); // as `puppetserver ca clean` would: the enrollment stays, its token used
    assert.equal(await caState(world.lab, name), "absent");

    await submit(name, csrFor(name, token));
    assert.notEqual(await caState(world.lab, name), "signed");
    assert.match(puppetServerLog(), /enrollment token for inst-02\.enroll\.test was already presented/);
    // The sweep cleans the refused request, so the name is not stranded.
    await waitFor("the refused request cleaned", async () =>
      (await caState(world.lab, name)) === "absent" ? true : undefined,
    );
  });

  /** Each misuse: the CSR to submit, and what Puppet Server's log must then say. */
  const misuses: Array<{
    what: string;
    csr: (enrolledName: string, token: string, other: { name: string; token: string }) => string;
    submitAs?: (enrolledName: string) => string;
    expired?: true;
    reason: RegExp;
  }> = [
    {
      what: "an expired token",
      csr: (name, token) => csrFor(name, token),
      expired: true,
      reason: /the enrollment token expired at/,
    },
    {
      what: "a token for another certname",
      csr: (name, _token, other) => csrFor(name, other.token),
      reason: /the enrollment token is for mis-b-\w+\.enroll\.test, not for/,
    },
    { what: "a CSR without a token", csr: (name) => csrFor(name), reason: /carries no enrollment token/ },
    {
      what: "a disallowed extension",
      csr: (name, token) => csrFor(name, token, { pp_role: "db" }),
      reason: /asks for pp_role = "db"; the enrollment allows "web"/,
    },
    {
      what: "an extension the enrollment does not list",
      csr: (name, token) => csrFor(name, token, { pp_department: "ops" }),
      reason: /asks for extension pp_department, which the enrollment does not allow/,
    },
    {
      what: "a CSR for puppet",
      csr: (_name, token) => csrFor("puppet", token),
      submitAs: () => "puppet",
      reason: /the enrollment token is for mis-a-\w+\.enroll\.test, not for puppet|espm never enrolled puppet/,
    },
  ];
  misuses.forEach((m, i) => {
    it(`refuses ${m.what} with the reason in Puppet Server's log, and leaves it unsigned`, async () => {
      const a = await enrolled(`mis-a-${i}`, { pp_role: "web" });
      const b = await enrolled(`mis-b-${i}`);
      if (m.expired) {
        const db = new Database(join(world.setup.configDir, "espm.db"));
        db.prepare("UPDATE enrollments SET expires_at = '2000-01-01T00:00:00.000Z' WHERE certname = ?").run(a.name);
        db.close();
      }
      const target = m.submitAs?.(a.name) ?? a.name;
      await submit(target, m.csr(a.name, a.token, b));
      await waitFor("the policy's answer in the log", async () =>
        m.reason.test(puppetServerLog()) ? true : undefined,
      );
      assert.equal(await signedAtCa(target), false);
      assert.equal(await signedAtCa(a.name), false);
    });
  });

  it("lets Puppet Server's user run the wrapper and reach espm, and nobody else", async () => {
    // As installed (where every user can read espm), not from the checkout, which may sit in a private directory.
    const installed = installedCopy(join(world.dir, "installed"));
    const wrapper = join(world.dir, "installed-autosign");
    await run(process.execPath, [installed, "puppet-config", "-c", world.setup.ini, "--autosign-wrapper", wrapper]);
    const asUser = (user: string, name: string, csr: string) => runAs(user, [wrapper, name], csr);
    const { name, token } = await enrolled("perm-01");
    const stranger = await asUser("nobody", name, csrFor(name, token));
    assert.notEqual(stranger.code, 0);
    assert.match(stranger.stderr, /Permission denied|EACCES|cannot read the autosign secret/);
    assert.equal((await client.enrollment(name))?.state, "issued", "a stranger's try burns nothing");
    const puppet = await asUser("puppet", name, csrFor(name, token));
    assert.equal(puppet.code, 0, puppet.stderr);
    assert.match(puppet.stdout, /espm signs perm-01\.enroll\.test/);
  });

  it("lets exactly one of two espm autosign processes racing for one token sign", async () => {
    const { name, token } = await enrolled("race-01");
    const csr = csrFor(name, token);
    const wrapper = join(world.setup.configDir, "espm-autosign");
    const run = () =>
      new Promise<number>((resolve) => {
        const child = spawn(wrapper, [name], { stdio: ["pipe", "ignore", "ignore"] });
        child.on("exit", (code) => resolve(code ?? -1));
        child.stdin.end(csr);
      });
    const codes = await Promise.all([run(), run(), run(), run()]);
    assert.equal(codes.filter((c) => c === 0).length, 1, `exit codes ${codes}`);
  });

  it("signs a CSR left pending while espm was down, once espm is back", async () => {
    const { name, token } = await enrolled("down-01");
    await world.espm.stop();
    try {
      await submit(name, csrFor(name, token));
      assert.equal(await caState(world.lab, name), "requested");
      assert.match(puppetServerLog(), /cannot reach espm/);
    } finally {
      await world.restartEspm();
      client = world.client();
    }
    await waitFor("the sweep's sign", async () => ((await caState(world.lab, name)) === "signed" ? true : undefined));
    const enrollment = await waitFor("the serial", async () => {
      const e = await client.enrollment(name);
      return e?.state === "signed" ? e : undefined;
    });
    assert.ok(enrollment.serial);
  });

  /** Runs `espm autosign` with a copy of espm.ini changed by `edit`, the CSR on stdin; returns its exit code, stderr and time. */
  async function autosignWith(edit: (ini: string) => string, certname: string, csr: string) {
    const ini = join(world.dir, `espm-${certname}.ini`);
    writeFileSync(ini, edit(readFileSync(world.setup.ini, "utf8")));
    const started = Date.now();
    return new Promise<{ code: number; stdout: string; stderr: string; ms: number }>((resolve) => {
      const child = spawn(process.execPath, [ESPM_BIN, "autosign", "-c", ini, "--", certname], {
        stdio: ["pipe", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.on("exit", (code) => resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - started }));
      child.stdin.end(csr);
    });
  }

  it("hands a CSR for a name espm never enrolled to the fallback policy, and refuses it without one", async () => {
    const name = `elsewhere-01.${DOMAIN}`;
    const fallback = join(world.dir, "fallback-policy.sh");
    writeFileSync(
      fallback,
      '#!/bin/sh\nread -r first\ncase "$1 $first" in "elsewhere-01.enroll.test -----BEGIN CERTIFICATE REQUEST-----"*) exit 0 ;; esac\nexit 3\n',
      { mode: 0o755 },
    );
    const withFallback = await autosignWith(
      (ini) => ini.replace("[autosign]\n", `[autosign]\nfallback = ${fallback}\n`),
      name,
      csrFor(name),
    );
    assert.equal(withFallback.code, 0, withFallback.stderr);
    // A sign goes to stdout (Puppet Server's debug log), never stderr (which it logs as a WARN).
    assert.equal(withFallback.stderr, "");
    assert.match(withFallback.stdout, /never enrolled elsewhere-01\.enroll\.test; the fallback policy .* signs it/);
    const without = await autosignWith((ini) => ini, name, csrFor(name));
    assert.equal(without.code, 1);
    assert.match(without.stderr, /never enrolled elsewhere-01\.enroll\.test and no fallback policy is configured/);
  });

  it("gives up within 5 s when espm does not answer, leaving the CSR to the sweep", async () => {
    const socket = join(world.dir, "silent.sock");
    const silent = createServer(() => {}); // accepts, never answers
    await new Promise<void>((resolve) => silent.listen(socket, resolve));
    try {
      const { name, token } = await enrolled("silent-01");
      const result = await autosignWith(
        (ini) => ini.replace(/^socket\s*=.*$/m, `socket = ${socket}`),
        name,
        csrFor(name, token),
      );
      assert.equal(result.code, 1);
      // Its own wait is under 5 s (the message says how long); the process's wall time adds Node's
      // start, which a loaded machine stretches, so that is only held to "gave up, did not hang".
      const waited = /cannot reach espm on .*silent\.sock \(no answer within (\d+) ms\)/.exec(result.stderr);
      assert.ok(waited && Number(waited[1]) < 5000, result.stderr);
      assert.ok(result.ms < 15_000, `gave up after ${result.ms} ms`);
      assert.equal((await client.enrollment(name))?.state, "issued", "nothing decided, nothing burned");
    } finally {
      silent.close();
    }
  });

  it("exits non-zero for every form of `espm autosign` but `-c INI -- CERTNAME`: --help, --version, no --, two names", async () => {
    const { name, token } = await enrolled("argv-01");
    const csr = csrFor(name, token);
    const forms = [
      ["autosign", "--help"],
      ["autosign", "-h"],
      ["autosign", "--version"],
      ["autosign", "-c", world.setup.ini, name],
      ["autosign", "-c", world.setup.ini, "--", "--help"],
      ["autosign", "-c", world.setup.ini, "--", name, name],
      ["autosign", "-c", world.setup.ini, "--"],
      ["--help", "autosign", "--", name],
    ];
    for (const argv of forms) {
      const code = await new Promise<number>((resolve) => {
        const child = spawn(process.execPath, [ESPM_BIN, ...argv], { stdio: ["pipe", "ignore", "ignore"] });
        child.on("exit", (c) => resolve(c ?? -1));
        child.stdin.end(csr);
      });
      assert.equal(code, 1, `espm ${argv.join(" ")} exited ${code}`);
    }
    // The wrapper hands Puppet Server's one argument over after --, and refuses any other count.
    const wrapper = readFileSync(join(world.setup.configDir, "espm-autosign"), "utf8");
    assert.match(wrapper, /autosign -c '[^']+' -- "\$1"\n/);
    const twoArgs = await new Promise<number>((resolve) => {
      const child = spawn(join(world.setup.configDir, "espm-autosign"), [name, "--help"], { stdio: "ignore" });
      child.on("exit", (c) => resolve(c ?? -1));
    });
    assert.equal(twoArgs, 1);
    assert.equal(await signedAtCa(name), false, "nothing was signed");
    assert.equal((await client.enrollment(name))?.state, "issued", "and the token was not burned");
  });

  it("refuses a CSR espm marks as its own in the wrapper itself, without asking espm, and signs once the mark is gone", async () => {
    const { name, token } = await enrolled("marked-01");
    const csr = csrFor(name, token);
    const wrapper = join(world.setup.configDir, "espm-autosign");
    const marks = signingMarksDir(/^socket\s*=\s*(.+)$/m.exec(readFileSync(world.setup.ini, "utf8"))![1]!.trim());
    assert.match(readFileSync(wrapper, "utf8"), new RegExp(`\\[ -e '${marks}/'"\\$1" \\]`));
    const runWrapper = () =>
      new Promise<{ code: number; stdout: string }>((resolve) => {
        const child = spawn(wrapper, [name], { stdio: ["pipe", "pipe", "ignore"] });
        let stdout = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.on("exit", (code) => resolve({ code: code ?? -1, stdout }));
        child.stdin.end(csr);
      });
    writeFileSync(join(marks, name), "");
    try {
      const marked = await runWrapper();
      assert.equal(marked.code, 1);
      assert.match(marked.stdout, /espm signs marked-01\.enroll\.test itself/);
      assert.equal((await client.enrollment(name))?.state, "issued", "espm was not asked: the token is unburned");
    } finally {
      rmSync(join(marks, name), { force: true });
    }
    const unmarked = await runWrapper();
    assert.equal(unmarked.code, 0, unmarked.stdout);
    assert.equal((await client.enrollment(name))?.state, "used");
  });

  it("signs a certificate of its own for a name the site's fallback policy would sign at submit", async () => {
    const name = `own-fallback-01.${DOMAIN}`;
    const signsAll = join(world.dir, "signs-all.sh");
    writeFileSync(signsAll, "#!/bin/sh\ncat >/dev/null\nexit 0\n", { mode: 0o755 });
    const ini = readFileSync(world.setup.ini, "utf8");
    // espm autosign reads espm.ini at every run: the site's policy, signing everything, is the fallback.
    writeFileSync(world.setup.ini, ini.replace("[autosign]\n", `[autosign]\nfallback = ${signsAll}\n`));
    try {
      await client.registerNode({ name, groups: ["base"] });
      const issued = await client.signCertificate(name, csrFor(name));
      assert.match(issued.certificate, /BEGIN CERTIFICATE/);
      assert.equal((await client.certificateStatus(name))?.state, "signed");
      assert.doesNotMatch(puppetServerLog(), new RegExp(`fallback policy .* signs ${name.replaceAll(".", "\\.")}`));
    } finally {
      writeFileSync(world.setup.ini, ini);
      await client.revokeCertificate(name).catch(() => undefined);
      await client.deleteNode(name).catch(() => undefined);
    }
  });

  it("refuses, naming the setting, when espm.ini's [autosign] or certname policy is not valid, and burns no token", async () => {
    const { name, token } = await enrolled("badini-01");
    const csr = csrFor(name, token);
    assert.match(readFileSync(world.setup.ini, "utf8"), /^sweep_seconds\s*=/m, "the world's espm.ini sets the sweep");
    const cases: Array<[(ini: string) => string, RegExp]> = [
      [(ini) => ini.replace(/^socket\s*=.*\n/m, ""), /autosign\.socket: a path is required/],
      [(ini) => ini.replace(/^secret_file\s*=.*\n/m, ""), /autosign\.secret_file: a path is required/],
      [(ini) => ini.replace(/^sweep_seconds\s*=.*$/m, "sweep_seconds = soon"), /autosign\.sweep_seconds/],
      [(ini) => ini.replace("[certnames]\n", "[certnames]\nallow[] = web-*.*\n"), /certnames\.allow: "web-\*\.\*"/],
    ];
    for (const [edit, problem] of cases) {
      const result = await autosignWith(edit, name, csr);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, problem);
    }
    assert.equal(await signedAtCa(name), false, "nothing was signed");
    assert.equal((await client.enrollment(name))?.state, "issued", "and the token was not burned");
  });

  it("refuses a CSR that repeats an extension, even with a valid token, reading every value", async () => {
    const { name, token } = await enrolled("dup-01", { pp_role: "web" });
    await submit(
      name,
      csrWithRepeatedExtension(name, generateRsaKeyPair(2048).privateKeyPem, "pp_role", ["web", "db"], token),
    );
    await waitFor("the refusal in the log", async () =>
      /requests extension pp_role more than once/.test(puppetServerLog()) ? true : undefined,
    );
    assert.equal(await signedAtCa(name), false);
    // Removed at once, though Puppet Server cannot even report its status (500): it would block the
    // node's own CSR, and fail the CA's whole list for everyone.
    await waitFor("the refused request removed", async () => ((await pendingAtCa(name)) ? undefined : true));
  });

  it("keeps a node from its certificate for no tokenless CSR someone else submitted for its name first", async () => {
    const { name, token, issued } = await enrolled("squat-01");
    // Anyone may submit a CSR for any name; espm's policy refuses this one and removes it at once.
    assert.equal(await submit(name, csrFor(name)), 200);
    const userdata = renderUserData({
      nodeName: name,
      master: "localhost",
      masterPort: world.lab.port,
      caCertificatePem: issued.caCertificate,
      enrollment: { token, extensions: {} },
      maxWaitForCertSeconds: 60,
    });
    const boot = await world.boot("squat-01", userdata.script);
    assert.equal(boot.code, 0, `${boot.stdout}\n${boot.log}`);
    assert.equal(await caState(world.lab, name), "signed");
    assert.match(
      JSON.stringify(world.espm.logLines),
      /removed the CSR espm refused for an enrolled name/,
      "espm removed the squatter's request",
    );
  });

  it("signs a pending request while a CSR someone submitted makes the CA's list fail", async () => {
    // A CSR with a repeated extension, for a name espm never enrolled: it stays pending, and
    // Puppet Server 7 then fails certificate_statuses/any for everyone.
    const poison = `poison-01.${DOMAIN}`;
    await submit(
      poison,
      csrWithRepeatedExtension(poison, generateRsaKeyPair(2048).privateKeyPem, "pp_role", ["a", "b"]),
    );
    try {
      const list = await request(`${world.lab.url}/puppet-ca/v1/certificate_statuses/any`, {
        dispatcher: espmDispatcher(world.lab),
      });
      await list.body.text();
      console.log(`      the CA's list with the poison CSR pending: HTTP ${list.statusCode}`);
      const { name, token } = await enrolled("listfail-01");
      await world.espm.stop();
      try {
        await submit(name, csrFor(name, token));
        assert.equal(await caState(world.lab, name), "requested");
      } finally {
        await world.restartEspm();
        client = world.client();
      }
      await waitFor("the sweep's sign", async () => ((await caState(world.lab, name)) === "signed" ? true : undefined));
    } finally {
      await cleanAtCa(poison);
    }
    assert.equal(await caState(world.lab, poison), "absent");
  });

  it("shows in health that autosign reaches espm", async () => {
    const health = await client.health();
    assert.equal(health.backends?.autosign?.status, "ok", JSON.stringify(health.backends?.autosign));
  });

  it("through the providers: enroll, boot, and delete revokes the agent's certificate (serial in the CRL, agent refused)", async () => {
    const registrations = await configuredProvider(registrationProvider, world.stackConfig());
    const enrollments = await configuredProvider(enrollmentProvider, world.stackConfig());
    const registration = await registrations.create(
      (await registrations.check!({}, { name: `prov-01.${DOMAIN}`, groups: ["base"] })).inputs,
    );
    const reg = registration.outs as RegistrationState;
    const checked = await enrollments.check!({}, { certname: reg.nodeName, extensions: { pp_role: "web" } });
    const created = await enrollments.create(checked.inputs);
    const enrollment = created.outs as EnrollmentState;
    assert.equal(enrollment.state, "issued");
    const userdata = renderUserData({
      nodeName: reg.nodeName,
      master: "localhost",
      masterPort: world.lab.port,
      caCertificatePem: enrollment.caCertificatePem,
      enrollment: { token: enrollment.token, extensions: enrollment.extensions },
      maxWaitForCertSeconds: 60,
    });
    const boot = await world.boot("prov-01", userdata.script);
    assert.equal(boot.code, 0, `${boot.stdout}\n${boot.log}`);

    const read = await waitFor("a read with the serial", async () => {
      const r = await enrollments.read!(created.id, enrollment);
      return (r.props as EnrollmentState).serial ? (r.props as EnrollmentState) : undefined;
    });
    assert.equal(read.state, "signed");
    // A change of ttl after use is an update in place, never a replacement that would revoke the node.
    const diff = await enrollments.diff!(created.id, read, { ...read, ttlMinutes: 5 });
    assert.deepEqual(diff.replaces, []);
    assert.equal(diff.changes, true);
    const replaced = await enrollments.diff!(created.id, read, { ...read, extensions: { pp_role: "db" } });
    assert.deepEqual(replaced.replaces, ["extensions"]);
    // Nor is dropping the CA bundle from state; an enrollment stored before the fingerprint existed gets one.
    const stored: EnrollmentState = { ...read };
    delete stored.includeCaBundle;
    delete stored.caFingerprint;
    assert.equal((await enrollments.diff!(created.id, stored, checked.inputs as EnrollmentState)).changes, false);
    const lean = { ...read, includeCaBundle: false };
    const dropped = await enrollments.diff!(created.id, stored, lean);
    assert.deepEqual(dropped.replaces, []);
    assert.equal(dropped.changes, true);
    const updated = (await enrollments.update!(created.id, stored, lean)).outs as EnrollmentState;
    assert.equal(updated.caCertificatePem, "");
    assert.equal(updated.caFingerprint, enrollment.caFingerprint);
    assert.equal(updated.state, "signed", "the node's certificate is untouched");

    await enrollments.delete!(created.id, read);
    await registrations.delete!(registration.id, reg);
    assert.ok((await crlSerials(world.lab)).includes(read.serial!), "serial in the CRL");
    assert.equal(await caState(world.lab, reg.nodeName), "absent");
    const refused = await world.boot("prov-01", userdata.script);
    assert.notEqual(refused.code, 0, refused.stdout);
    await enrollments.delete!(created.id, read); // again: nothing left, no error
  });
});
