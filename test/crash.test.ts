/** The store under kill -9, and a clean stop under SIGTERM. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  statfsSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import Database from "better-sqlite3";
import { EspmClient } from "espm-sdk/client";
import { EspmProcess, setupEspm } from "./helpers/espm";

/** What espm logs when it checks every live row and export file at a review. */
const REBUILT = "checked the export espm enc reads against every live node";

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

  it("after kill -9, rewrites at start only the export files that differ from the store, and heals every one that does", async () => {
    const setup = await setupEspm();
    let espm = await EspmProcess.start(setup);
    const client = new EspmClient({ url: espm.url, psk: setup.psk, certificate: setup.certificate });
    const names = ["kept", "edited", "removed", "narrowed"].map((n) => `${n}-01.example.test`);
    for (const name of names) await client.registerNode({ name, groups: [], parameters: { n: name } });
    await client.close();
    await espm.stop("SIGKILL");
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
      assert.ok(espm.logLines.some((l) => l.includes(REBUILT)));
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

  describe("a start after a clean stop", () => {
    const narrow = "narrowed-01.narrow.test";
    const kept = "kept-01.example.test";
    let setup: Awaited<ReturnType<typeof setupEspm>>;
    let dir: string;
    const file = (name: string) => join(dir, `${name}.json`);
    const record = () => join(dir, ".clean-stop.json");
    const restart = async (change?: () => void) => {
      await espm.stop();
      assert.ok(existsSync(record()), "a clean stop records what the export holds");
      change?.();
      espm = await EspmProcess.start(setup);
      assert.ok(!existsSync(record()), "a start takes the record");
      return espm.logLines.some((l) => l.includes(REBUILT));
    };
    let espm: EspmProcess;

    before(async () => {
      setup = await setupEspm(["--certname-pattern", "*.example.test", "--certname-pattern", "*.narrow.test"]);
      dir = join(setup.configDir, "enc-nodes");
      espm = await EspmProcess.start(setup);
      const client = new EspmClient({ url: espm.url, psk: setup.psk, certificate: setup.certificate });
      for (const name of [kept, narrow]) await client.registerNode({ name, groups: [], parameters: { n: name } });
      await client.close();
    });

    after(async () => {
      await espm?.stop();
      rmSync(setup.dir, { recursive: true });
    });

    it("trusts the export without reading every row when nothing changed", async () => {
      const before = statSync(file(kept));
      assert.equal(await restart(), false, "no full check");
      assert.equal(statSync(file(kept)).ino, before.ino);
      assert.equal((await espm.raw("GET", `/v1/nodes/${kept}`)).status, 200);
    });

    it("follows a narrowed and a widened policy by the names alone", async () => {
      const ini = readFileSync(setup.ini, "utf8");
      assert.equal(await restart(() => writeFileSync(setup.ini, ini.replace("allow[]=*.narrow.test\n", ""))), false);
      assert.ok(!existsSync(file(narrow)), "a node the policy refuses now leaves the export");
      assert.ok(existsSync(file(kept)));
      assert.equal(await restart(() => writeFileSync(setup.ini, ini)), false);
      assert.match(readFileSync(file(narrow), "utf8"), /narrowed-01/, "and comes back when it allows it again");
    });

    it("checks every row after a write to the store behind its back: a row added, changed or deleted", async () => {
      const added = "added-01.example.test";
      const rebuilt = await restart(() => {
        const db = new Database(join(setup.configDir, "espm.db"));
        const at = new Date().toISOString();
        db.prepare(
          `INSERT INTO nodes (name, environment, groups, classes, parameters, created_at, updated_at)
           VALUES (?, 'production', '[]', '{}', '{"behind":true}', ?, ?)`,
        ).run(added, at, at);
        db.close();
      });
      assert.equal(rebuilt, true);
      assert.match(readFileSync(file(added), "utf8"), /behind/);
      assert.equal(
        await restart(() => {
          const db = new Database(join(setup.configDir, "espm.db"));
          db.prepare(`UPDATE nodes SET parameters = '{"changed":true}' WHERE name = ?`).run(kept);
          db.close();
        }),
        true,
      );
      assert.match(readFileSync(file(kept), "utf8"), /changed/);
      assert.equal(
        await restart(() => {
          const db = new Database(join(setup.configDir, "espm.db"));
          db.prepare(`DELETE FROM nodes WHERE name = ?`).run(added);
          db.close();
        }),
        true,
      );
      assert.ok(!existsSync(file(added)));
    });

    it("checks every row when the directory lost or gained a node file, or the store is another", async () => {
      assert.equal(await restart(() => rmSync(file(kept))), true);
      assert.ok(existsSync(file(kept)));
      assert.equal(await restart(() => writeFileSync(file("stray-01.example.test"), "{}")), true);
      assert.ok(!existsSync(file("stray-01.example.test")));
      const stop = () => JSON.parse(readFileSync(record(), "utf8")) as { nodesVersion: string };
      assert.equal(
        await restart(() =>
          writeFileSync(
            record(),
            JSON.stringify({ ...stop(), nodesVersion: stop().nodesVersion.replace(/^[0-9a-f]/, "x") }),
          ),
        ),
        true,
      );
    });

    it("checks every row after kill -9, which leaves no record", async () => {
      await espm.stop("SIGKILL");
      assert.ok(!existsSync(record()));
      espm = await EspmProcess.start(setup);
      assert.ok(espm.logLines.some((l) => l.includes(REBUILT)));
      assert.equal(await restart(), false, "and trusts the next clean stop's record");
    });
  });

  it("leaves in the export no create whose commit failed (the store's disk full), and checks every row after", async () => {
    const setup = await setupEspm();
    const disk = join(setup.dir, "store-disk");
    mkdirSync(disk);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", disk]);
    const filler = join(disk, "filler");
    let espm: EspmProcess | undefined;
    try {
      // The store on a disk of its own, the export beside espm.ini: the commit fails after the file is written.
      const ini = readFileSync(setup.ini, "utf8").replace(/^database=.*$/m, `database=${join(disk, "espm.db")}`);
      writeFileSync(setup.ini, ini);
      espm = await EspmProcess.start(setup);
      const post = (name: string) =>
        espm!.raw("POST", "/v1/nodes", {
          body: JSON.stringify({ name, groups: [], parameters: { n: name } }),
          headers: { "content-type": "application/json" },
        });
      assert.equal((await post("before-01.example.test")).status, 201);
      const { bavail, bsize } = statfsSync(disk);
      try {
        writeFileSync(filler, Buffer.alloc(bavail * bsize));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
      }
      const failed = await post("lost-01.example.test");
      assert.equal(failed.status, 500, failed.text);
      const exported = readdirSync(join(setup.configDir, "enc-nodes")).filter((f) => !f.startsWith("."));
      assert.deepEqual(exported, ["before-01.example.test.json"], "the file written before the failed commit is gone");
      rmSync(filler);
      assert.equal((await espm.raw("GET", "/v1/nodes/lost-01.example.test")).status, 404);
      assert.equal((await post("lost-01.example.test")).status, 201);
      await espm.stop();
      assert.ok(!existsSync(join(setup.configDir, "enc-nodes", ".clean-stop.json")), "no record after a failed commit");
      espm = await EspmProcess.start(setup);
      assert.ok(espm.logLines.some((l) => l.includes(REBUILT)));
    } finally {
      await espm?.stop();
      rmSync(filler, { force: true });
      execFileSync("umount", [disk]);
      rmSync(setup.dir, { recursive: true });
    }
  });
});
