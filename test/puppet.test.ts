/**
 * espm against a real Puppet Server (Debian's package, isolated, on loopback) and a real
 * `puppet agent`: the CA backend, class discovery, and the whole first boot through the bootstrap
 * userdata, then destroy and the agent refused.
 */
import assert from "node:assert/strict";
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Agent, request } from "undici";
import { EspmClient } from "../sdk/client";
import { EspmError } from "../sdk/errors";
import type { CreateNodeInput } from "../sdk/protocol";
import { createCsr, generateRsaKeyPair } from "../sdk/x509";
import { renderUserData } from "../provider/userdata";
import { startPuppetServer, type PuppetServerLab } from "../scripts/lab/puppetserver";
import { ESPM_BIN, EspmProcess, freePort, puppetServerArgs, ROOT, scratchDir, setupEspm } from "./helpers/espm";
import { bootAgent, crlSerials } from "./helpers/world";

const DOMAIN = "lab.test";

function groupsYaml(path: string): string {
  return `groups:\n  files:\n    classes:\n      espm_file:\n        path: ${path}\n        content: from the group\n    parameters:\n      role: files\n`;
}

describe("with a real Puppet Server", function () {
  this.timeout(240_000);
  let dir: string;
  let lab: PuppetServerLab;
  let espm: EspmProcess;
  let client: EspmClient;

  before(async function () {
    dir = scratchDir("espm-puppet");
    const espmDir = join(dir, "espm");
    mkdirSync(espmDir);
    const ini = join(espmDir, "etc/espm.ini");
    lab = await startPuppetServer({
      dir: join(dir, "puppetserver"),
      port: await freePort(),
      enc: `${process.execPath} ${ESPM_BIN} enc -c ${ini}`,
      modules: [join(ROOT, "test/fixtures/modules/espm_file")],
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

  /** Registers a node, has espm sign a key made here, and renders its userdata. */
  async function provision(short: string, classification: Omit<CreateNodeInput, "name">, master = "localhost") {
    const name = `${short}.${DOMAIN}`;
    await client.registerNode({ name, ...classification });
    const { privateKeyPem } = generateRsaKeyPair(2048);
    const issued = await client.signCertificate(name, createCsr(name, privateKeyPem, { pp_role: "web" }));
    const userdata = renderUserData({
      nodeName: name,
      master,
      masterPort: lab.port,
      certificatePem: issued.certificate,
      privateKeyPem,
      caCertificatePem: issued.caCertificate,
    });
    const file = join(dir, `${short}-userdata.sh`);
    writeFileSync(file, userdata.script, { mode: 0o700 });
    return { name, issued, userdata, file };
  }

  /** Runs the userdata as cloud-init would, with Puppet's directories under the test's own folder. */
  const boot = (short: string, userdataFile: string, wrap?: (argv: string[]) => string[]) =>
    bootAgent(join(dir, `agent-${short}`), userdataFile, wrap);

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
    cpSync(join(ROOT, "test/fixtures/modules/espm_file"), join(environment, "modules/espm_file"), { recursive: true });
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
    const first = await boot("web-01", node.file);
    assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}\n${first.log}`);
    assert.match(first.stdout, /agent exit 2/);
    assert.equal(readFileSync(join(dir, "agent-web-01/managed.txt"), "utf8"), "hello from the ENC\n");
    const conf = readFileSync(join(dir, "agent-web-01/conf/puppet.conf"), "utf8");
    assert.match(conf, /certname = web-01\.lab\.test/);
    assert.match(conf, /server = localhost/);
    const key = join(dir, "agent-web-01/ssl/private_keys/web-01.lab.test.pem");
    assert.equal((await import("node:fs")).statSync(key).mode & 0o777, 0o640);

    const second = await boot("web-01", node.file);
    assert.equal(second.code, 0);
    assert.match(second.stdout, /agent exit 0/);
  });

  it("applies a groups.yaml edit on the next run", async () => {
    writeFileSync(join(espm.setup.configDir, "groups.yaml"), groupsYaml(join(dir, "agent-web-01/moved.txt")));
    const run = await boot("web-01", join(dir, "web-01-userdata.sh"));
    assert.match(run.stdout, /agent exit 2/);
    assert.equal(readFileSync(join(dir, "agent-web-01/moved.txt"), "utf8"), "hello from the ENC\n");
  });

  it("after destroy, the agent is refused and the serial is in the CRL", async () => {
    const status = await client.certificateStatus("web-01.lab.test");
    assert.equal(status?.state, "signed");
    await client.deleteNode("web-01.lab.test");
    await client.revokeCertificate("web-01.lab.test");
    await client.revokeCertificate("web-01.lab.test");
    assert.equal((await client.certificateStatus("web-01.lab.test"))?.state, "revoked");
    assert.ok((await crlSerials(lab)).includes(status.serial!), "revoked serial in the CRL");
    const refused = await boot("web-01", join(dir, "web-01-userdata.sh"));
    assert.equal(refused.code, 1, refused.stdout);
    assert.match(refused.log, /certificate unknown|certificate revoked|SSL/i);
  });

  it("reaches a master given as an IP through the one hosts line the script writes", async () => {
    const node = await provision(
      "web-02",
      { groups: ["files"], classes: { espm_file: { path: join(dir, "agent-web-02/ip.txt"), content: "via puppet" } } },
      "127.0.0.1",
    );
    const hosts = join(dir, "hosts");
    writeFileSync(hosts, "127.0.0.1 localhost\n10.9.9.9 puppet puppetmaster # espm bootstrap\n");
    const inNamespace = (argv: string[]) => [
      "unshare",
      "--mount",
      "sh",
      "-c",
      `mount --bind "$0" /etc/hosts && exec "$@"`,
      hosts,
      ...argv,
    ];
    const first = await boot("web-02", node.file, inNamespace);
    assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}\n${first.log}`);
    assert.equal(readFileSync(join(dir, "agent-web-02/ip.txt"), "utf8"), "via puppet\n");
    const again = await boot("web-02", node.file, inNamespace);
    assert.equal(again.code, 0);
    const lines = readFileSync(hosts, "utf8")
      .split("\n")
      .filter((l) => /\spuppet\s+puppetmaster/.test(l));
    assert.deepEqual(lines, ["127.0.0.1 puppet puppetmaster # espm bootstrap"]);
    assert.match(readFileSync(join(dir, "agent-web-02/conf/puppet.conf"), "utf8"), /server = puppet\n/);
    assert.ok(!readFileSync("/etc/hosts", "utf8").includes("puppetmaster # espm"), "the real /etc/hosts is untouched");
  });

  it("fails the bootstrap with exit 1 and the server's message for a class that does not exist", async () => {
    const node = await provision("web-03", { classes: { no_such_class: {} } });
    const run = await boot("web-03", node.file);
    assert.equal(run.code, 1);
    assert.match(run.log + run.stderr, /Could not find class (::)?no_such_class for web-03/);
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
    await assert.rejects(
      client.signCertificate(name, createCsr(name, privateKeyPem)),
      (err: EspmError) => err.status === 409,
    );
    await assert.rejects(client.revokeCertificate(name), (err: EspmError) => err.status === 404);
  });
});
