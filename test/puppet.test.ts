/**
 * The first-boot suite: espm against a real Puppet Server (Debian's package, isolated, on loopback)
 * and a real `puppet agent`, on both Puppets CI runs: Debian 12's Puppet 7 on the host, and Debian
 * 13's Puppet 8 (server and agent) inside a Debian root (scripts/lab/debian-root.ts). The CA backend,
 * class discovery, the whole first boot through the bootstrap userdata, the run's report as
 * PuppetFirstRun reads it, a crash between submit and sign, then destroy and the agent refused.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Agent, request } from "undici";
import { EspmClient } from "espm-sdk/client";
import { EspmError } from "espm-sdk/errors";
import type { CreateNodeInput } from "espm-sdk/protocol";
import { createCsr, generateRsaKeyPair, type KeyType } from "espm-sdk/x509";
import { firstRunProvider } from "pulumi-espm";
import type { FirstRunState } from "pulumi-espm/first-run";
import { rootCommand } from "../scripts/lab/debian-root";
import { PUPPETS } from "./helpers/puppets";
import { espmDispatcher, startPuppetServer, type PuppetServerLab } from "../scripts/lab/puppetserver";
import { CaCutter } from "./helpers/ca-cutter";
import { ESPM_BIN, EspmProcess, freePort, puppetServerArgs, ROOT, scratchDir, setupEspm } from "./helpers/espm";
import { configuredProvider } from "./helpers/providers";
import { bootAgent, caState, crlSerials, serialsInCrl, signedUserdata } from "./helpers/world";

const DOMAIN = "lab.test";

function groupsYaml(path: string): string {
  return `groups:\n  files:\n    classes:\n      espm_file:\n        path: ${path}\n        content: from the group\n    parameters:\n      role: files\n`;
}

for (const puppet of PUPPETS)
  describe(`with a real Puppet Server: ${puppet.label}`, function () {
    this.timeout(240_000);
    let dir: string;
    let root: string | undefined;
    let lab: PuppetServerLab;
    let espm: EspmProcess;
    let client: EspmClient;

    before(async function () {
      this.timeout(600_000); // building the Puppet 8 root, once per cache
      root = await puppet.root();
      dir = scratchDir("espm-puppet");
      const espmDir = join(dir, "espm");
      mkdirSync(espmDir);
      const ini = join(espmDir, "etc/espm.ini");
      lab = await startPuppetServer({
        dir: join(dir, "puppetserver"),
        port: await freePort(),
        enc: `${process.execPath} ${ESPM_BIN} enc -c ${ini}`,
        modules: [join(ROOT, "test/fixtures/modules/espm_file")],
        // The ENC runs inside the root: it needs node, the checkout and espm's config where the host has them.
        root,
        binds: [dir, ROOT, process.execPath],
        bulkSign: true,
      });
      const setup = await setupEspm(
        [...puppetServerArgs(lab)],
        groupsYaml(join(dir, "agent-web-01/managed.txt")),
        espmDir,
      );
      espm = await EspmProcess.start(setup);
      client = new EspmClient({ url: espm.url, psk: setup.psk, certificate: setup.certificate });
    });

    after(async () => {
      await client?.close();
      await espm?.stop();
      await lab?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    /** Registers a node, has espm sign a key made here (as PuppetCertificate makes it), and renders its userdata. */
    async function provision(
      short: string,
      classification: Omit<CreateNodeInput, "name">,
      master = "localhost",
      keyType: KeyType = "rsa-2048",
      caFingerprintOnly = false,
    ) {
      const name = `${short}.${DOMAIN}`;
      await client.registerNode({ name, ...classification });
      const file = join(dir, `${short}-userdata.sh`);
      const { issued, userdata } = await signedUserdata(client, name, {
        masterPort: lab.port,
        master,
        keyType,
        extensions: { pp_role: "web" },
        caFingerprintOnly,
        file,
      });
      return { name, issued, userdata, file };
    }

    /**
     * Runs the userdata as cloud-init would, with Puppet's directories under the test's own folder:
     * on the host, or inside the root with that folder bound. `hosts` stands in for /etc/hosts.
     */
    const boot = (short: string, userdataFile: string, hosts?: string) => {
      const inRoot = (argv: string[]) =>
        rootCommand(root!, mkdtempSync(join(dir, "run-")), argv, { binds: [dir], hosts });
      const onHost = (argv: string[]) =>
        hosts ? ["unshare", "--mount", "sh", "-c", `mount --bind "$0" /etc/hosts && exec "$@"`, hosts, ...argv] : argv;
      return bootAgent(join(dir, `agent-${short}`), userdataFile, root ? inRoot : onHost);
    };

    const firstRuns = () =>
      configuredProvider(firstRunProvider, {
        "espm:url": espm.url,
        "espm:psk": espm.setup.psk,
        "espm:certificate": espm.setup.certificate,
      });

    it("reports Puppet Server's CA and classes healthy, and lists classes with their parameters", async () => {
      const health = await client.health();
      assert.equal(health.backends?.ca?.status, "ok");
      assert.equal(health.backends?.certnames?.status, "ok", "Puppet Server's names learned");
      const { classes } = await client.classes("production");
      const cls = classes.find((c) => c.name === "espm_file");
      assert.ok(cls, `espm_file among ${classes.map((c) => c.name)}`);
      assert.deepEqual(
        cls.parameters.map((p) => [p.name, p.type]),
        [
          ["path", "String"],
          ["content", "String"],
        ],
      );
    });

    it("asks Puppet Server once for an environment's classes however many callers arrive at once", async () => {
      // A new environment, so espm has nothing cached for it; the module makes Puppet Server parse something.
      const environment = join(lab.environmentDir, "..", "coldenv");
      mkdirSync(join(environment, "manifests"), { recursive: true });
      cpSync(join(ROOT, "test/fixtures/modules/espm_file"), join(environment, "modules/espm_file"), {
        recursive: true,
      });
      const accessLog = () => readFileSync(join(lab.dir, "log/puppetserver-access.log"), "utf8");
      const asked = () => accessLog().match(/environment_classes\?environment=coldenv/g)?.length ?? 0;
      // Twenty connections open first, so that the twenty requests arrive together, not one handshake apart.
      await Promise.all(Array.from({ length: 20 }, () => espm.raw("GET", "/v1/health")));
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => espm.raw("GET", "/v1/classes?environment=coldenv")),
      );
      assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([200]));
      assert.ok((answers[0]!.json.classes as Array<{ name: string }>).some((c) => c.name === "espm_file"));
      await new Promise((r) => setTimeout(r, 500)); // the access log is written after the answer
      assert.equal(asked(), 1, "one request in flight, shared by all twenty");
    });

    it("boots a node end to end: signed ahead, classified by espm enc, changed, then unchanged", async () => {
      const node = await provision("web-01", {
        groups: ["files"],
        classes: { espm_file: { content: "hello from the ENC" } },
      });
      // With Puppet's two-certificate CA chain and the key, the plain script is just over 16 KB, so it goes gzipped.
      assert.ok(node.userdata.bytes < 16 * 1024);
      console.log(
        `      userdata: ${node.userdata.bytes} bytes${node.userdata.gzipped ? ` gzipped (${node.userdata.script.length} plain)` : ""}`,
      );
      const booted = new Date(Date.now() - 1000).toISOString();
      const first = await boot("web-01", node.file);
      assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}\n${first.log}`);
      assert.match(first.stdout, /agent exit 2/);
      assert.equal(readFileSync(join(dir, "agent-web-01/managed.txt"), "utf8"), "hello from the ENC\n");
      const conf = readFileSync(join(dir, "agent-web-01/conf/puppet.conf"), "utf8");
      assert.match(conf, /certname = web-01\.lab\.test/);
      assert.match(conf, /server = localhost/);
      const key = join(dir, "agent-web-01/ssl/private_keys/web-01.lab.test.pem");
      assert.equal(statSync(key).mode & 0o777, 0o640);

      // PuppetFirstRun reads the run from the report Puppet Server stored.
      const inputs = { nodeName: node.name, instanceId: "i-web01", timeoutMinutes: 1, notBefore: booted };
      const provider = await firstRuns();
      const created = await provider.create((await provider.check!({}, inputs)).inputs);
      const state = created.outs as FirstRunState;
      assert.equal(state.status, "changed");
      assert.ok(state.resources.changed >= 1, JSON.stringify(state.resources));

      const second = await boot("web-01", node.file);
      assert.equal(second.code, 0);
      assert.match(second.stdout, /agent exit 0/);
      // Puppet's store processor names reports by the minute: a second run within it replaces the first.
      assert.equal((await client.nodeRuns(node.name, 5))?.runs[0]?.status, "unchanged");
    });

    it("applies a groups.yaml edit on the next run", async () => {
      writeFileSync(join(espm.setup.configDir, "groups.yaml"), groupsYaml(join(dir, "agent-web-01/moved.txt")));
      const run = await boot("web-01", join(dir, "web-01-userdata.sh"));
      assert.match(run.stdout, /agent exit 2/);
      assert.equal(readFileSync(join(dir, "agent-web-01/moved.txt"), "utf8"), "hello from the ENC\n");
    });

    it("holds back a groups.yaml that names a class the environment lacks or a parameter of the wrong type, keeping the last good", async () => {
      const file = join(espm.setup.configDir, "groups.yaml");
      const good = readFileSync(file, "utf8");
      const health = async () => (await client.health()).backends?.groups;
      const until = async (wanted: string) => {
        for (let i = 0; i < 40; i++) {
          const groups = await health();
          if (groups?.status === wanted) return groups;
          await new Promise((r) => setTimeout(r, 250));
        }
        throw new Error(`groups never became ${wanted}: ${JSON.stringify(await health())}`);
      };
      try {
        writeFileSync(
          file,
          `${good}  typo:\n    classes:\n      espm_fiel:\n        content: x\n  typed:\n    classes:\n      espm_file:\n        path: 42\n        content: y\n`,
        );
        const held = await until("down");
        assert.match(held.detail ?? "", /group typo sets class espm_fiel, which environment production does not have/);
        assert.match(held.detail ?? "", /group typed sets espm_file::path to 42; Puppet expects String/);
        const served = await client.groupsIfChanged();
        assert.deepEqual(
          served?.value.groups.map((g) => g.name),
          ["files"],
          "the last good groups are still served and published",
        );
        assert.ok(espm.logLines.some((l) => l.includes("the groups file names classes or parameters")));
      } finally {
        writeFileSync(file, good);
      }
      await until("ok");
    });

    it("after destroy, the agent is refused and the serial is in the CRL", async () => {
      const status = await client.certificateStatus("web-01.lab.test");
      assert.equal(status?.state, "signed");
      await client.deleteNode("web-01.lab.test");
      await client.revokeCertificate("web-01.lab.test");
      await client.revokeCertificate("web-01.lab.test");
      assert.equal((await client.certificateStatus("web-01.lab.test"))?.state, "revoked");
      assert.ok((await crlSerials(lab)).includes(status.serial!), "revoked serial in the CRL");
      // espm keeps the CRL it hands out for a minute, but its own revocation refreshes it at once.
      const next = await provision("web-05", { groups: [] });
      assert.ok(serialsInCrl(next.issued.crl).includes(status.serial!), "the next node's CRL has the revocation");
      const refused = await boot("web-01", join(dir, "web-01-userdata.sh"));
      assert.equal(refused.code, 1, refused.stdout);
      assert.match(refused.log, /certificate unknown|certificate revoked|SSL/i);
    });

    it("reaches a master given as an IP through the one hosts line the script writes", async () => {
      const node = await provision(
        "web-02",
        {
          groups: ["files"],
          classes: { espm_file: { path: join(dir, "agent-web-02/ip.txt"), content: "via puppet" } },
        },
        "127.0.0.1",
      );
      const hosts = join(dir, "hosts");
      writeFileSync(hosts, "127.0.0.1 localhost\n10.9.9.9 puppet puppetmaster # espm bootstrap\n");
      const first = await boot("web-02", node.file, hosts);
      assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}\n${first.log}`);
      assert.equal(readFileSync(join(dir, "agent-web-02/ip.txt"), "utf8"), "via puppet\n");
      const again = await boot("web-02", node.file, hosts);
      assert.equal(again.code, 0);
      const lines = readFileSync(hosts, "utf8")
        .split("\n")
        .filter((l) => /\spuppet\s+puppetmaster/.test(l));
      assert.deepEqual(lines, ["127.0.0.1 puppet puppetmaster # espm bootstrap"]);
      assert.match(readFileSync(join(dir, "agent-web-02/conf/puppet.conf"), "utf8"), /server = puppet\n/);
      assert.ok(
        !readFileSync("/etc/hosts", "utf8").includes("puppetmaster # espm"),
        "the real /etc/hosts is untouched",
      );
    });

    it("boots a node whose key is ECDSA P-256 (keyType ec-p256) from the CA bundle's fingerprint alone: exit 2, classified by espm", async () => {
      const path = join(dir, "agent-ec-01/ec.txt");
      const node = await provision(
        "ec-01",
        { classes: { espm_file: { path, content: "booted with an EC key" } } },
        "localhost",
        "ec-p256",
        true,
      );
      assert.equal(new X509Certificate(node.issued.certificate).publicKey.asymmetricKeyType, "ec");
      assert.ok(!node.userdata.script.includes("ESPM_CA_BUNDLE"), "no CA bundle in the userdata");
      assert.match(node.userdata.script, /^ESPM_CA_FINGERPRINT=[0-9a-f]{64}$/m);
      const run = await boot("ec-01", node.file);
      assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}\n${run.log}`);
      assert.match(run.stdout, /agent exit 2/);
      assert.equal(readFileSync(path, "utf8"), "booted with an EC key\n");
      // This Puppet downloaded the bundle and kept it only because its digest matched.
      const localCa = readFileSync(join(dir, "agent-ec-01/ssl/certs/ca.pem"), "utf8");
      assert.equal(localCa, node.issued.caCertificate);
      await client.deleteNode(node.name);
      await client.revokeCertificate(node.name);
      assert.equal(await caState(lab, node.name), "absent");
    });

    it("fails the bootstrap with exit 1 and the server's message for a class that does not exist", async () => {
      const node = await provision("web-03", { classes: { no_such_class: {} } });
      const started = new Date(Date.now() - 1000).toISOString();
      const run = await boot("web-03", node.file);
      assert.equal(run.code, 1);
      assert.match(run.log + run.stderr, /Could not find class (::)?no_such_class for web-03/);
      const provider = await firstRuns();
      const inputs = { nodeName: node.name, instanceId: "i-web03", timeoutMinutes: 1, notBefore: started };
      await assert.rejects(
        provider.create((await provider.check!({}, inputs)).inputs),
        /first run on web-03\.lab\.test .* failed:\n[\s\S]*Could not find class (::)?no_such_class for web-03/,
      );
    });

    it("refuses with 409 a name the CA holds for someone else, and will not revoke it", async () => {
      const name = `stranger.${DOMAIN}`;
      const { privateKeyPem } = generateRsaKeyPair(2048);
      // An agent that bootstrapped on its own: its CSR goes straight to Puppet Server.
      const res = await request(`${lab.url}/puppet-ca/v1/certificate_request/${name}`, {
        method: "PUT",
        body: createCsr(name, privateKeyPem),
        headers: { "content-type": "text/plain" },
        dispatcher: new Agent({ connect: { ca: readFileSync(lab.caBundle) } }),
      });
      assert.equal(res.statusCode, 200);
      await res.body.text();
      await assert.rejects(
        client.registerNode({ name, groups: [] }),
        (err: EspmError) => err.status === 409 && /pending certificate request/.test(err.message),
      );
      // Never registered (the create was refused), so never signed: the gate refuses before the CA.
      await assert.rejects(
        client.signCertificate(name, createCsr(name, privateKeyPem)),
        (err: EspmError) => err.status === 422 && /no node/.test(err.message),
      );
      await assert.rejects(client.revokeCertificate(name), (err: EspmError) => err.status === 404);
    });

    it("cleans its own request left pending by a CA cut off between submit and sign, then signs", async () => {
      const cutter = await CaCutter.start(lab);
      const viaCutter = await EspmProcess.start(
        await setupEspm(cutter.espmSetupArgs(dir), "groups: {}\n", join(dir, "espm-cut")),
      );
      const cut = new EspmClient({
        url: viaCutter.url,
        psk: viaCutter.setup.psk,
        certificate: viaCutter.setup.certificate,
      });
      const name = `stuck-01.${DOMAIN}`;
      try {
        await cut.registerNode({ name, groups: [] });
        const { privateKeyPem } = generateRsaKeyPair(2048);
        cutter.cutAfterSubmit();
        await assert.rejects(
          cut.signCertificate(name, createCsr(name, privateKeyPem)),
          (err: EspmError) => err.status === 502,
        );
        assert.equal(await caState(lab, name), "requested", "the CSR is pending at the real CA");
        cutter.restore();
        const issued = await cut.signCertificate(name, createCsr(name, privateKeyPem));
        assert.match(issued.certificate, /BEGIN CERTIFICATE/);
        assert.equal(await caState(lab, name), "signed");
        await cut.deleteNode(name);
        await cut.revokeCertificate(name);
        assert.equal(await caState(lab, name), "absent", "nothing left at the CA");
        assert.equal(await cut.getNode(name), undefined, "nothing left in espm");
      } finally {
        await cut.close();
        await viaCutter.stop();
        cutter.close();
      }
    });

    it("signs through bulk sign where the server has it (Puppet 8), batching what arrives together, one by one where not, and never through sign/all", async () => {
      const accessLog = () => readFileSync(join(lab.dir, "log/puppetserver-access.log"), "utf8");
      const before = accessLog().length;
      const names = Array.from({ length: 8 }, (_, i) => `batch-${i}.${DOMAIN}`);
      const keys = names.map(() => generateRsaKeyPair(2048).privateKeyPem);
      await Promise.all(names.map((name) => client.registerNode({ name, groups: [] })));
      const issued = await Promise.all(names.map((name, i) => client.signCertificate(name, createCsr(name, keys[i]!))));
      assert.deepEqual(
        issued.map((c) => c.certname),
        names,
      );
      await new Promise((r) => setTimeout(r, 500)); // the access log is written after the answer
      const log = accessLog().slice(before);
      const bulk = log.match(/"POST \/puppet-ca\/v1\/sign HTTP/g)?.length ?? 0;
      const single = log.match(/"PUT \/puppet-ca\/v1\/certificate_status\/batch-/g)?.length ?? 0;
      const detail = (await client.health()).backends?.ca?.detail;
      // The CA certificate and CRL come from espm's cache: at most one fetch each for eight signs.
      assert.ok((log.match(/"GET \/puppet-ca\/v1\/certificate_revocation_list\/ca /g)?.length ?? 0) <= 1, log);
      assert.ok((log.match(/"GET \/puppet-ca\/v1\/certificate\/ca /g)?.length ?? 0) <= 1, log);
      if (lab.puppetVersion >= 8) {
        assert.equal(detail, "signing bulk");
        // Every sign through the bulk endpoint. How many share a request depends on how close together
        // they reach the 5 ms batching window, which a loaded machine spreads out: said, not asserted.
        assert.ok(bulk >= 1 && bulk <= names.length, `${bulk} bulk requests for ${names.length} signs`);
        assert.equal(single, 0);
        console.log(`      ${names.length} concurrent signs in ${bulk} bulk requests`);
      } else {
        assert.equal(detail, "signing one by one");
        assert.equal(single, names.length);
      }
      // espm's certificate may sign only through the exact path: sign/all stays the CA CLI's.
      const { privateKeyPem } = generateRsaKeyPair(2048);
      const asEspm = espmDispatcher(lab);
      const stranger = `pending.${DOMAIN}`;
      await (
        await request(`${lab.url}/puppet-ca/v1/certificate_request/${stranger}`, {
          method: "PUT",
          body: createCsr(stranger, privateKeyPem),
          headers: { "content-type": "text/plain" },
          dispatcher: asEspm,
        })
      ).body.text();
      const all = await request(`${lab.url}/puppet-ca/v1/sign/all`, {
        method: "POST",
        body: "{}",
        headers: { "content-type": "application/json" },
        dispatcher: asEspm,
      });
      await all.body.text();
      await asEspm.close();
      assert.ok([403, 404].includes(all.statusCode), `sign/all answered ${all.statusCode}`);
      assert.equal(await caState(lab, stranger), "requested", "nothing signed through sign/all");

      for (const name of names) {
        await client.deleteNode(name);
        await client.revokeCertificate(name);
        assert.equal(await caState(lab, name), "absent");
      }
    });
  });
