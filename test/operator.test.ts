/**
 * The operator guide, run as docs/operator.md gives it (agent/scripts/operator-guide.sh, which the page
 * holds verbatim), on a living site, on both Puppets: before espm, its Puppet Server has an ENC of its own
 * classifying two existing nodes (one with a secret parameter), their certificates, an autosign
 * policy of its own, report processors, and auth.conf rules of its own, one named like one of
 * espm's; its operator uses `puppetserver ca`. The guide is stopped after each step and run again,
 * refused on the clashing name, shown as a dry run, undone by a failed reload, run to the end, and
 * run once more; then everyone else's catalogs, CA commands and rules are compared with what they
 * were, and espm runs as its own user, which cannot read the CA's keys. On Puppet 7 the site runs
 * PuppetDB (espm reads runs there); on Puppet 8 espm reads the stored reports through the guide's
 * ACL. Only the CA's sign command (this server's config), the reload and PuppetDB's restart (no
 * systemd here) are the test's own.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Agent, request } from "undici";
import { EspmClient } from "espm-sdk/client";
import { createCsr, generateRsaKeyPair } from "espm-sdk/x509";
import { rootCommand } from "../scripts/lab/debian-root";
import { startPostgres, type PostgresLab } from "../scripts/lab/postgres";
import { startPuppetDb, type PuppetDbLab } from "../scripts/lab/puppetdb";
import { findJava, startPuppetServer, type PuppetServerLab } from "../scripts/lab/puppetserver";
import { renderUserData } from "pulumi-espm/userdata";
import { PUPPETS } from "./helpers/puppets";
import { bootAgent, signedUserdata } from "./helpers/world";
import {
  EspmProcess,
  freePort,
  installedAgent,
  ROOT,
  run,
  runAs,
  scratchDir,
  setupIn,
  type SetupResult,
} from "./helpers/espm";

/** The site's existing nodes, as its own ENC classifies them. */
const SITE_NODES = ["legacy-01.site.test", "legacy-02.site.test"];

/** The site's own auth.conf rules: one for its monitoring, and one it named like one of espm's before espm existed. */
const SITE_RULES = `        {
            # an endpoint of the site's own, for its monitoring
            match-request: { path: "^/site/v1/inventory$", type: regex, method: get }
            allow: ["monitor.site.test"]
            sort-order: 450
            name: "site monitoring"
        },
        {
            match-request: { path: "/puppet/v3/environments", type: path, method: get }
            allow: ["legacy-01.site.test"]
            sort-order: 450
            name: "espm environment classes"
        },
`;

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

for (const puppet of PUPPETS)
  describe(`the operator guide (agent/scripts/operator-guide.sh, as docs/operator.md has it) on a living site: ${puppet.label}`, function () {
    this.timeout(600_000);
    let dir: string;
    let root: string | undefined;
    let lab: PuppetServerLab;
    let pg: PostgresLab | undefined;
    let puppetdb: PuppetDbLab | undefined;
    let setup: SetupResult;
    /** espm as `npm install -g` leaves it, readable by espm's user. */
    let installedEspm: string;
    let espm: EspmProcess | undefined;
    let env: Record<string, string>;
    let authConf: string;
    let unitFile: string;
    /** The operator's `puppetserver ca`, run where the server runs. */
    let ca: (...args: string[]) => Promise<{ code: number | null; stdout: string; stderr: string }>;
    const catalogsBefore = new Map<string, string>();
    let restarts: () => number;
    let logOffset = 0;
    /** The site's files after the operator renamed the clashing rule: what a failed run must leave. */
    let siteFiles: () => string;

    /** Runs the guide with `env` and `extra`; its exit code and everything it printed. */
    const guide = async (extra: Record<string, string> = {}, args: string[] = []) => {
      const result = await run("sh", [join(ROOT, "agent/scripts/operator-guide.sh"), ...args], {
        env: { ...process.env, ...env, ...extra },
        timeout: 300_000,
      }).then(
        ({ stdout, stderr }) => ({ code: 0, output: `${stdout}${stderr}` }),
        (err: { code: number; stdout: string; stderr: string }) => ({
          code: err.code,
          output: `${err.stdout}${err.stderr}`,
        }),
      );
      return result;
    };

    before(async function () {
      root = await puppet.root();
      dir = scratchDir("espm-operator");
      const withPuppetDb = root === undefined;
      const puppetdbPort = await freePort();
      // The site's ENC classifies its existing nodes (one with a secret parameter); its autosign policy signs its auto-* names.
      const siteEnc = join(dir, "site-enc");
      writeFileSync(
        siteEnc,
        `#!/bin/sh
case "$1" in
  legacy-01.site.test) printf -- '---\nclasses:\n  espm_file:\n    path: ${join(dir, "legacy.txt")}\n    content: SITE-SECRET\nparameters:\n  site_secret: s3cret\n' ;;
  legacy-02.site.test) printf -- '---\nclasses:\n  espm_file:\n    path: ${join(dir, "legacy-02.txt")}\n    content: second\n' ;;
  *) printf -- '---\nclasses: {}\n' ;;
esac
`,
        { mode: 0o755 },
      );
      const siteAutosign = join(dir, "site-autosign");
      writeFileSync(siteAutosign, '#!/bin/sh\ncase "$1" in auto-*.site.test) exit 0 ;; esac\nexit 1\n', {
        mode: 0o755,
      });
      if (withPuppetDb) pg = await startPostgres();
      lab = await startPuppetServer({
        dir: join(dir, "puppetserver"),
        port: await freePort(),
        modules: [join(ROOT, "test/fixtures/modules/espm_file")],
        issueEspmCertificate: false,
        authConf: "stock",
        siteAuthRules: SITE_RULES,
        puppetdb: withPuppetDb ? `https://localhost:${puppetdbPort}` : undefined,
        enc: siteEnc,
        autosign: siteAutosign,
        root,
        binds: [dir, ROOT, process.execPath],
      });
      if (pg)
        puppetdb = await startPuppetDb({ dir: join(dir, "puppetdb"), port: puppetdbPort, postgres: pg, server: lab });
      ca = async (...args) => {
        const argv = lab.command(["puppetserver", "ca", ...args, "--config", lab.confFile]);
        return run(argv[0]!, argv.slice(1), { timeout: 120_000 }).then(
          ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
          (err: { code: number; stdout: string; stderr: string }) => ({
            code: err.code,
            stdout: err.stdout,
            stderr: err.stderr,
          }),
        );
      };
      for (const name of SITE_NODES) {
        const generated = await ca("generate", "--certname", name);
        assert.equal(generated.code, 0, generated.stderr);
        catalogsBefore.set(name, await catalogOf(lab, name));
      }
      assert.match(catalogsBefore.get("legacy-01.site.test")!, /SITE-SECRET/);
      assert.ok(await submitAndSigned(lab, "auto-00.site.test"), "the site's own policy signs its names");
      // The keys as Debian's package leaves them: Puppet Server's user and group, readable by that group.
      const { stdout: puppetIds } = await run("id", ["-u", "puppet"]);
      const puppetGid = Number((await run("id", ["-g", "puppet"])).stdout.trim());
      for (const d of ["ssl", "ca"]) await run("chown", ["-R", `${puppetIds.trim()}:${puppetGid}`, join(lab.dir, d)]);

      // espm-agent installed as `npm install -g` leaves it, its bins on PATH.
      const installed = installedAgent(dir);
      installedEspm = installed.espm;
      const bin = join(dir, "bin");
      mkdirSync(bin);
      for (const [name, file] of [
        ["espm", installed.espm],
        ["espm-setup", installed.setup],
      ] as const) {
        writeFileSync(join(bin, name), `#!/bin/sh\nexec ${process.execPath} ${file} "$@"\n`, { mode: 0o755 });
      }
      authConf = join(lab.dir, "conf.d/auth.conf");
      unitFile = join(dir, "systemd/espm.service");
      mkdirSync(join(dir, "systemd"));
      // What the test replaces: the CA's sign (this server's config) and the reload and restart (no
      // systemd here: SIGHUP, then wait until Puppet Server has counted the restart, as Debian's unit does).
      const restartFile = join(lab.dir, "run/restart");
      restarts = () => Number(readFileSync(restartFile, "utf8").trim() || 0);
      const pid = readFileSync(join(lab.dir, "run/server.pid"), "utf8").trim();
      const reload = `before=$(cat ${restartFile}); kill -HUP ${pid}; while [ "$(cat ${restartFile})" -le "$before" ]; do sleep 0.5; done`;
      env = {
        PATH: `${bin}:${process.env.PATH ?? ""}`,
        CERTNAME_PATTERN: "*.ops.test",
        ESPM_HOST: "127.0.0.1",
        ESPM_PORT: String(await freePort()),
        ESPM_LISTEN: "127.0.0.1",
        PUPPET_URL: lab.url,
        CONFIG_DIR: join(dir, "etc"),
        STATE_DIR: join(dir, "state"),
        PUPPET_CA: lab.caBundle,
        PUPPET_CONF: lab.confFile,
        AUTH_CONF: authConf,
        REPORT_DIR: lab.reportDir,
        PUPPETSERVER_JAVA: findJava(),
        CA_SIGN: `puppetserver ca sign --certname espm --config ${lab.confFile}`,
        RELOAD_PUPPETSERVER: reload,
        RESTART_PUPPETSERVER: reload,
        UNIT_FILE: unitFile,
        ...(puppetdb
          ? {
              PUPPETDB_URL: puppetdb.url,
              PUPPETDB_ALLOWLIST: puppetdb.allowlist,
              // PuppetDB is this test's child process: the guide asks for the restart, the test carries it out.
              RESTART_PUPPETDB: `touch ${join(dir, "restart-puppetdb")}`,
            }
          : {}),
      };
      siteFiles = () => readFileSync(authConf, "utf8") + readFileSync(lab.confFile, "utf8");
      logOffset = readFileSync(join(lab.dir, "log/puppetserver.log"), "utf8").length;
    });

    after(async () => {
      await espm?.stop();
      await puppetdb?.stop();
      await lab?.stop();
      await pg?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it("is in docs/operator.md verbatim", () => {
      const page = readFileSync(join(ROOT, "docs/operator.md"), "utf8");
      assert.ok(
        page.includes(readFileSync(join(ROOT, "agent/scripts/operator-guide.sh"), "utf8")),
        "docs/operator.md holds agent/scripts/operator-guide.sh as it is",
      );
    });

    it("stops after each step when told, and each run takes up where the last left off", async () => {
      const before = siteFiles();
      for (const step of [1, 2, 3, 4]) {
        const { code, output } = await guide({ STOP_AFTER: String(step) });
        assert.equal(code, 0, output);
        assert.match(output, new RegExp(`== stopped after step ${step} \\(STOP_AFTER=${step}\\)`));
        if (step === 4) assert.match(output, /espm\.ini is in place: keeping it/, "step 3 again, left alone");
      }
      assert.equal(siteFiles(), before, "Puppet Server's files are the site's until step 5");
      const { stdout: groups } = await run("id", ["-nG", "espm"]);
      assert.doesNotMatch(groups, /\bpuppet\b/, "espm is not in Puppet Server's group");
      assert.match((await run("id", ["-nG", "puppet"])).stdout, /\bespm\b/, "Puppet Server's user is in espm's");
      assert.ok(existsSync(join(dir, "etc/certs/espm-client.crt")), "espm's certificate, signed by the CA's CLI");
      setup = setupIn(dir, join(dir, "etc"), Number(env.ESPM_PORT), "");
    });

    it("refuses a rule name of the site's before anything is changed or reloaded, and Puppet Server stays up", async () => {
      const before = siteFiles();
      const restartsBefore = restarts();
      const { code, output } = await guide();
      assert.equal(code, 1, output);
      assert.match(output, /already has a rule named "espm environment classes" with other content than espm's/);
      assert.equal(siteFiles(), before);
      assert.equal(restarts(), restartsBefore, "no reload");
      assert.equal(await catalogOf(lab, "legacy-01.site.test"), catalogsBefore.get("legacy-01.site.test"));
      // The operator renames the site's rule.
      writeFileSync(
        authConf,
        readFileSync(authConf, "utf8").replace('name: "espm environment classes"', 'name: "site environments"'),
      );
    });

    it("--dry-run prints the diff of every file it would change, and changes nothing", async () => {
      const before = siteFiles();
      const { code, output } = await guide({}, ["--dry-run"]);
      assert.equal(code, 0, output);
      assert.match(output, new RegExp(`--- ${authConf}\n\\+\\+\\+ ${authConf} \\(with espm\\)`));
      assert.match(output, /^\+ {12}name: "espm certificates"$/m);
      assert.match(output, new RegExp(`^\\+external_nodes = ${dir}/bin/espm enc -c ${dir}/etc/espm.ini$`, "m"));
      assert.match(output, /^\+autosign = .*espm-autosign$/m);
      assert.match(output, new RegExp(`^\\+ExecStart=${dir}/bin/espm -c ${dir}/etc/espm.ini$`, "m"));
      assert.match(output, /== dry run: nothing was changed/);
      assert.equal(siteFiles(), before);
      assert.equal(existsSync(unitFile), false);
    });

    it("puts every file back and restarts Puppet Server when the reload fails", async () => {
      const before = siteFiles();
      const { code, output } = await guide({ RELOAD_PUPPETSERVER: "false" });
      assert.equal(code, 1, output);
      assert.match(output, /Puppet Server did not come back from 'false': putting every file back as it was/);
      assert.match(output, new RegExp(`${authConf}: restored`));
      assert.equal(siteFiles(), before);
      assert.equal(await catalogOf(lab, "legacy-02.site.test"), catalogsBefore.get("legacy-02.site.test"));
    });

    it("runs to the end, and a second run changes nothing and reloads nothing", async () => {
      const first = await guide({ STOP_AFTER: "6" });
      assert.equal(first.code, 0, first.output);
      assert.match(first.output, /auth\.conf: changed \(the site's own is .*auth\.conf\.before-espm\)/);
      if (existsSync(join(dir, "restart-puppetdb"))) {
        rmSync(join(dir, "restart-puppetdb"));
        await puppetdb!.stop();
        await puppetdb!.start();
      }
      const rest = await guide();
      assert.equal(rest.code, 0, rest.output);
      assert.match(rest.output, new RegExp(`${unitFile}: changed`));
      const files = () =>
        siteFiles() + readFileSync(unitFile, "utf8") + (puppetdb ? readFileSync(puppetdb.allowlist, "utf8") : "");
      const before = files();
      const restartsBefore = restarts();
      const again = await guide();
      assert.equal(again.code, 0, again.output);
      assert.doesNotMatch(again.output, /: changed|restored/);
      assert.equal((again.output.match(/nothing to change/g) ?? []).length, puppetdb ? 4 : 3, again.output);
      assert.equal(files(), before);
      assert.equal(restarts(), restartsBefore, "no reload");
      assert.equal(existsSync(join(dir, "restart-puppetdb")), false, "no PuppetDB restart");
    });

    it("leaves every existing node's catalog as it was, with the site's ENC and autosign policy as espm's fallbacks", async () => {
      for (const name of SITE_NODES) assert.equal(await catalogOf(lab, name), catalogsBefore.get(name), name);
      const ini = readFileSync(setup.ini, "utf8");
      assert.match(ini, new RegExp(`\nfallback_enc=${join(lab.dir, "enc/enc.sh")}\n`));
      assert.match(ini, new RegExp(`fallback=${join(dir, "site-autosign")}`));
      assert.match(ini, /\[server\]\nhost=127\.0\.0\.1\n/, "ESPM_LISTEN");
      assert.match(ini, /export_group=espm/);
      assert.ok(await submitAndSigned(lab, "auto-01.site.test"), "through espm autosign's fallback");
      assert.equal(await submitAndSigned(lab, "other-01.site.test"), false);
    });

    it("leaves the site's own rules as they were, and every puppetserver ca command the operator uses working", async () => {
      const now = readFileSync(authConf, "utf8");
      const site = readFileSync(`${authConf}.before-espm`, "utf8");
      assert.match(site, /name: "site environments"/);
      assert.ok(
        now.includes(SITE_RULES.replace("espm environment classes", "site environments")),
        "the site's rules, untouched",
      );
      assert.equal(
        now.replace(/rules: \[[\s\S]*?name: "espm environment classes"\n {8}\},/, "rules: ["),
        site,
        "only espm's rules added",
      );
      const list = await ca("list");
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, /other-01\.site\.test/, "the pending request is listed");
      const all = await ca("list", "--all");
      assert.equal(all.code, 0, all.stderr);
      for (const name of [...SITE_NODES, "espm", "auto-01.site.test"])
        assert.match(all.stdout, new RegExp(name.replaceAll(".", "\\.")));
      for (const args of [
        ["sign", "--certname", "other-01.site.test"],
        ["revoke", "--certname", "legacy-02.site.test"],
        ["clean", "--certname", "legacy-02.site.test"],
        ["generate", "--certname", "legacy-03.site.test"],
      ]) {
        const result = await ca(...args);
        assert.equal(result.code, 0, `ca ${args.join(" ")}: ${result.stdout}${result.stderr}`);
      }
      assert.match((await ca("list", "--all")).stdout, /legacy-03\.site\.test/);
      const signAll = await ca("sign", "--all");
      assert.doesNotMatch(
        `${signAll.stdout}${signAll.stderr}`,
        /denied|403/,
        "ca sign --all reaches the CA (nothing pending)",
      );
    });

    it("runs espm as its own user, which cannot read the CA's key, the root key or the server's key, and still signs, revokes, reads runs, classifies and autosigns", async () => {
      const keys = [
        join(lab.dir, "ca/ca_key.pem"),
        join(lab.dir, "ca/root_key.pem"),
        join(lab.dir, `ssl/private_keys/${lab.certname}.pem`),
      ];
      for (const key of keys) {
        assert.ok(existsSync(key), key);
        const denied = await runAs("espm", ["cat", key]);
        assert.equal(denied.code, 1, key);
        assert.match(denied.stderr, /Permission denied/, key);
      }
      // A member of Puppet Server's group reads the CA's key: what espm's membership used to give it.
      const member = await run("setpriv", ["--reuid=espm", "--regid=puppet", "--clear-groups", "cat", keys[0]!]);
      assert.match(member.stdout, /PRIVATE KEY/);
      writeFileSync(
        join(setup.configDir, "groups.yaml"),
        `groups:\n  files:\n    classes:\n      espm_file:\n        content: from the operator's group\n`,
      );
      espm = await EspmProcess.start(setup, { user: "espm", bin: installedEspm });
      assert.match(
        (await run("ps", ["-o", "user=,supgrp=", "-p", String(espm.child.pid)])).stdout.trim(),
        /^espm\s+espm$/,
      );
      const client = new EspmClient({ url: espm.url, psk: setup.psk, certificate: setup.certificate });
      try {
        const health = await client.health();
        assert.equal(health.backends?.ca?.status, "ok", health.backends?.ca?.detail);
        assert.equal(health.backends?.certnames?.status, "ok", health.backends?.certnames?.detail);
        // Sign: a node booted from espm's certificate.
        const name = "ops-01.ops.test";
        const managed = join(dir, "agent/managed.txt");
        await client.registerNode({ name, groups: ["files"], classes: { espm_file: { path: managed } } });
        mkdirSync(join(dir, "agent"), { recursive: true });
        const script = join(dir, "agent/userdata.sh");
        await signedUserdata(client, name, { masterPort: lab.port, file: script });
        const inRoot = (argv: string[]) => rootCommand(root!, mkdtempSync(join(dir, "run-")), argv, { binds: [dir] });
        const boot = await bootAgent(join(dir, "agent"), script, root ? inRoot : undefined);
        assert.equal(boot.code, 0, `${boot.stdout}\n${boot.log}`);
        assert.match(boot.stdout, /agent exit 2/);
        assert.equal(readFileSync(managed, "utf8"), "from the operator's group\n");
        // Classify: espm enc as Puppet Server's user runs it, reading espm's export through espm's group.
        const enc = await runAs("puppet", [join(dir, "bin/espm"), "enc", "-c", setup.ini, name]);
        assert.equal(enc.code, 0, enc.stderr);
        assert.match(enc.stdout, /"content": "from the operator's group"/);
        // Runs: the first run's report, from PuppetDB or through the ACL on the stored reports.
        let runs = await client.nodeRuns(name);
        for (let i = 0; i < 30 && !runs?.runs.length; i++) {
          await new Promise((r) => setTimeout(r, 1000));
          runs = await client.nodeRuns(name);
        }
        assert.equal(runs?.runs[0]?.status, "changed", JSON.stringify(runs));
        // Revoke: the registration's delete.
        await client.deleteNode(name);
        assert.equal((await client.certificateStatus(name))?.state, "revoked");
        // Autosign: the wrapper as Puppet Server's user runs it; espm answers over its socket.
        await client.registerNode({
          name: "ops-02.ops.test",
          groups: ["files"],
          classes: { espm_file: { path: join(dir, "agent-02/managed.txt") } },
        });
        const enrollment = await client.enroll("ops-02.ops.test");
        const wrapper = join(setup.configDir, "espm-autosign");
        const refused = await runAs(
          "puppet",
          [wrapper, "ops-03.ops.test"],
          createCsr("ops-03.ops.test", generateRsaKeyPair(2048).privateKeyPem),
        );
        assert.equal(refused.code, 1);
        assert.match(refused.stderr, /ops-03\.ops\.test/);
        assert.doesNotMatch(refused.stderr, /EACCES|permission denied/i);
        const userdata = renderUserData({
          nodeName: "ops-02.ops.test",
          master: "localhost",
          masterPort: lab.port,
          caCertificatePem: enrollment.caCertificate,
          enrollment: { token: enrollment.token },
          maxWaitForCertSeconds: 30,
        });
        mkdirSync(join(dir, "agent-02"), { recursive: true });
        writeFileSync(join(dir, "agent-02/userdata.sh"), userdata.script, { mode: 0o700 });
        const enrolled = await bootAgent(
          join(dir, "agent-02"),
          join(dir, "agent-02/userdata.sh"),
          root ? inRoot : undefined,
        );
        assert.equal(enrolled.code, 0, `${enrolled.stdout}\n${enrolled.log}`);
        assert.match(enrolled.stdout, /agent exit 2/);
        if (puppetdb) {
          assert.equal(await puppetdb.nodeState(name), "deactivated");
        }
      } finally {
        await client.close();
      }
    });

    it("wrote a systemd unit for the guide's directories, which systemd-analyze verifies, and rates", async () => {
      const unit = readFileSync(unitFile, "utf8");
      assert.match(unit, new RegExp(`^ExecStart=${dir}/bin/espm -c ${dir}/etc/espm.ini$`, "m"));
      assert.match(unit, new RegExp(`^ReadWritePaths=${dir}/state$`, "m"));
      assert.match(unit, /^User=espm\nGroup=espm\n/m);
      assert.doesNotMatch(unit, /SupplementaryGroups/);
      const verify = await run("systemd-analyze", ["verify", unitFile]);
      assert.equal(`${verify.stdout}${verify.stderr}`.trim(), "", "systemd finds nothing to complain about");
      const security = await run("systemd-analyze", ["security", "--offline=true", unitFile]).catch(
        (err: { stdout: string }) => err,
      );
      const score = /Overall exposure level for espm\.service: ([\d.]+)/.exec(security.stdout)?.[1];
      console.log(`      systemd-analyze security: exposure ${score}`);
      assert.ok(score !== undefined && Number(score) <= 3, `exposure ${score}: what the README reports`);
      assert.equal(statSync(join(dir, "state")).mode & 0o7777, 0o750);
      assert.equal(statSync(join(dir, "etc")).mode & 0o7777, 0o750);
    });

    it("caused no ERROR in Puppet Server's log, and no WARN for a signature", () => {
      const log = readFileSync(join(lab.dir, "log/puppetserver.log"), "utf8").slice(logOffset);
      const errors = log.split("\n").filter((l) => / ERROR /.test(l));
      assert.deepEqual(errors, []);
      // Puppet Server logs what an autosign policy writes to stderr at WARN, its stdout at DEBUG: espm
      // autosign says a signature on stdout and a refusal (with the reason) on stderr.
      const warnings = log.split("\n").filter((l) => / WARN /.test(l));
      assert.deepEqual(
        warnings.filter((l) => /ops-02\.ops\.test|auto-01\.site\.test/.test(l)),
        [],
        "a signature is no warning",
      );
      assert.ok(
        warnings.some((l) => /rejected certificate 'other-01\.site\.test'/.test(l)),
        `a refusal is a warning:\n${warnings.join("\n")}`,
      );
    });
  });

describe("the operator guide on the AIO packages' layout (LAYOUT=aio: the paths only, the packages are Debian's here)", function () {
  this.timeout(120_000);
  let dir: string;
  before(() => (dir = scratchDir("espm-aio")));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("reads and would change the AIO paths, checking auth.conf with the AIO jar", async () => {
    // /etc and /opt as overlays in a mount namespace of the test's own, holding the AIO tree: the
    // host's /etc and /opt never change. The AIO puppet and jar are Debian's, at the AIO paths.
    const tree = `set -e
for d in etc opt; do
  mkdir -p "$S/$d-upper" "$S/$d-work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$S/$d-upper,workdir=$S/$d-work" "/$d"
done
mkdir -p /etc/puppetlabs/puppet/ssl/certs /etc/puppetlabs/puppetserver/conf.d /opt/puppetlabs/bin \\
  /opt/puppetlabs/server/apps/puppetserver /opt/puppetlabs/server/data/puppetserver/reports
printf '[server]\\nautosign = false\\n' >/etc/puppetlabs/puppet/puppet.conf
cp /etc/puppet/puppetserver/conf.d/auth.conf /etc/puppetlabs/puppetserver/conf.d/auth.conf
ln -s /usr/bin/puppet /opt/puppetlabs/bin/puppet
ln -s /usr/share/puppetserver/puppetserver.jar /opt/puppetlabs/server/apps/puppetserver/puppet-server-release.jar
openssl req -x509 -newkey rsa:2048 -nodes -keyout /dev/null -subj /CN=ca -out /etc/puppetlabs/puppet/ssl/certs/ca.pem 2>/dev/null
exec sh "$GUIDE" --dry-run
`;
    const bin = join(dir, "bin");
    mkdirSync(bin);
    const { espm, setup } = installedAgent(dir);
    for (const [name, file] of [
      ["espm", espm],
      ["espm-setup", setup],
    ] as const)
      writeFileSync(join(bin, name), `#!/bin/sh\nexec ${process.execPath} ${file} "$@"\n`, { mode: 0o755 });
    const { stdout } = await run("unshare", ["--mount", "--propagation", "private", "sh", "-c", tree], {
      env: {
        ...process.env,
        S: dir,
        GUIDE: join(ROOT, "agent/scripts/operator-guide.sh"),
        LAYOUT: "aio",
        PATH: `${bin}:${process.env.PATH ?? ""}`,
        CERTNAME_PATTERN: "*.aio.test",
        ESPM_HOST: "puppet.aio.test",
        PUPPETSERVER_JAVA: findJava(),
      },
      timeout: 100_000,
    });
    assert.match(stdout, /--- \/etc\/puppetlabs\/puppetserver\/conf\.d\/auth\.conf\n/);
    assert.match(
      stdout,
      /\/etc\/puppetlabs\/puppetserver\/conf\.d\/auth\.conf with espm's rules: Puppet Server's own parser takes it/,
    );
    assert.match(stdout, /--- \/etc\/puppetlabs\/puppet\/puppet\.conf\n/);
    assert.match(
      stdout,
      /would: setfacl -R -m u:espm:rX -m d:u:espm:rX \/opt\/puppetlabs\/server\/data\/puppetserver\/reports/,
    );
    assert.match(stdout, /^\+ca_bundle=\/etc\/puppetlabs\/puppet\/ssl\/certs\/ca\.pem$/m);
    assert.match(stdout, /^\+reportdir=\/opt\/puppetlabs\/server\/data\/puppetserver\/reports$/m);
    assert.match(stdout, /^\+url=https:\/\/puppet\.aio\.test:8140$/m);
    assert.match(
      stdout,
      /would: espm enroll; \/opt\/puppetlabs\/bin\/puppetserver ca sign --certname espm; espm enroll/,
    );
    assert.match(stdout, /== dry run: nothing was changed/);
    assert.equal(existsSync("/etc/puppetlabs"), false, "the host's /etc is as it was");
  });
});
