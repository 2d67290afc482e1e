/** The store under kill -9, and a clean stop under SIGTERM. */
import assert from "node:assert/strict";
import { chmodSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import Database from "better-sqlite3";
import { EspmClient } from "espm-sdk/client";
import { EspmProcess, setupEspm } from "./helpers/espm";

describe("espm under kill -9 and SIGTERM", () => {
  it("keeps every acknowledged node, each once, after kill -9 during a burst of creates", async () => {
    const setup = await setupEspm();
    let espm = await EspmProcess.start(setup);
    const client = new EspmClient({
      url: espm.url,
      psk: setup.psk,
      certificate: setup.certificate,
      attempts: 1,
      timeoutMs: 5000,
    });
    const acknowledged: string[] = [];
    let next = 0;
    let killed = false;
    const worker = async () => {
      while (!killed && next < 2000) {
        const name = `crash-${next++}.example.test`;
        try {
          await client.registerNode({ name, groups: [], parameters: { n: name } });
          acknowledged.push(name);
          if (acknowledged.length === 150 && !killed) {
            killed = true;
            espm.child.kill("SIGKILL");
          }
        } catch {
          // answers lost to the kill are expected; only acknowledged creates must survive
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    await client.close();
    assert.ok(acknowledged.length >= 150);

    espm = await EspmProcess.start(setup);
    const again = new EspmClient({ url: espm.url, psk: setup.psk, certificate: setup.certificate });
    for (const name of acknowledged) assert.ok(await again.getNode(name), `${name} was acknowledged but is gone`);
    await again.close();
    await espm.stop();

    const db = new Database(join(setup.configDir, "espm.db"), { readonly: true });
    const duplicates = db.prepare("SELECT name, count(*) AS n FROM nodes GROUP BY name HAVING n > 1").all();
    const live = (db.prepare("SELECT count(*) AS n FROM nodes WHERE deleted_at IS NULL").get() as { n: number }).n;
    db.close();
    assert.deepEqual(duplicates, []);
    // The export espm enc reads was rebuilt from the store at start-up.
    assert.equal(readdirSync(join(setup.configDir, "enc-nodes")).filter((f) => !f.startsWith(".")).length, live);
    rmSync(setup.dir, { recursive: true });
  });

  it("lets an in-flight request finish on SIGTERM, then exits 0", async () => {
    const setup = await setupEspm();
    const espm = await EspmProcess.start(setup);
    const { request, Agent } = await import("undici");
    const body = JSON.stringify({ name: "slow-01.example.test", groups: [] });
    async function* slowBody() {
      yield body.slice(0, 10);
      await new Promise((r) => setTimeout(r, 500));
      yield body.slice(10);
    }
    const inFlight = request(`${espm.url}/v1/nodes`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${setup.psk}`,
        "content-type": "application/json",
        "content-length": String(body.length),
      },
      body: Readable.from(slowBody()),
      dispatcher: new Agent({ connect: { ca: setup.certificate } }),
    });
    await new Promise((r) => setTimeout(r, 150));
    const exit = espm.stop("SIGTERM");
    const response = await inFlight;
    assert.equal(response.statusCode, 201);
    await response.body.text();
    assert.equal(await exit, 0);
    assert.ok(espm.logLines.some((l) => l.includes('"stopped"')));
    rmSync(setup.dir, { recursive: true });
  });

  it("rewrites at start only the export files that differ from the store, and heals every one that does", async () => {
    const setup = await setupEspm();
    let espm = await EspmProcess.start(setup);
    const client = new EspmClient({ url: espm.url, psk: setup.psk, certificate: setup.certificate });
    const names = ["kept", "edited", "removed", "narrowed"].map((n) => `${n}-01.example.test`);
    for (const name of names) await client.registerNode({ name, groups: [], parameters: { n: name } });
    await client.close();
    await espm.stop();
    const dir = join(setup.configDir, "enc-nodes");
    const file = (name: string) => join(dir, `${name}.json`);
    const [kept, edited, removed, narrowed] = names as [string, string, string, string];
    const expected = readFileSync(file(edited), "utf8");
    const keptBefore = statSync(file(kept));
    writeFileSync(file(edited), expected.replace(edited, "someone-else.example.test"));
    rmSync(file(removed));
    chmodSync(file(narrowed), 0o600);
    writeFileSync(join(dir, "stray.example.test.json"), "{}");

    espm = await EspmProcess.start(setup);
    try {
      // Unchanged: not written again (a rename would give it a new inode).
      const keptAfter = statSync(file(kept));
      assert.equal(keptAfter.ino, keptBefore.ino);
      assert.equal(keptAfter.mtimeMs, keptBefore.mtimeMs);
      assert.equal(readFileSync(file(edited), "utf8"), expected);
      assert.match(readFileSync(file(removed), "utf8"), /removed-01/);
      assert.equal(statSync(file(narrowed)).mode & 0o777, 0o640);
      assert.deepEqual(
        readdirSync(dir)
          .filter((f) => !f.startsWith("."))
          .sort(),
        names.map((n) => `${n}.json`).sort(),
      );
    } finally {
      await espm.stop();
      rmSync(setup.dir, { recursive: true });
    }
  });
});
