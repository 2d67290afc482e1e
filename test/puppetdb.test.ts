/**
 * The PuppetDB suite: a whole decommission against real parts. Debian 12's PuppetDB 7.12 on its
 * own PostgreSQL 15 cluster, a Puppet Server 7 that sends it facts, catalogs and reports
 * (puppet-terminus-puppetdb), a real `puppet agent` first boot, espm configured by espm-setup
 * with --puppetdb-url, and the real Pulumi engine for up and destroy. Every test ends by checking
 * what is left at the CA, in espm and in PuppetDB.
 */
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EspmClient } from "espm-sdk/client";
import { EspmError } from "espm-sdk/errors";
import { firstRunProvider } from "pulumi-espm";
import type { FirstRunState } from "pulumi-espm/first-run";
import { startPostgres, residentMiB, type PostgresLab } from "../scripts/lab/postgres";
import { startPuppetDb, type PuppetDbLab } from "../scripts/lab/puppetdb";
import { startPuppetServer, type PuppetServerLab } from "../scripts/lab/puppetserver";
import { program } from "./programs/decommission";
import { engineDir, engineStack, requirePulumi } from "./helpers/engine";
import { ESPM_BIN, EspmProcess, freePort, puppetServerArgs, ROOT, scratchDir, setupEspm } from "./helpers/espm";
import { configuredProvider } from "./helpers/providers";
import { bootAgent, caState, crlSerials, signedUserdata } from "./helpers/world";

const DOMAIN = "lab.test";

interface PdbNode {
  certname: string;
  deactivated: string | null;
  facts_timestamp: string | null;
  report_timestamp: string | null;
}

describe("with a real PuppetDB: a whole decommission (PuppetDB 7.12, PostgreSQL 15, Puppet Server 7)", function () {
  this.timeout(240_000);
  let dir: string;
  let pg: PostgresLab;
  let lab: PuppetServerLab;
  let puppetdb: PuppetDbLab;
  let espm: EspmProcess;
  let client: EspmClient;

  const pdb = (method: "GET" | "POST", path: string, body?: unknown) => puppetdb.call(method, path, body);

  /** The node as PuppetDB knows it, deactivated or not; undefined when it has no row for it. */
  async function pdbNode(name: string): Promise<PdbNode | undefined> {
    const query = encodeURIComponent(JSON.stringify(["and", ["=", "certname", name], ["=", "node_state", "any"]]));
    return ((await pdb("GET", `/pdb/query/v4/nodes?query=${query}`)) as PdbNode[])[0];
  }

  /** What would be left of a name: at the CA, in espm, in PuppetDB. */
  async function leftOf(name: string) {
    return {
      ca: await caState(lab, name),
      espm: (await client.getNode(name)) === undefined ? "absent" : "live",
      puppetdb: await puppetdb.nodeState(name),
    };
  }

  before(async function () {
    this.timeout(600_000);
    requirePulumi(this);
    dir = scratchDir("espm-puppetdb");
    const espmDir = join(dir, "espm");
    mkdirSync(espmDir);
    let started = Date.now();
    pg = await startPostgres();
    const pgSeconds = (Date.now() - started) / 1000;
    const puppetdbPort = await freePort();
    started = Date.now();
    lab = await startPuppetServer({
      dir: join(dir, "puppetserver"),
      port: await freePort(),
      enc: `${process.execPath} ${ESPM_BIN} enc -c ${join(espmDir, "etc/espm.ini")}`,
      modules: [join(ROOT, "test/fixtures/modules/espm_file")],
      puppetdb: `https://localhost:${puppetdbPort}`,
    });
    const serverSeconds = (Date.now() - started) / 1000;
    puppetdb = await startPuppetDb({
      dir: join(dir, "puppetdb"),
      port: puppetdbPort,
      postgres: pg,
      server: lab,
      allow: ["espm"],
    });
    console.log(
      `      PostgreSQL ready in ${pgSeconds.toFixed(1)} s (${residentMiB(pg.pid())} MiB), Puppet Server in ${serverSeconds.toFixed(1)} s, ` +
        `PuppetDB in ${puppetdb.startSeconds.toFixed(1)} s (${puppetdb.memoryMiB} MiB)`,
    );
    // Runs come from PuppetDB: no reportdir, as espm-setup writes it when given --puppetdb-url.
    const setup = await setupEspm(
      [...puppetServerArgs(lab, { reports: false }), "--puppetdb-url", puppetdb.url],
      "groups:\n  files:\n    classes:\n      espm_file:\n        content: from PuppetDB's suite\n",
      espmDir,
    );
    espm = await EspmProcess.start(setup);
    client = new EspmClient({ url: espm.url, psk: setup.psk, certificate: setup.certificate });
  });

  after(async () => {
    await client?.close();
    await espm?.stop();
    await puppetdb?.stop();
    await lab?.stop();
    await pg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Registers a node, has espm sign a key made here, and writes its userdata (for tests that skip the engine). */
  async function provision(short: string) {
    const name = `${short}.${DOMAIN}`;
    await client.registerNode({
      name,
      groups: ["files"],
      classes: { espm_file: { path: join(dir, `agent-${short}/managed.txt`) } },
    });
    const file = join(dir, `${short}-userdata.sh`);
    const { issued } = await signedUserdata(client, name, { masterPort: lab.port, keyType: "ec-p256", file });
    return { name, file, issued };
  }

  const boot = (short: string, file: string) => bootAgent(join(dir, `agent-${short}`), file);

  it("reports PuppetDB healthy, and reads runs from it", async () => {
    const health = await client.health();
    assert.equal(health.backends?.puppetdb?.status, "ok", JSON.stringify(health.backends));
    assert.match(health.backends?.reports?.detail ?? "", /PuppetDB at https:\/\/localhost:/);
  });

  describe("through the Pulumi engine", () => {
    const name = `db-01.${DOMAIN}`;
    let stack: Awaited<ReturnType<typeof engineStack>>;
    let stackDir: string;
    let script: string;
    let serial: string;

    before(async () => {
      stackDir = engineDir("puppetdb");
      stack = await engineStack({
        dir: stackDir,
        projectName: "espm-puppetdb",
        stackName: "test",
        program,
        config: {
          "decommission:nodeName": { value: name },
          "decommission:masterPort": { value: String(lab.port) },
          "decommission:managedFile": { value: join(dir, "agent-db-01/managed.txt") },
          "espm:url": { value: espm.url },
          "espm:psk": { value: espm.setup.psk, secret: true },
          "espm:certificate": { value: espm.setup.certificate },
        },
      });
    });

    after(() => rmSync(stackDir, { recursive: true, force: true }));

    it("a first boot puts the node in PuppetDB with its facts and its report, and PuppetFirstRun reads the run there", async () => {
      const up = await stack.up();
      assert.equal(up.summary.result, "succeeded");
      script = join(dir, "db-01-userdata.sh");
      writeFileSync(script, up.outputs.bootstrapScript!.value as string, { mode: 0o700 });
      serial = up.outputs.serial!.value as string;
      const notBefore = new Date(Date.now() - 1000).toISOString();
      const run = await boot("db-01", script);
      assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}\n${run.log}`);
      assert.match(run.stdout, /agent exit 2/);

      const node = await pdbNode(name);
      assert.ok(node?.facts_timestamp && node.report_timestamp, JSON.stringify(node));
      assert.equal(node.deactivated, null);
      const facts = (await pdb("GET", `/pdb/query/v4/nodes/${name}/facts/kernel`)) as { value: string }[];
      assert.equal(facts[0]?.value, "Linux");
      const reports = (await pdb(
        "GET",
        `/pdb/query/v4/reports?query=${encodeURIComponent(JSON.stringify(["=", "certname", name]))}`,
      )) as { status: string }[];
      assert.deepEqual(
        reports.map((r) => r.status),
        ["changed"],
      );

      // No report directory in espm.ini: the run comes from PuppetDB's reports endpoint.
      const provider = await configuredProvider(firstRunProvider, {
        "espm:url": espm.url,
        "espm:psk": espm.setup.psk,
        "espm:certificate": espm.setup.certificate,
      });
      const inputs = { nodeName: name, instanceId: "i-db01", timeoutMinutes: 1, notBefore };
      const created = await provider.create((await provider.check!({}, inputs)).inputs);
      assert.equal((created.outs as FirstRunState).status, "changed");
      assert.ok((created.outs as FirstRunState).resources.changed >= 1);
    });

    it("pulumi destroy revokes at the CA, deactivates in PuppetDB and removes the node; the agent cannot reactivate it", async () => {
      const destroyed = await stack.destroy();
      assert.equal(destroyed.summary.result, "succeeded");
      assert.deepEqual(await leftOf(name), { ca: "absent", espm: "absent", puppetdb: "deactivated" });
      assert.ok((await crlSerials(lab)).includes(serial), "the serial is in the CRL");
      const deactivatedAt = (await pdbNode(name))!.deactivated;

      // The destroyed machine runs again: the CA refuses it, so nothing it sends reaches PuppetDB.
      const refused = await boot("db-01", script);
      assert.equal(refused.code, 1, refused.stdout);
      assert.equal((await pdbNode(name))?.deactivated, deactivatedAt, "still deactivated, as at destroy");

      // Deleting again is a no-op that succeeds (a destroy retried after a lost answer).
      await client.deleteNode(name);
      assert.deepEqual(await leftOf(name), { ca: "absent", espm: "absent", puppetdb: "deactivated" });
    });
  });

  it("refuses with 409, naming PuppetDB, a registration for a certname PuppetDB knows as active", async () => {
    const name = `known-01.${DOMAIN}`;
    // A machine espm never made, whose facts reached PuppetDB through its own Puppet Server.
    await pdb("POST", `/pdb/cmd/v1?command=replace_facts&version=5&certname=${name}&secondsToWaitForCompletion=10`, {
      certname: name,
      environment: "production",
      values: { kernel: "Linux" },
      producer_timestamp: new Date().toISOString(),
      producer: lab.certname,
    });
    assert.equal((await pdbNode(name))?.deactivated, null);
    await assert.rejects(
      client.registerNode({ name, groups: [] }),
      (err: EspmError) =>
        err.status === 409 && /PuppetDB .* knows known-01\.lab\.test as an active node/.test(err.message),
    );
    assert.deepEqual(await leftOf(name), { ca: "absent", espm: "absent", puppetdb: "active" });
  });

  it("deletes a node PuppetDB never saw without making a row for it", async () => {
    const name = `ghost-01.${DOMAIN}`;
    await client.registerNode({ name, groups: ["files"] });
    await client.deleteNode(name);
    assert.deepEqual(await leftOf(name), { ca: "absent", espm: "absent", puppetdb: "absent" });
  });

  it("fails a delete that PuppetDB did not carry out (the node's clock ahead), and the retry finishes it", async () => {
    const name = `skew-01.${DOMAIN}`;
    await client.registerNode({ name, groups: ["files"] });
    // The node's facts, stamped by a clock 5 s ahead: PuppetDB keeps a node active against any
    // deactivation older than its latest submission.
    const ahead = Date.now() + 5000;
    await pdb("POST", `/pdb/cmd/v1?command=replace_facts&version=5&certname=${name}&secondsToWaitForCompletion=10`, {
      certname: name,
      environment: "production",
      values: { kernel: "Linux" },
      producer_timestamp: new Date(ahead).toISOString(),
      producer: lab.certname,
    });
    await assert.rejects(client.deleteNode(name), (err: EspmError) => {
      assert.equal(err.status, 502);
      assert.match(err.message, /PuppetDB did not deactivate skew-01\.lab\.test: .*newer submission/);
      return true;
    });
    assert.equal((await client.getNode(name))?.name, name, "the node stays in espm for the retry");
    await new Promise((r) => setTimeout(r, ahead - Date.now() + 500));
    await client.deleteNode(name);
    assert.deepEqual(await leftOf(name), { ca: "absent", espm: "absent", puppetdb: "deactivated" });
  });

  it("fails a delete while PuppetDB is down, says so, keeps the node, and the retry finishes it", async () => {
    const node = await provision("db-02");
    const run = await boot("db-02", node.file);
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}\n${run.log}`);
    assert.equal((await pdbNode(node.name))?.deactivated, null);

    await puppetdb.stop();
    try {
      await assert.rejects(client.deleteNode(node.name), (err: EspmError) => {
        assert.equal(err.status, 503);
        assert.match(err.message, /PuppetDB at https:\/\/localhost:\d+ cannot be reached/);
        return true;
      });
      // The certificate is revoked already (that comes first); the node stays in espm for the retry.
      assert.equal(await caState(lab, node.name), "absent");
      assert.equal((await client.getNode(node.name))?.name, node.name);
    } finally {
      await puppetdb.start();
    }
    await client.deleteNode(node.name);
    assert.deepEqual(await leftOf(node.name), { ca: "absent", espm: "absent", puppetdb: "deactivated" });
  });
});
