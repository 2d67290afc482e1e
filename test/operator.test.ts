/**
 * The operator's steps, as the README gives them, on a Puppet Server that starts with Debian's stock
 * auth.conf and no certificate for espm: espm-setup, espm enroll (the CA's own CLI signs), espm
 * puppet-config writing auth.conf for review, a reload, and then a node registered, signed and
 * booted through espm.
 */
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EspmClient } from "../sdk/client";
import { createCsr, generateRsaKeyPair } from "../sdk/x509";
import { renderUserData } from "../provider/userdata";
import { startPuppetServer, type PuppetServerLab } from "../scripts/lab/puppetserver";
import { ESPM_BIN, EspmProcess, freePort, ROOT, run, scratchDir, setupEspm, type SetupResult } from "./helpers/espm";

describe("the operator's steps on a Puppet Server with stock auth.conf", function () {
  this.timeout(600_000);
  let dir: string;
  let lab: PuppetServerLab;
  let setup: SetupResult;
  let espm: EspmProcess | undefined;
  const espmCli = (...args: string[]) => run(process.execPath, [ESPM_BIN, ...args]);

  before(async () => {
    dir = scratchDir("espm-operator");
    const espmDir = join(dir, "espm");
    mkdirSync(espmDir);
    lab = await startPuppetServer({
      dir: join(dir, "puppetserver"),
      port: await freePort(),
      enc: `${process.execPath} ${ESPM_BIN} enc -c ${join(espmDir, "etc/espm.ini")}`,
      modules: [join(ROOT, "test/fixtures/modules/espm_file")],
      issueEspmCertificate: false,
      authConf: "stock",
    });
    const certs = join(espmDir, "etc/certs");
    setup = await setupEspm(
      [
        "--certname-pattern", "*.ops.test",
        "--puppetserver-url", lab.url, "--puppetserver-ca", lab.caBundle,
        "--puppetserver-cert", join(certs, "espm-client.crt"), "--puppetserver-key", join(certs, "espm-client.key"),
        "--puppetserver-reportdir", lab.reportDir,
      ],
      `groups:\n  files:\n    classes:\n      espm_file:\n        content: from the operator's group\n`,
      espmDir,
    );
  });

  after(async () => {
    await espm?.stop();
    await lab?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("espm enroll submits espm's request, the CA's CLI signs it, and espm enroll fetches the certificate (0600)", async () => {
    const { cert, key } = { cert: join(setup.configDir, "certs/espm-client.crt"), key: join(setup.configDir, "certs/espm-client.key") };
    const first = await espmCli("enroll", "-c", setup.ini);
    assert.match(first.stdout, /On the CA server, run:\n {2}puppetserver ca sign --certname espm\n/);
    assert.equal(statSync(key).mode & 0o777, 0o600);
    assert.equal(existsSync(cert), false);
    const again = await espmCli("enroll", "-c", setup.ini);
    assert.match(again.stdout, /waiting at the CA/, "a second run before the sign keeps the one request");

    await run("puppetserver", ["ca", "sign", "--certname", "espm", "--config", lab.confFile], { timeout: 120_000 });
    const fetched = await espmCli("enroll", "-c", setup.ini);
    assert.match(fetched.stdout, /espm's certificate is in .*espm-client\.crt \(mode 0600\); start espm/);
    assert.equal(statSync(cert).mode & 0o777, 0o600);
    assert.match(readFileSync(cert, "utf8"), /BEGIN CERTIFICATE/);
  });

  it("espm puppet-config writes auth.conf with espm's rules for review, and Puppet Server reloads it", async () => {
    const authConf = join(lab.dir, "conf.d/auth.conf");
    const reviewed = join(dir, "auth.conf.espm");
    const { stdout } = await espmCli("puppet-config", "-c", setup.ini, "--auth-conf", authConf, "--write", reviewed);
    assert.match(stdout, /node_terminus = exec/);
    assert.match(stdout, /reports = store/);
    assert.ok(stdout.includes(`is in ${reviewed}: review it`));
    assert.match(readFileSync(reviewed, "utf8"), /name: "espm certificates"/);
    await assert.rejects(espmCli("puppet-config", "-c", setup.ini, "--auth-conf", authConf, "--write", reviewed), /EEXIST/, "never overwrites");
    copyFileSync(reviewed, authConf);
    await lab.reload();
  });

  it("espm starts, and a node is registered, signed and boots through it", async () => {
    espm = await EspmProcess.start(setup);
    const client = new EspmClient({ url: espm.url, psk: setup.psk, certificate: setup.certificate });
    try {
      const health = await client.health();
      assert.equal(health.backends?.ca?.status, "ok");
      assert.equal(health.backends?.certnames?.status, "ok", health.backends?.certnames?.detail);
      const name = "ops-01.ops.test";
      const managed = join(dir, "agent/managed.txt");
      await client.registerNode({ name, groups: ["files"], classes: { espm_file: { path: managed } } });
      const { privateKeyPem } = generateRsaKeyPair(2048);
      const issued = await client.signCertificate(name, createCsr(name, privateKeyPem));
      const userdata = renderUserData({ nodeName: name, master: "localhost", masterPort: lab.port, certificatePem: issued.certificate, privateKeyPem, caCertificatePem: issued.caCertificate });
      const agent = join(dir, "agent");
      mkdirSync(agent, { recursive: true });
      const script = join(agent, "userdata.sh");
      writeFileSync(script, userdata.script, { mode: 0o700 });
      const boot = await run("sh", [script, "--confdir", join(agent, "conf"), "--vardir", join(agent, "var"), "--ssldir", join(agent, "ssl"), "--logdest", join(agent, "first.log")], { timeout: 180_000 });
      assert.match(boot.stdout, /agent exit 2/);
      assert.equal(readFileSync(managed, "utf8"), "from the operator's group\n");
      // Outside espm's patterns, Puppet Server refuses espm's own certificate.
      await assert.rejects(client.registerNode({ name: "web-01.example.test", classes: { motd: {} } }), /certname policy \(patterns\)/);
    } finally {
      await client.close();
    }
  });
});
