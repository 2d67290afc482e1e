/**
 * Past one Puppet server: two espm processes on one PostgreSQL store (Debian's PostgreSQL 15, a
 * cluster of the test's own), and `espm enc` on a "compile master" whose espm.ini has no daemon,
 * only the store's URL with the read-only role. A create on one process is visible on the other; a
 * race gives one 201 and one 409; an Idempotency-Key retried on the other process returns the first
 * answer (waiting for it while it runs); SIGKILL of one process during a burst loses no acknowledged
 * node; a first boot goes through a Puppet Server whose ENC reads PostgreSQL; while the database is
 * down, `espm enc` serves the node's last answer.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EspmClient } from "espm-sdk/client";
import { EspmError } from "espm-sdk/errors";
import { createEspmDatabase, startPostgres, type EspmDatabase, type PostgresLab } from "../scripts/lab/postgres";
import { startPuppetServer, type PuppetServerLab } from "../scripts/lab/puppetserver";
import { ESPM_BIN, EspmProcess, freePort, puppetServerArgs, ROOT, run, scratchDir, setupEspm } from "./helpers/espm";
import { bootAgent, signedUserdata } from "./helpers/world";

const GROUPS = "groups:\n  files:\n    classes:\n      espm_file:\n        content: from PostgreSQL\n";

describe("several espm processes and a compile master on one PostgreSQL store", function () {
  this.timeout(240_000);
  let dir: string;
  let pg: PostgresLab;
  let db: EspmDatabase;
  let lab: PuppetServerLab;
  let a: EspmProcess;
  let b: EspmProcess;
  /** A third process, as plain as B, for races that neither side's fallback ENC slows down. */
  let c: EspmProcess;
  let clientA: EspmClient;
  let clientB: EspmClient;
  /** The compile master's espm.ini: the store's URL with the read-only role, a cache, a fallback ENC. */
  let compileIni: string;

  const storeArgs = () => ["--store-url", db.url, "--store-password-file", db.passwordFile, "--enc-role", db.encRole];
  const clientOf = (espm: EspmProcess) =>
    new EspmClient({ url: espm.url, psk: espm.setup.psk, certificate: espm.setup.certificate });
  const enc = (certname: string) =>
    run(process.execPath, [ESPM_BIN, "enc", "-c", compileIni, certname]).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );

  before(async function () {
    this.timeout(600_000);
    dir = scratchDir("espm-postgres");
    pg = await startPostgres();
    db = await createEspmDatabase(pg, dir);
    compileIni = join(dir, "compile-master.ini");
    const fallback = join(dir, "fallback-enc.sh");
    writeFileSync(
      fallback,
      `#!/bin/sh\ncase "$1" in\n  legacy-01.example.test) printf -- '---\\nclasses:\\n  legacy: {}\\n' ;;\n  *) printf -- '---\\nclasses: {}\\n' ;;\nesac\n`,
      { mode: 0o755 },
    );
    writeFileSync(
      compileIni,
      `[store]\nurl = ${db.encUrl}\npassword_file = ${db.encPasswordFile}\nenc_export = ${join(dir, "enc-cache")}\n\n` +
        `[certnames]\nallow[] = *.example.test\n\n[classifier]\nfallback_enc = ${fallback}\n`,
    );
    lab = await startPuppetServer({
      dir: join(dir, "puppetserver"),
      port: await freePort(),
      enc: `${process.execPath} ${ESPM_BIN} enc -c ${compileIni}`,
      modules: [join(ROOT, "test/fixtures/modules/espm_file")],
    });
    // A, with the CA, and a fallback ENC that takes 1.5 s (so a create on A is slow); B, beside it.
    const slowFallback = join(dir, "slow-fallback.sh");
    writeFileSync(slowFallback, "#!/bin/sh\nsleep 1.5\nprintf -- '---\\nclasses: {}\\n'\n", { mode: 0o755 });
    for (const d of ["a", "b", "c"]) mkdirSync(join(dir, d));
    const setupA = await setupEspm(
      [...storeArgs(), ...puppetServerArgs(lab), "--fallback-enc", slowFallback],
      GROUPS,
      join(dir, "a"),
    );
    // A sweeps for undecided CSRs every second, so that a sweep runs while PostgreSQL is down below.
    writeFileSync(
      setupA.ini,
      readFileSync(setupA.ini, "utf8").replace("[autosign]\n", "[autosign]\nsweep_seconds = 1\n"),
    );
    const setupB = await setupEspm(storeArgs(), GROUPS, join(dir, "b"));
    const setupC = await setupEspm(storeArgs(), GROUPS, join(dir, "c"));
    [a, b, c] = await Promise.all([EspmProcess.start(setupA), EspmProcess.start(setupB), EspmProcess.start(setupC)]);
    clientA = clientOf(a);
    clientB = clientOf(b);
  });

  after(async () => {
    await clientA?.close();
    await clientB?.close();
    await a?.stop();
    await b?.stop();
    await c?.stop();
    await lab?.stop();
    await pg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("reports the PostgreSQL store healthy on both, without its password", async () => {
    for (const client of [clientA, clientB]) {
      const store = (await client.health()).backends?.store;
      assert.equal(store?.status, "ok");
      assert.match(store?.detail ?? "", /^PostgreSQL postgres:\/\/espm@127\.0\.0\.1:\d+\/espm$/);
    }
    const ini = readFileSync(a.setup.ini, "utf8");
    assert.ok(!ini.includes(readFileSync(db.passwordFile, "utf8").trim()), "no password in espm.ini");
  });

  it("shows a node created on one process on the other at once", async () => {
    await clientB.registerNode({ name: "seen-01.example.test", groups: ["files"] });
    assert.equal((await clientA.getNode("seen-01.example.test"))?.name, "seen-01.example.test");
    await clientA.deleteNode("seen-01.example.test");
    assert.equal(await clientB.getNode("seen-01.example.test"), undefined);
  });

  it("gives exactly one 201 and one 409 to creates of one name at the same moment on two processes", async () => {
    const clientC = clientOf(c);
    // Connections open first, so that both requests leave at once.
    await Promise.all([clientB.health(), clientC.health()]);
    for (let i = 0; i < 20; i++) {
      const name = `race-${i}.example.test`;
      const results = await Promise.allSettled([clientB.registerNode({ name }), clientC.registerNode({ name })]);
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 1, name);
      const refused = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
      assert.equal((refused.reason as EspmError).status, 409, String(refused.reason));
    }
    await clientC.close();
  });

  it("answers an Idempotency-Key retried on the other process with the first answer, waiting while it runs", async () => {
    const body = JSON.stringify({ name: "idem-01.example.test", groups: ["files"] });
    const headers = { "content-type": "application/json", "idempotency-key": "retry-across-processes-0001" };
    // The first attempt runs on A (its fallback ENC takes 1.5 s); the retry reaches B meanwhile.
    const first = a.raw("POST", "/v1/nodes", { body, headers });
    await new Promise((r) => setTimeout(r, 300));
    const retry = await b.raw("POST", "/v1/nodes", { body, headers });
    const original = await first;
    assert.equal(original.status, 201, original.text);
    assert.equal(retry.status, 201, retry.text);
    assert.deepEqual(retry.json, original.json, "the same answer, not a second create");
    const again = await b.raw("POST", "/v1/nodes", { body, headers });
    assert.deepEqual(again.json, original.json);
  });

  it("keeps every acknowledged node, each once, when one process is killed during a burst", async () => {
    const acknowledged: string[] = [];
    let next = 0;
    let killed = false;
    const worker = (client: EspmClient) => async () => {
      while (next < 600) {
        const name = `burst-${next++}.example.test`;
        try {
          await client.registerNode({ name, groups: [] });
          acknowledged.push(name);
          if (acknowledged.length === 100 && !killed) {
            killed = true;
            b.child.kill("SIGKILL");
          }
        } catch {
          // answers lost to the kill are expected; only acknowledged creates must survive
        }
      }
    };
    const killable = new EspmClient({
      url: b.url,
      psk: b.setup.psk,
      certificate: b.setup.certificate,
      attempts: 1,
      timeoutMs: 5000,
    });
    await Promise.all([...Array.from({ length: 4 }, worker(killable)), ...Array.from({ length: 4 }, worker(clientA))]);
    await killable.close();
    assert.ok(killed && acknowledged.length >= 100);
    const counts = await pg.sql(
      "espm",
      "SELECT name || ' ' || count(*) FROM nodes WHERE name LIKE 'burst-%' AND deleted_at IS NULL GROUP BY name",
    );
    const live = new Map(counts.split("\n").map((l) => l.split(" ") as [string, string]));
    for (const name of acknowledged)
      assert.equal(live.get(name), "1", `${name}: acknowledged, found ${live.get(name)}`);
    b = await EspmProcess.start(b.setup);
    await clientB.close();
    clientB = clientOf(b);
    assert.equal((await clientB.getNode(acknowledged[0]!))?.name, acknowledged[0]);
  });

  it("boots a node through a Puppet Server whose ENC reads PostgreSQL with the read-only role", async () => {
    const name = "pg-boot-01.example.test";
    const managed = join(dir, "agent/managed.txt");
    await clientA.registerNode({ name, groups: ["files"], classes: { espm_file: { path: managed } } });
    const script = join(dir, "userdata.sh");
    await signedUserdata(clientA, name, { masterPort: lab.port, keyType: "ec-p256", file: script });
    const boot = await bootAgent(join(dir, "agent"), script);
    assert.equal(boot.code, 0, `${boot.stdout}\n${boot.log}`);
    assert.match(boot.stdout, /agent exit 2/);
    assert.equal(readFileSync(managed, "utf8"), "from PostgreSQL\n");
  });

  it("gives espm enc's role no write at all, and sends other names to the fallback ENC", async () => {
    const writes = await pg.sql(
      "espm",
      `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
         unnest(ARRAY['INSERT','UPDATE','DELETE','TRUNCATE']) p
       WHERE n.nspname = 'public' AND c.relkind = 'r' AND has_table_privilege('${db.encRole}', c.oid, p)`,
    );
    assert.equal(writes, "0", "no write privilege on any table");
    const readable = await pg.sql(
      "espm",
      `SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND c.relkind = 'r' AND has_table_privilege('${db.encRole}', c.oid, 'SELECT')`,
    );
    assert.equal(
      readable,
      "groups_snapshot,nodes,server_names_snapshot",
      "reads the nodes, the groups and Puppet Server's names, not tokens or the audit log",
    );
    const legacy = await enc("legacy-01.example.test");
    assert.equal(legacy.code, 0);
    assert.match(legacy.stdout, /legacy: \{\}/);
  });

  /** `espm enc` with a copy of the compile master's espm.ini changed by `edit`. */
  const encWith = async (edit: (ini: string) => string, certname: string) => {
    const ini = join(dir, `compile-master-${Math.random().toString(36).slice(2)}.ini`);
    writeFileSync(ini, edit(readFileSync(compileIni, "utf8")));
    return run(process.execPath, [ESPM_BIN, "enc", "-c", ini, certname]).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
  };

  it("classifies no row the certname policy refuses now: narrowed patterns, and the master's own name", async () => {
    const name = "pg-boot-01.example.test";
    assert.match((await enc(name)).stdout, /espm_file/);
    const narrowed = await encWith((ini) => ini.replace("allow[] = *.example.test", "allow[] = *.other.test"), name);
    assert.equal(narrowed.stdout, "---\nclasses: {}\n", "the fallback's answer, as if espm did not know it");
    // A row from before the policy, for the master's certname: A learned the server's names and
    // published them, so espm enc refuses it even where the patterns allow *.lab.test.
    const at = new Date().toISOString();
    await pg.sql(
      "espm",
      `INSERT INTO nodes (name, environment, groups, classes, parameters, created_at, updated_at)
       VALUES ('${lab.certname}', 'production', '[]', '{"espm_file": {"path": "/etc/cron.d/owned"}}', '{}', '${at}', '${at}')`,
    );
    const master = await encWith(
      (ini) => ini.replace("allow[] = *.example.test", "allow[] = *.lab.test"),
      lab.certname,
    );
    assert.equal(master.code, 0, master.stderr);
    assert.doesNotMatch(master.stdout, /espm_file|cron/);
    const put = await a.raw("PUT", `/v1/nodes/${lab.certname}`, {
      body: JSON.stringify({ classes: { espm_file: {} } }),
      headers: { "content-type": "application/json" },
    });
    assert.equal(put.status, 403, put.text);
    assert.match(put.json.error?.message ?? "", /server-names/);
    assert.equal((await a.raw("DELETE", `/v1/nodes/${lab.certname}`)).status, 204);
  });

  it("exits within its grace after SIGTERM while PostgreSQL is stalled under a request", async () => {
    // Every process of the cluster stopped (SIGSTOP): connections stay open and nothing answers, as
    // with a database host that hangs. C's read of a node then waits on it, and so would the pool's end.
    const { stdout } = await run("pgrep", ["-P", String(pg.pid())]);
    const cluster = [pg.pid(), ...stdout.trim().split("\n").map(Number)];
    // A backend may exit between the listing and the signal (ESRCH): it needs no stop or continue.
    const signal = (sig: NodeJS.Signals) =>
      cluster.forEach((pid) => {
        try {
          process.kill(pid, sig);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
        }
      });
    signal("SIGSTOP");
    try {
      const waiting = c.raw("GET", "/v1/nodes/stalled-01.example.test").catch((err: Error) => err);
      await new Promise((r) => setTimeout(r, 500));
      const started = Date.now();
      const code = await c.stop("SIGTERM");
      const seconds = (Date.now() - started) / 1000;
      // stop_grace_seconds (2), the cut-off after it (2), and at most 1 s for closing.
      assert.ok(seconds < 6, `espm took ${seconds} s to exit`);
      assert.equal(typeof code, "number");
      await waiting;
    } finally {
      signal("SIGCONT");
    }
  });

  it("espm enc-follow: compiles read its copy, current within seconds of each change, and ask the database again once it is gone", async () => {
    const heartbeat = join(dir, "enc-cache/.follower.json");
    const start = () => {
      const child = spawn(process.execPath, [ESPM_BIN, "enc-follow", "-c", compileIni], {
        stdio: ["ignore", "ignore", "pipe"],
      });
      const log = { text: "" };
      child.stderr.on("data", (d: Buffer) => (log.text += d.toString()));
      return { child, log };
    };
    // The follower's heartbeat, as espm enc reads it.
    const beat = () => (JSON.parse(readFileSync(heartbeat, "utf8")) as { at: number }).at;
    /** How long until `done` holds, polling; fails after 10 s with `what`. */
    const within = async (what: string, done: () => Promise<boolean>) => {
      const started = Date.now();
      while (!(await done())) {
        if (Date.now() - started > 10_000) assert.fail(`not within 10 s: ${what}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      return Date.now() - started;
    };
    // The compile master's espm.ini with a wrong password: only the follower's copy can answer it.
    const wrongPassword = join(dir, "wrong-password");
    writeFileSync(wrongPassword, "not the password\n");
    const copyOnly = (certname: string) =>
      encWith((ini) => ini.replace(/password_file = .*/, `password_file = ${wrongPassword}`), certname);

    let follower = start();
    try {
      await within("the first heartbeat", async () => existsSync(heartbeat));
      assert.match(follower.log.text, /following postgres:\/\/.*: \d+ nodes copied/);
      const name = "follow-01.example.test";
      await clientB.registerNode({ name, groups: ["files"] });
      const created = await within("a new node classified from the copy", async () =>
        (await copyOnly(name)).stdout.includes("from PostgreSQL"),
      );
      assert.equal((await copyOnly(name)).stdout, (await enc(name)).stdout, "the copy answers as the database does");
      await clientA.updateNode(name, { groups: ["files"], classes: { motd: { message: "followed" } } });
      const updated = await within("a class change", async () => (await copyOnly(name)).stdout.includes("followed"));
      // A change espm's daemon did not make (a row written by hand) reaches the copy too.
      const groups = await pg.sql("espm", "SELECT groups FROM groups_snapshot WHERE id = 1");
      await pg.sql("espm", `UPDATE groups_snapshot SET groups = replace(groups, 'from PostgreSQL', 'by hand')`);
      try {
        await within("a groups change", async () => (await copyOnly(name)).stdout.includes("by hand"));
      } finally {
        await pg.sql("espm", `UPDATE groups_snapshot SET groups = '${groups.replaceAll("'", "''")}'`);
      }
      await clientB.deleteNode(name);
      const deleted = await within("a deletion", async () => (await copyOnly(name)).stdout === "---\nclasses: {}\n");
      console.log(`      (copy current after: create ${created} ms, update ${updated} ms, delete ${deleted} ms)`);

      // Gone without a word: within FOLLOWER_FRESH_MS compiles ask the database again, and the copy
      // serves only as the cache does, while the database cannot be read.
      follower.child.kill("SIGKILL");
      const killedAt = Date.now();
      await clientB.registerNode({ name: "follow-02.example.test", groups: ["files"] });
      await within("the database asked again", async () =>
        (await enc("follow-02.example.test")).stdout.includes("from PostgreSQL"),
      );
      assert.ok(Date.now() - killedAt <= 7000, "within the copy's 5 s, and a compile's time");
      const fromCopy = await copyOnly("pg-boot-01.example.test");
      assert.equal(fromCopy.code, 0, fromCopy.stderr);
      assert.match(fromCopy.stdout, /espm_file/);
      assert.match(
        fromCopy.stderr,
        /PostgreSQL cannot be read .*served pg-boot-01\.example\.test's last answer from espm enc-follow's copy of \d+ s ago/,
      );
      // A node the copy missed is not taken for unknown: its own cached answer (the compile above) serves.
      const missed = await copyOnly("follow-02.example.test");
      assert.match(missed.stdout, /from PostgreSQL/, missed.stderr);
      assert.match(missed.stderr, /last answer from \S+enc-cache\n/);

      // Started again, it copies what changed meanwhile.
      follower = start();
      const before = beat();
      await within("a new heartbeat", async () => beat() > before);
      assert.match((await copyOnly("follow-02.example.test")).stdout, /from PostgreSQL/);
      follower.child.kill("SIGTERM");
      const [code] = (await once(follower.child, "exit")) as [number | null];
      assert.equal(code, 0, follower.log.text);
      assert.ok(!existsSync(heartbeat), "stopped on purpose, it leaves no heartbeat: compiles ask the database");
      await clientB.deleteNode("follow-02.example.test");
    } finally {
      follower.child.kill("SIGKILL");
    }
  });

  it("while PostgreSQL is down, serves a node's last answer from its cache and fails a node it never answered", async () => {
    const name = "pg-boot-01.example.test";
    const before = await enc(name);
    assert.equal(before.code, 0, before.stderr);
    assert.match(before.stdout, /espm_file/);
    // A node answered, then deleted while the database was reachable: the next compile of any
    // node drops its cached answer.
    await clientB.registerNode({ name: "gone-01.example.test", groups: ["files"] });
    assert.match((await enc("gone-01.example.test")).stdout, /espm_file/);
    await clientB.deleteNode("gone-01.example.test");
    assert.equal((await enc(name)).code, 0);
    await pg.stop();
    const gone = await enc("gone-01.example.test");
    assert.equal(gone.code, 1, gone.stdout);
    assert.match(gone.stderr, /no earlier answer for gone-01\.example\.test/);
    // An answer older than enc_cache_max_age_seconds is not served.
    await new Promise((r) => setTimeout(r, 1500));
    const stale = await encWith((ini) => ini.replace("[store]\n", "[store]\nenc_cache_max_age_seconds = 1\n"), name);
    assert.equal(stale.code, 1, stale.stdout);
    assert.match(stale.stderr, /older than enc_cache_max_age_seconds \(1\)/);
    const cached = await enc(name);
    assert.equal(cached.code, 0, cached.stderr);
    assert.equal(cached.stdout, before.stdout);
    assert.match(cached.stderr, /PostgreSQL cannot be read .*served pg-boot-01\.example\.test's last answer/);
    // espm itself, through sweeps that could not read the store, answers 503 naming the store,
    // which a client retries, and nothing is half-made.
    const refused = await a.raw("POST", "/v1/nodes", {
      body: JSON.stringify({ name: "while-down.example.test" }),
      headers: { "content-type": "application/json" },
    });
    assert.equal(refused.status, 503, refused.text);
    assert.match(refused.json.error?.message ?? "", /the PostgreSQL store at postgres:\/\/espm@.* cannot be reached/);
    // A node outside espm's certname patterns never waits on the database: the fallback answers.
    const legacy = await enc("legacy-02.site.test");
    assert.equal(legacy.code, 0, legacy.stderr);
    assert.equal(legacy.stdout, "---\nclasses: {}\n");
    const unknown = await enc("never-asked.example.test");
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /PostgreSQL cannot be read .*no earlier answer for never-asked\.example\.test/);
  });
});
