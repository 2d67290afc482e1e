/**
 * espm acts only on names it registered, as an attacker holding the PSK and an operator who
 * narrows the policy meet it, against a real espm, the real Puppet Server and the real `espm enc`:
 * a registration's end is its certificate's end (without PuppetDB too), a row the policy refuses
 * now is neither classified nor changeable, runs of a reused name's earlier holder stay hidden,
 * a deleted node keeps no classification, and quotas bound what a PSK holder stores.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { parse } from "yaml";
import type { EspmClient } from "espm-sdk/client";
import { ESPM_BIN, EspmProcess, puppetServerArgs, run, scratchDir, setupEspm } from "./helpers/espm";
import { crlSerials, sharedWorld, signedUserdata, type World } from "./helpers/world";

const DOMAIN = "lab.test";
/** A domain of the lab's patterns that the operator drops from espm's. */
const NARROWED = "failures.test";

/** What `espm enc` prints for a name, with the given espm.ini. */
async function enc(ini: string, certname: string): Promise<{ classes: Record<string, unknown> }> {
  const { stdout } = await run(process.execPath, [ESPM_BIN, "enc", "-c", ini, certname]);
  return parse(stdout) as { classes: Record<string, unknown> };
}

describe("one gate: espm acts only on names it registered", function () {
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

  describe("a registration's end is its certificate's end, without PuppetDB", () => {
    const name = `ended-01.${DOMAIN}`;
    let oldUserdata: string;
    let serial: string;
    const managed = () => join(world.dir, "agent-ended-01/managed.txt");

    it("revokes the certificate when the registration alone is deleted: serial in the CRL, the agent refused", async () => {
      await client.registerNode({
        name,
        groups: ["base"],
        classes: { espm_file: { path: managed(), content: "first owner" } },
      });
      const file = join(world.dir, "ended-01-userdata.sh");
      const { issued } = await signedUserdata(client, name, {
        masterPort: world.lab.port,
        file,
      });
      serial = issued.serial;
      oldUserdata = readFileSync(file, "utf8");
      const first = await world.boot("ended-01", oldUserdata);
      assert.equal(first.code, 0, `${first.stdout}\n${first.log}`);
      assert.equal(readFileSync(managed(), "utf8"), "first owner\n");

      // Only the registration: no DELETE /v1/certificates, no PuppetDB.
      await client.deleteNode(name);
      assert.equal((await client.certificateStatus(name))?.state, "revoked");
      assert.ok((await crlSerials(world.lab)).includes(serial), "the serial is in the CRL");
      const refused = await world.boot("ended-01", oldUserdata);
      assert.notEqual(refused.code, 0, refused.stdout);
      assert.match(refused.log, /certificate revoked|certificate unknown|SSL/i);
    });

    it("serves the new owner's classification to no certificate signed before the name was registered again", async () => {
      await client.registerNode({
        name,
        groups: ["base"],
        classes: { espm_file: { path: managed(), content: "NEW-OWNER-secret" } },
      });
      const again = await world.boot("ended-01", oldUserdata);
      assert.notEqual(again.code, 0, again.stdout);
      assert.equal(readFileSync(managed(), "utf8"), "first owner\n");
      await client.deleteNode(name);
    });

    it("keeps a deleted node's name and times, not its classification", () => {
      const db = new Database(join(world.setup.configDir, "espm.db"), { readonly: true });
      try {
        const rows = db
          .prepare("SELECT classes, parameters, groups, created_at, deleted_at FROM nodes WHERE name = ?")
          .all(name) as Array<{ classes: string; parameters: string; groups: string; deleted_at: string | null }>;
        assert.equal(rows.length, 2, "two registrations, both ended");
        for (const row of rows) {
          assert.ok(row.deleted_at);
          assert.deepEqual([row.classes, row.parameters, row.groups], ["{}", "{}", "[]"]);
        }
      } finally {
        db.close();
      }
    });
  });

  describe("runs", () => {
    it("shows no run of a reused name's earlier holder, only those since this registration", async () => {
      const name = `reused-01.${DOMAIN}`;
      const dir = join(world.lab.reportDir, name);
      mkdirSync(dir, { recursive: true });
      const report = (time: Date) =>
        `--- !ruby/object:Puppet::Transaction::Report\nhost: ${name}\ntime: '${time.toISOString()}'\nstatus: changed\nlogs: []\n`;
      const file = (time: Date) => join(dir, `${time.toISOString().replace(/[-T:]/g, "").slice(0, 12)}.yaml`);
      // The earlier holder's run, an hour before this registration.
      const earlier = new Date(Date.now() - 3600_000);
      writeFileSync(file(earlier), report(earlier));
      await client.registerNode({ name, groups: [] });
      assert.deepEqual((await client.nodeRuns(name, 10))?.runs, [], "the earlier holder's run is not shown");
      const later = new Date(Math.ceil(Date.now() / 60_000) * 60_000 + 60_000);
      writeFileSync(file(later), report(later));
      assert.deepEqual(
        (await client.nodeRuns(name, 10))?.runs.map((r) => r.time),
        [later.toISOString()],
      );
      await client.deleteNode(name);
    });
  });

  describe("a row the certname policy refuses now", () => {
    let espm: EspmProcess;
    let dir: string;
    const raw = (method: "GET" | "PUT" | "DELETE", path: string, body?: unknown) =>
      espm.raw(method, path, {
        body: body === undefined ? undefined : JSON.stringify(body),
        headers: body === undefined ? {} : { "content-type": "application/json" },
      });

    before(async () => {
      dir = scratchDir("espm-narrowed");
      const setup = await setupEspm(
        [
          ...puppetServerArgs(world.lab),
          "--certname-pattern",
          "*.example.test",
          "--certname-pattern",
          `*.${DOMAIN}`,
          "--certname-pattern",
          `*.${NARROWED}`,
        ],
        "groups:\n  base:\n    parameters:\n      managed_by: espm\n",
        dir,
      );
      espm = await EspmProcess.start(setup);
      const created = await espm.raw("POST", "/v1/nodes", {
        body: JSON.stringify({ name: `narrow-01.${NARROWED}`, classes: { espm_file: { content: "x" } } }),
        headers: { "content-type": "application/json" },
      });
      assert.equal(created.status, 201, created.text);
      assert.deepEqual(Object.keys((await enc(setup.ini, `narrow-01.${NARROWED}`)).classes), ["espm_file"]);
      await espm.stop();
      // A store from before the policy: a row for the master's own certname.
      const db = new Database(join(setup.configDir, "espm.db"));
      const at = new Date().toISOString();
      db.prepare(
        `INSERT INTO nodes (name, environment, groups, classes, parameters, created_at, updated_at)
         VALUES (?, 'production', '[]', ?, '{}', ?, ?)`,
      ).run(world.lab.certname, JSON.stringify({ espm_file: { path: "/etc/cron.d/owned" } }), at, at);
      db.close();
      // The operator narrows the patterns: *.failures.test is no longer espm's.
      writeFileSync(setup.ini, readFileSync(setup.ini, "utf8").replace(`allow[]=*.${NARROWED}\n`, ""));
      assert.doesNotMatch(readFileSync(setup.ini, "utf8"), /failures\.test/);
      espm = await EspmProcess.start(setup);
    });

    after(async () => {
      await espm?.stop();
    });

    it("is not classified by espm enc: the master's certname and a name outside the narrowed patterns", async () => {
      for (const name of [world.lab.certname, `narrow-01.${NARROWED}`]) {
        assert.deepEqual((await enc(espm.setup.ini, name)).classes, {}, name);
      }
    });

    it("cannot be changed, signed or enrolled (403 with the rule), but can be read and deleted", async () => {
      for (const [name, rule] of [
        [world.lab.certname, /server-names/],
        [`narrow-01.${NARROWED}`, /patterns/],
      ] as const) {
        const put = await raw("PUT", `/v1/nodes/${name}`, { classes: { espm_file: {} } });
        assert.equal(put.status, 403, put.text);
        assert.match(put.json.error!.message, rule);
        const enrollment = await espm.raw("POST", `/v1/enrollments/${name}`, {
          body: "{}",
          headers: { "content-type": "application/json" },
        });
        assert.equal(enrollment.status, 403, enrollment.text);
        assert.equal((await raw("GET", `/v1/nodes/${name}`)).status, 200);
      }
    });

    it("is named in health and in the log, and goes with a delete", async () => {
      const health = await raw("GET", "/v1/health");
      const detail = (health.json as { backends: { certnames: { detail: string } } }).backends.certnames.detail;
      assert.match(detail, /2 registrations outside the policy/);
      assert.ok(detail.includes(`narrow-01.${NARROWED}`) && detail.includes(world.lab.certname), detail);
      assert.ok(
        espm.logLines.some((l) => l.includes("registrations outside the certname policy") && l.includes("narrow-01")),
        "the log names them",
      );
      for (const name of [world.lab.certname, `narrow-01.${NARROWED}`])
        assert.equal((await raw("DELETE", `/v1/nodes/${name}`)).status, 204);
      assert.equal((await raw("GET", `/v1/nodes/narrow-01.${NARROWED}`)).status, 404);
    });
  });

  it("has Puppet Server deny espm nothing it asked in all of the above: no ERROR for espm in its log", () => {
    // Puppet 7 has no bulk sign: an espm that tried it (as it once did at every start) was denied by
    // "puppetlabs deny all", an ERROR in the operator's log. Without bulk_sign espm never tries.
    const log = readFileSync(join(world.lab.dir, "log/puppetserver.log"), "utf8");
    const denied = log.split("\n").filter((l) => /ERROR/.test(l) && /Forbidden request: espm\b/.test(l));
    assert.deepEqual(denied, []);
  });

  describe("quotas", () => {
    let espm: EspmProcess;

    before(async () => {
      const setup = await setupEspm([...puppetServerArgs(world.lab)], "groups: {}\n", scratchDir("espm-quotas"));
      writeFileSync(
        setup.ini,
        `${readFileSync(setup.ini, "utf8")}\n[limits]\nnodes = 3\nclassification_bytes = 2048\nenrollments = 1\n`,
      );
      espm = await EspmProcess.start(setup);
    });

    after(async () => {
      await espm?.stop();
    });

    const post = (path: string, body: unknown) =>
      espm.raw("POST", path, { body: JSON.stringify(body), headers: { "content-type": "application/json" } });

    it("refuses a node over the live-node limit (429) and a classification over its size (413), naming the setting", async () => {
      for (let i = 0; i < 3; i++) assert.equal((await post("/v1/nodes", { name: `q-${i}.example.test` })).status, 201);
      const over = await post("/v1/nodes", { name: "q-3.example.test" });
      assert.equal(over.status, 429, over.text);
      assert.match(over.json.error!.message, /\[limits\] nodes/);
      assert.equal((await espm.raw("DELETE", "/v1/nodes/q-2.example.test")).status, 204);
      assert.equal((await post("/v1/nodes", { name: "q-3.example.test" })).status, 201, "a delete frees a place");

      const big = { motd: { message: "x".repeat(3000) } };
      const tooBig = await espm.raw("PUT", "/v1/nodes/q-3.example.test", {
        body: JSON.stringify({ classes: big }),
        headers: { "content-type": "application/json" },
      });
      assert.equal(tooBig.status, 413, tooBig.text);
      assert.match(tooBig.json.error!.message, /\[limits\] classification_bytes/);
      assert.equal((await espm.raw("DELETE", "/v1/nodes/q-3.example.test")).status, 204);
      const bigCreate = await post("/v1/nodes", { name: "q-4.example.test", parameters: { p: "y".repeat(3000) } });
      assert.equal(bigCreate.status, 413, bigCreate.text);
    });

    it("refuses an enrollment over the outstanding-token limit (429), and a delete frees it", async () => {
      const first = await post("/v1/enrollments/q-0.example.test", {});
      assert.equal(first.status, 201, first.text);
      const second = await post("/v1/enrollments/q-1.example.test", {});
      assert.equal(second.status, 429, second.text);
      assert.match(second.json.error!.message, /\[limits\] enrollments/);
      // A new token for the same name replaces the first and counts once.
      assert.equal((await post("/v1/enrollments/q-0.example.test", {})).status, 201);
      assert.equal((await espm.raw("DELETE", "/v1/enrollments/q-0.example.test")).status, 204);
      assert.equal((await post("/v1/enrollments/q-1.example.test", {})).status, 201);
    });
  });
});
