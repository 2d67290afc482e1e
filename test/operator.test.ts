/**
 * The operator guide, run as the README gives it (scripts/operator-guide.sh, which the README holds
 * verbatim), on a Puppet Server that starts with Debian's stock auth.conf and no certificate for
 * espm: espm's user, espm-setup, espm enroll (the CA's own CLI signs), espm puppet-config's auth.conf,
 * the ENC and reports settings, a reload, espm in PuppetDB's certificate allowlist; then a node
 * registered, signed, booted and decommissioned through espm. The site runs PuppetDB (its Puppet
 * Server already sends it facts and reports, and its allowlist names only the Puppet server). Only
 * the CA's sign command (this server's config), the reload and PuppetDB's restart (no systemd) are
 * the test's own.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Agent, request } from "undici";
import { EspmClient } from "../sdk/client";
import { createCsr, generateRsaKeyPair } from "../sdk/x509";
import { startPostgres, type PostgresLab } from "../scripts/lab/postgres";
import { startPuppetDb, type PuppetDbLab } from "../scripts/lab/puppetdb";
import { startPuppetServer, type PuppetServerLab } from "../scripts/lab/puppetserver";
import { renderUserData } from "../provider/userdata";
import { bootAgent, signedUserdata } from "./helpers/world";
import {
  ESPM_BIN,
  EspmProcess,
  freePort,
  ROOT,
  run,
  scratchDir,
  SETUP_BIN,
  setupIn,
  type SetupResult,
} from "./helpers/espm";

/** A node's compiled catalog as Puppet Server serves it to the node's own certificate: its classes, resources and edges. */
async function catalogOf(lab: PuppetServerLab, name: string): Promise<string> {
  const dispatcher = new Agent({
    connect: {
      ca: readFileSync(lab.caBundle),
      cert: readFileSync(join(lab.dir, `ssl/certs/${name}.pem`)),
      key: readFileSync(join(lab.dir, `ssl/private_keys/${name}.pem`)),
    },
  });
  try {
    const res = await request(`${lab.url}/puppet/v3/catalog/${name}?environment=production`, {
      dispatcher,
      headers: { accept: "application/json" },
    });
    const text = await res.body.text();
    assert.equal(res.statusCode, 200, text.slice(0, 500));
    const { classes, resources, edges } = JSON.parse(text) as Record<string, unknown>;
    return JSON.stringify({ classes, resources, edges });
  } finally {
    await dispatcher.close();
  }
}

/** Submits a CSR for `name` through the CA's open endpoint, as an agent does, and says whether the CA signed it. */
async function submitAndSigned(lab: PuppetServerLab, name: string): Promise<boolean> {
  const dispatcher = new Agent({ connect: { ca: readFileSync(lab.caBundle) } });
  try {
    const put = await request(`${lab.url}/puppet-ca/v1/certificate_request/${name}`, {
      method: "PUT",
      body: createCsr(name, generateRsaKeyPair(2048).privateKeyPem),
      headers: { "content-type": "text/plain" },
      dispatcher,
    });
    await put.body.text();
    const cert = await request(`${lab.url}/puppet-ca/v1/certificate/${name}`, { dispatcher });
    await cert.body.text();
    return cert.statusCode === 200;
  } finally {
    await dispatcher.close();
  }
}

/** Runs scripts/operator-guide.sh with `env`, the way the README says, and returns its output. */
async function runGuide(env: Record<string, string>): Promise<string> {
  const { stdout, stderr } = await run("sh", [join(ROOT, "scripts/operator-guide.sh")], {
    env: { ...process.env, ...env },
    timeout: 300_000,
  });
  return `${stdout}${stderr}`;
}

describe("the operator guide (scripts/operator-guide.sh, as the README has it) on a Puppet Server with stock auth.conf", function () {
  this.timeout(600_000);
  let dir: string;
  let lab: PuppetServerLab;
  let pg: PostgresLab;
  let puppetdb: PuppetDbLab;
  let setup: SetupResult;
  let espm: EspmProcess | undefined;
  let output = "";
  /** The site's existing node's catalog before espm was installed. */
  let catalogBefore = "";
  /** puppet.conf's external_nodes before espm was installed: the site's ENC. */
  let siteExternalNodes = "";

  before(async () => {
    dir = scratchDir("espm-operator");
    pg = await startPostgres();
    const puppetdbPort = await freePort();
    // A living site: its own ENC, which classifies an existing node (with a secret parameter), and
    // its own autosign policy, which signs its auto-* names.
    const siteEnc = join(dir, "site-enc");
    writeFileSync(
      siteEnc,
      `#!/bin/sh
case "$1" in
  legacy-01.site.test) printf -- '---\nclasses:\n  espm_file:\n    path: ${join(dir, "legacy.txt")}\n    content: SITE-SECRET\nparameters:\n  site_secret: s3cret\n' ;;
  *) printf -- '---\nclasses: {}\n' ;;
esac
`,
      { mode: 0o755 },
    );
    const siteAutosign = join(dir, "site-autosign");
    writeFileSync(siteAutosign, '#!/bin/sh\ncase "$1" in auto-*.site.test) exit 0 ;; esac\nexit 1\n', { mode: 0o755 });
    lab = await startPuppetServer({
      dir: join(dir, "puppetserver"),
      port: await freePort(),
      modules: [join(ROOT, "test/fixtures/modules/espm_file")],
      issueEspmCertificate: false,
      authConf: "stock",
      puppetdb: `https://localhost:${puppetdbPort}`,
      enc: siteEnc,
      autosign: siteAutosign,
    });
    puppetdb = await startPuppetDb({ dir: join(dir, "puppetdb"), port: puppetdbPort, postgres: pg, server: lab });
    // The site's existing node, signed by the operator's CLI, and its catalog before espm.
    await run("puppetserver", ["ca", "generate", "--certname", "legacy-01.site.test", "--config", lab.confFile], {
      timeout: 120_000,
    });
    catalogBefore = await catalogOf(lab, "legacy-01.site.test");
    siteExternalNodes = /^external_nodes = (.+)$/m.exec(readFileSync(lab.confFile, "utf8"))![1]!;
    assert.match(catalogBefore, /SITE-SECRET/);
    assert.ok(await submitAndSigned(lab, "auto-00.site.test"), "the site's own policy signs its names");
    // The bins as `npm install -g` puts them on PATH.
    const bin = join(dir, "bin");
    mkdirSync(bin);
    for (const [name, file] of [
      ["espm", ESPM_BIN],
      ["espm-setup", SETUP_BIN],
    ] as const) {
      writeFileSync(join(bin, name), `#!/bin/sh\nexec ${process.execPath} ${file} "$@"\n`, { mode: 0o755 });
    }
    const configDir = join(dir, "etc");
    const port = await freePort();
    // What the test replaces: the CA's sign (this server's config) and the reload (no systemd here:
    // SIGHUP, then wait until Puppet Server has counted the restart).
    const restartFile = join(lab.dir, "run/restart");
    const pid = readFileSync(join(lab.dir, "run/server.pid"), "utf8").trim();
    output = await runGuide({
      PATH: `${bin}:${process.env.PATH ?? ""}`,
      CERTNAME_PATTERN: "*.ops.test",
      ESPM_HOST: "127.0.0.1",
      ESPM_PORT: String(port),
      ESPM_LISTEN: "127.0.0.1",
      PUPPET_URL: lab.url,
      CONFIG_DIR: configDir,
      STATE_DIR: join(dir, "state"),
      PUPPET_CA: lab.caBundle,
      PUPPET_CONF: lab.confFile,
      AUTH_CONF: join(lab.dir, "conf.d/auth.conf"),
      REPORT_DIR: lab.reportDir,
      CA_SIGN: `puppetserver ca sign --certname espm --config ${lab.confFile}`,
      RELOAD_PUPPETSERVER: `before=$(cat ${restartFile}); kill -HUP ${pid}; while [ "$(cat ${restartFile})" -le "$before" ]; do sleep 0.5; done`,
      PUPPETDB_URL: puppetdb.url,
      PUPPETDB_ALLOWLIST: puppetdb.allowlist,
      // PuppetDB is this test's child process: the guide asks for the restart, the test carries it out.
      RESTART_PUPPETDB: `touch ${join(dir, "restart-puppetdb")}`,
    });
    if (existsSync(join(dir, "restart-puppetdb"))) {
      await puppetdb.stop();
      await puppetdb.start();
    }
    setup = setupIn(dir, configDir, port, output);
  });

  after(async () => {
    await espm?.stop();
    await puppetdb?.stop();
    await lab?.stop();
    await pg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("is in the README verbatim", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    assert.ok(
      readme.includes(readFileSync(join(ROOT, "scripts/operator-guide.sh"), "utf8")),
      "README.md holds scripts/operator-guide.sh as it is",
    );
  });

  it("keeps the site's classification and signing: the existing node's catalog is identical, and the site's policy still signs its names", async () => {
    assert.match(output, /== 2\. .*the site's own ENC and autosign policy become espm's fallbacks/);
    const ini = readFileSync(setup.ini, "utf8");
    assert.ok(
      ini.includes(`\nfallback_enc=${siteExternalNodes}\n`),
      `the site's ENC (${siteExternalNodes}) is espm's fallback`,
    );
    assert.match(ini, new RegExp(`fallback=${join(dir, "site-autosign")}`));
    assert.match(ini, /\[server\]\nhost=127\.0\.0\.1\n/, "ESPM_LISTEN");
    assert.equal(await catalogOf(lab, "legacy-01.site.test"), catalogBefore);
    const log = () => readFileSync(join(lab.dir, "log/puppetserver.log"), "utf8").split("\n").slice(-12).join("\n");
    assert.ok(await submitAndSigned(lab, "auto-01.site.test"), `through espm autosign's fallback:\n${log()}`);
    assert.equal(await submitAndSigned(lab, "other-01.site.test"), false);
  });

  it("made espm's user in Puppet Server's group, and its client certificate through espm enroll and the CA's CLI (0600, espm's)", async () => {
    assert.match(output, /On the CA server, run:\n {2}puppetserver ca sign --certname espm\n/);
    assert.match(output, /espm's certificate is in .*espm-client\.crt \(mode 0600\); start espm/);
    const { stdout: groups } = await run("id", ["-nG", "espm"]);
    assert.match(groups, /\bpuppet\b/);
    const cert = statSync(join(setup.configDir, "certs/espm-client.crt"));
    assert.equal(cert.mode & 0o777, 0o600);
    assert.equal(cert.uid, Number((await run("id", ["-u", "espm"])).stdout.trim()), "owned by espm");
  });

  it("gave Puppet Server espm's auth.conf rules, the ENC and stored reports, keeping the old auth.conf for review", () => {
    assert.match(readFileSync(join(lab.dir, "conf.d/auth.conf"), "utf8"), /name: "espm certificates"/);
    assert.doesNotMatch(readFileSync(join(lab.dir, "conf.d/auth.conf.before-espm"), "utf8"), /espm/);
    const conf = readFileSync(lab.confFile, "utf8");
    assert.match(conf, /node_terminus = exec/);
    assert.match(conf, new RegExp(`external_nodes = ${join(dir, "bin/espm")} enc -c ${setup.ini}`));
    assert.match(conf, /reports = store/);
    const wrapper = join(setup.configDir, "espm-autosign");
    assert.match(conf, new RegExp(`autosign = ${wrapper}`));
    assert.doesNotMatch(conf, /autosign = false/, "the lab's stock autosign = false line is gone");
    const mode = statSync(wrapper);
    assert.equal(mode.mode & 0o777, 0o750);
    assert.equal(mode.uid, 0);
    assert.equal(mode.gid, Number(readFileSync("/etc/group", "utf8").match(/^puppet:[^:]*:(\d+):/m)![1]));
  });

  it("named PuppetDB in espm.ini (runs read there, no report directory) and put espm in its allowlist, with the warning", () => {
    const ini = readFileSync(setup.ini, "utf8");
    assert.match(ini, /\[puppetdb\]\nurl=https:\/\/localhost:\d+/);
    assert.doesNotMatch(ini, /reportdir/);
    assert.match(readFileSync(lab.confFile, "utf8"), /reports = store,puppetdb\n/, "the site's processors kept");
    assert.deepEqual(readFileSync(puppetdb.allowlist, "utf8").trim().split("\n"), [lab.certname, "espm"]);
    assert.match(output, /== 5\. PuppetDB/);
    const printed = readFileSync(join(ROOT, "scripts/operator-guide.sh"), "utf8");
    assert.match(printed, /lets espm submit ANY PuppetDB command/);
  });

  it("leaves an espm that starts, and a node registered, signed and booted through it", async () => {
    // The operator's first group, in the groups.yaml espm-setup wrote.
    writeFileSync(
      join(setup.configDir, "groups.yaml"),
      `groups:\n  files:\n    classes:\n      espm_file:\n        content: from the operator's group\n`,
    );
    espm = await EspmProcess.start(setup);
    const client = new EspmClient({ url: espm.url, psk: setup.psk, certificate: setup.certificate });
    try {
      const health = await client.health();
      assert.equal(health.backends?.ca?.status, "ok");
      assert.equal(health.backends?.certnames?.status, "ok", health.backends?.certnames?.detail);
      const name = "ops-01.ops.test";
      const managed = join(dir, "agent/managed.txt");
      await client.registerNode({ name, groups: ["files"], classes: { espm_file: { path: managed } } });
      const agent = join(dir, "agent");
      mkdirSync(agent, { recursive: true });
      const script = join(agent, "userdata.sh");
      await signedUserdata(client, name, { masterPort: lab.port, file: script });
      const boot = await bootAgent(agent, script);
      assert.equal(boot.code, 0, `${boot.stdout}\n${boot.log}`);
      assert.match(boot.stdout, /agent exit 2/);
      assert.equal(readFileSync(managed, "utf8"), "from the operator's group\n");
      // The site's PuppetDB has the node; espm's delete revokes it and deactivates it there.
      assert.equal(await puppetdb.nodeState(name), "active");
      assert.equal(health.backends?.puppetdb?.status, "ok", health.backends?.puppetdb?.detail);
      await client.deleteNode(name);
      assert.equal(await puppetdb.nodeState(name), "deactivated");
      assert.equal((await client.certificateStatus(name))?.state, "revoked");
      // The instance key mode through the autosign policy the guide set: the node makes its own key.
      const enrolledName = "ops-02.ops.test";
      await client.registerNode({
        name: enrolledName,
        groups: ["files"],
        classes: { espm_file: { path: join(dir, "agent-02/managed.txt") } },
      });
      const enrollment = await client.enroll(enrolledName);
      const instanceUserdata = renderUserData({
        nodeName: enrolledName,
        master: "localhost",
        masterPort: lab.port,
        caCertificatePem: enrollment.caCertificate,
        enrollment: { token: enrollment.token },
        maxWaitForCertSeconds: 30,
      });
      mkdirSync(join(dir, "agent-02"), { recursive: true });
      writeFileSync(join(dir, "agent-02/userdata.sh"), instanceUserdata.script, { mode: 0o700 });
      const enrolledBoot = await bootAgent(join(dir, "agent-02"), join(dir, "agent-02/userdata.sh"));
      assert.equal(enrolledBoot.code, 0, `${enrolledBoot.stdout}\n${enrolledBoot.log}`);
      assert.match(enrolledBoot.stdout, /agent exit 2/);
      assert.equal((await client.health()).backends?.autosign?.status, "ok");
      // Outside espm's patterns, espm refuses, and so would Puppet Server.
      await assert.rejects(
        client.registerNode({ name: "web-01.example.test", classes: { motd: {} } }),
        /certname policy \(patterns\)/,
      );
    } finally {
      await client.close();
    }
  });
});
