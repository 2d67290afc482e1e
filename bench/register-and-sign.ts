/**
 * Benchmark (not a test): what espm adds to the Puppet CA, on Puppet 7 (the host's Debian 12 server)
 * and Puppet 8 (Debian 13's, in a Debian root), each started with production JVM settings (Debian's
 * -Xms1g -Xmx1g, the JIT at full strength; not the lab's -XX:TieredStopAtLevel=1 fast start, under
 * which one RSA signature costs several times more). For the same number of nodes on the same server
 * in one run, C at a time, it times:
 *
 *   floor      the CA API directly with CSRs made beforehand: submit, sign, fetch the certificate
 *   espm       register + sign through espm, with the same kind of pre-made CSRs
 *   espm+keys  the same, each key and CSR made as the provider makes them (key off the event loop),
 *              with RSA-2048 and with P-256 (the default)
 *   generate   `puppetserver ca generate` for each name, as an operator would without espm
 *
 * and prints espm/floor, generate/espm and the load average before and after each server's run.
 * The floor and espm's path alternate `--runs` times (3 by default) and count by their medians.
 * First, with no Puppet Server running, it times key + CSR per node for each key type, one at a
 * time; then on each store, SQLite and PostgreSQL (a cluster of its own), `espm enc` for a node
 * espm classifies beside `node -e 0`, alternating, 30 runs each (on PostgreSQL as a compile master
 * runs it, with `espm enc-follow` keeping its copy, and without), and 2,000 creates (POST /v1/nodes)
 * at concurrency 16, with their rate, p50 and p99, and PostgreSQL/SQLite ratios. On each server it
 * also sends 2,000 GET /v1/classes at concurrency 16 across a class-cache expiry, with p50 and p99.
 *
 *   npm run bench [-- --count 100 --concurrency 16 --runs 3 --puppet 7,8 --stores SQLite,PostgreSQL
 *                    --jvm production --bulk-sign off]   (--puppet '' or --stores '': none of them)
 *   (--bulk-sign on: auth.conf with the "espm bulk sign" rule, so espm signs in batches on Puppet 8)
 *   (root; starts its own Puppet Servers, one at a time, and espm)
 */
import { execFile, type ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs, promisify } from "node:util";
import { request } from "undici";
import { EspmClient } from "espm-sdk/client";
import { createCsr, generateKeyPairAsync, generateRsaKeyPairAsync } from "espm-sdk/x509";
import { debianRoot, puppet8 } from "../scripts/lab/debian-root";
import { espmDispatcher, startPuppetServer, type PuppetServerLab } from "../scripts/lab/puppetserver";
import { EspmProcess, freePort, puppetServerArgs, setupEspm } from "../scripts/lab/espm";
import { createEspmDatabase, startPostgres } from "../scripts/lab/postgres";
import { compileMasterIni, encBesideNode, latencies, percentile, pool, startFollower, timed } from "./measure";

const run = promisify(execFile);

/** `count` CSRs for names under `prefix`, made before any clock starts (keys on the thread pool). */
async function csrsFor(prefix: string, count: number): Promise<Array<{ name: string; csr: string }>> {
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const name = `${prefix}-${i}.example.test`;
      return { name, csr: createCsr(name, (await generateRsaKeyPairAsync(2048)).privateKeyPem) };
    }),
  );
}

/** The CA API as espm's certificate may use it, with nothing in between. */
async function floor(lab: PuppetServerLab, csrs: Array<{ name: string; csr: string }>, concurrency: number) {
  const dispatcher = espmDispatcher(lab);
  const call = async (method: "PUT" | "GET", path: string, body?: string, type?: string) => {
    const res = await request(`${lab.url}/puppet-ca/v1/${path}`, {
      method,
      body,
      headers: type ? { "content-type": type } : {},
      dispatcher,
    });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
  };
  try {
    return await timed(() =>
      pool(csrs, concurrency, async ({ name, csr }) => {
        await call("PUT", `certificate_request/${name}`, csr, "text/plain");
        await call(
          "PUT",
          `certificate_status/${name}`,
          JSON.stringify({ desired_state: "signed" }),
          "application/json",
        );
        await call("GET", `certificate/${name}`);
      }),
    );
  } finally {
    await dispatcher.close();
  }
}

/**
 * On one store, SQLite or PostgreSQL (a cluster of the bench's own): `espm enc` for a node espm
 * classifies, against `node -e 0`, each run `runs` times in turn (with PostgreSQL, as on a compile
 * master: the read-only role, connecting for each run); then 2,000 creates at concurrency 16.
 */
async function withoutPuppetServer(runs: number, store: "SQLite" | "PostgreSQL") {
  const dir = mkdtempSync(join(tmpdir(), "espm-bench-enc-"));
  chmodSync(dir, 0o755);
  const groups = "groups:\n  web:\n    classes:\n      ntp: { servers: [a, b] }\n    parameters: { role: web }\n";
  const pg = store === "PostgreSQL" ? await startPostgres() : undefined;
  const db = pg && (await createEspmDatabase(pg, dir));
  const storeArgs = db
    ? ["--store-url", db.url, "--store-password-file", db.passwordFile, "--enc-role", db.encRole]
    : [];
  const espm = await EspmProcess.start(
    await setupEspm(["--certname-pattern", "*.example.test", ...storeArgs], groups, join(dir, "espm")),
  );
  const client = new EspmClient({ url: espm.url, psk: espm.setup.psk, certificate: espm.setup.certificate });
  const compileMaster = db && compileMasterIni(dir, db);
  const encIni = compileMaster ? compileMaster.ini : espm.setup.ini;
  let follower: ChildProcess | undefined;
  try {
    await client.registerNode({ name: "enc-01.example.test", groups: ["web"], classes: { motd: { message: "hi" } } });
    const encRuns = () => encBesideNode(encIni, "enc-01.example.test", runs, "ntp");
    // PostgreSQL: each compile asking the database, then reading the copy `espm enc-follow` keeps.
    const direct = compileMaster ? await encRuns() : undefined;
    if (compileMaster) follower = (await startFollower(compileMaster.ini, compileMaster.cacheDir)).child;
    const { enc, node } = await encRuns();
    const creates = await latencies(2000, 16, async (i) => {
      const res = await espm.raw("POST", "/v1/nodes", {
        body: JSON.stringify({ name: `create-${i}.example.test`, groups: ["web"], parameters: { i } }),
        headers: { "content-type": "application/json" },
      });
      if (res.status !== 201) throw new Error(`POST /v1/nodes answered ${res.status}: ${res.text}`);
    });
    return { store, enc, node, direct, creates };
  } finally {
    follower?.kill("SIGTERM");
    await client.close();
    await espm.stop();
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Row {
  label: string;
  ms: number;
}

async function benchServer(
  puppet: number,
  o: { count: number; concurrency: number; runs: number; jvm: "production" | "fast"; bulkSign: boolean },
) {
  const dir = mkdtempSync(join(tmpdir(), `espm-bench-${puppet}-`));
  const root = puppet >= 8 ? (await debianRoot(puppet8())).dir : undefined;
  const loadBefore = loadavg()[0]!;
  const startedAt = Date.now();
  const lab = await startPuppetServer({
    dir: join(dir, "puppetserver"),
    port: await freePort(),
    root,
    jvm: o.jvm,
    bulkSign: o.bulkSign,
  });
  const startSeconds = (Date.now() - startedAt) / 1000;
  const espmDir = join(dir, "espm");
  mkdirSync(espmDir);
  const setup = await setupEspm([...puppetServerArgs(lab)], "groups: {}\n", espmDir);
  // Classes expire every 2 s here (30 by default), so the class run below crosses several expiries.
  writeFileSync(
    setup.ini,
    readFileSync(setup.ini, "utf8").replace("[puppetserver]\n", "[puppetserver]\nclass_cache_seconds = 2\n"),
  );
  const espm = await EspmProcess.start(setup);
  const client = new EspmClient({ url: espm.url, psk: espm.setup.psk, certificate: espm.setup.certificate });
  const { count, concurrency } = o;
  const rows: Row[] = [];
  try {
    // Twenty warm-up nodes each way, so that neither side pays the JIT's compiles in its time (with
    // one, the floor, measured first, came out slower than espm's path with keys).
    const warmup = Math.min(count, 20);
    await floor(lab, await csrsFor("warm-floor", warmup), concurrency);
    await pool(await csrsFor("warm-espm", warmup), concurrency, async ({ name, csr }) => {
      await client.registerNode({ name, groups: [] });
      await client.signCertificate(name, csr);
    });

    // The floor and espm's path alternate, `runs` times each, and each figure is the median: one
    // run of each moved by a tenth from one run to the next on this machine.
    const floorMs: number[] = [];
    const espmMs: number[] = [];
    for (let run = 0; run < o.runs; run++) {
      floorMs.push(await floor(lab, await csrsFor(`floor-${run}`, count), concurrency));
      const premade = await csrsFor(`espm-${run}`, count);
      espmMs.push(
        await timed(() =>
          pool(premade, concurrency, async ({ name, csr }) => {
            await client.registerNode({ name, groups: [] });
            await client.signCertificate(name, csr);
          }),
        ),
      );
    }
    const runsNote = o.runs > 1 ? `, median of ${o.runs}` : "";
    rows.push({ label: `floor: CA API, pre-made CSRs${runsNote}`, ms: percentile(floorMs, 50) });
    rows.push({ label: `espm: register + sign, pre-made CSRs${runsNote}`, ms: percentile(espmMs, 50) });
    for (const keyType of ["rsa-2048", "ec-p256"] as const) {
      const names = Array.from({ length: count }, (_, i) => `keys-${keyType}-${i}.example.test`);
      rows.push({
        label: `espm+keys: ${keyType} key + CSR as the provider makes them`,
        ms: await timed(() =>
          pool(names, concurrency, async (name) => {
            await client.registerNode({ name, groups: [] });
            const { privateKeyPem } = await generateKeyPairAsync(keyType);
            await client.signCertificate(name, createCsr(name, privateKeyPem));
          }),
        ),
      });
    }
    const signing = (await client.health()).backends?.ca?.detail ?? "";
    rows.push({
      label: "generate: puppetserver ca generate",
      ms: await timed(() =>
        pool(
          Array.from({ length: count }, (_, i) => i),
          concurrency,
          async (i) => {
            const argv = [
              "puppetserver",
              "ca",
              "generate",
              "--certname",
              `cli-${i}.bench.test`,
              "--config",
              lab.confFile,
            ];
            const command = lab.command(argv);
            await run(command[0]!, command.slice(1), { timeout: 300_000 });
          },
        ),
      ),
    });
    // Class discovery under load, across a cache expiry (class_cache_seconds = 2 here): the answer
    // in hand is served while one refresh runs.
    const classes = await latencies(2000, 16, async () => {
      const res = await espm.raw("GET", "/v1/classes?environment=production");
      if (res.status !== 200) throw new Error(`GET /v1/classes answered ${res.status}`);
    });
    const loadAfter = loadavg()[0]!;
    const ms = (label: string) => rows.find((r) => r.label.startsWith(label))!.ms;
    console.log(
      `\nPuppet Server ${puppet} (${root ? "Debian 13, in a Debian root" : "Debian 12, the host's"}), ${o.jvm} JVM settings, ready in ${startSeconds.toFixed(0)} s; ${signing}`,
    );
    console.log(
      `${count} nodes, concurrency ${concurrency}; load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after`,
    );
    for (const row of rows)
      console.log(
        `  ${row.label.padEnd(58)} ${(row.ms / 1000).toFixed(2).padStart(7)} s  ${(row.ms / count).toFixed(1).padStart(6)} ms/node`,
      );
    console.log(
      `  GET /v1/classes, 2000 at concurrency 16: ${(2000 / (classes.wall / 1000)).toFixed(0)}/s, p50 ${classes.p50.toFixed(1)} ms, p99 ${classes.p99.toFixed(1)} ms (${(classes.p99 / classes.p50).toFixed(1)}x p50)`,
    );
    console.log(
      `  espm/floor ${(ms("espm:") / ms("floor")).toFixed(2)}x   espm+keys/floor ${(ms("espm+keys: rsa") / ms("floor")).toFixed(2)}x (RSA-2048), ${(ms("espm+keys: ec") / ms("floor")).toFixed(2)}x (P-256)   generate/espm ${(ms("generate") / ms("espm:")).toFixed(1)}x`,
    );
    return { puppet, espm: ms("espm:"), floor: ms("floor") };
  } finally {
    await client.close();
    await espm.stop();
    await lab.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      count: { type: "string", default: "100" },
      concurrency: { type: "string", default: "16" },
      puppet: { type: "string", default: "7,8" },
      jvm: { type: "string", default: "production" },
      "bulk-sign": { type: "string", default: "off" },
      runs: { type: "string", default: "3" },
      stores: { type: "string", default: "SQLite,PostgreSQL" },
    },
  });
  const jvm: "production" | "fast" = values.jvm === "fast" ? "fast" : "production";
  const stores = values.stores.split(",").filter(Boolean);
  if (!Number.isInteger(Number(values.runs)) || Number(values.runs) < 1)
    throw new Error("--runs takes a positive integer");
  if (stores.some((s) => s !== "SQLite" && s !== "PostgreSQL"))
    throw new Error("--stores names SQLite, PostgreSQL or both");
  if (values.jvm !== jvm) throw new Error("--jvm is production or fast");
  const options = {
    count: Number(values.count),
    concurrency: Number(values.concurrency),
    runs: Number(values.runs),
    jvm,
    bulkSign: values["bulk-sign"] !== "off",
  };
  console.log("key + CSR per node, one at a time, no server running:");
  for (const keyType of ["rsa-2048", "rsa-4096", "ec-p256"] as const) {
    const n = keyType === "rsa-4096" ? Math.min(options.count, 20) : options.count;
    const total = await timed(async () => {
      for (let i = 0; i < n; i++)
        createCsr(`key-${i}.example.test`, (await generateKeyPairAsync(keyType)).privateKeyPem);
    });
    console.log(`  ${keyType.padEnd(9)} ${(total / n).toFixed(1).padStart(7)} ms (${n} keys)`);
  }
  if (stores.length)
    console.log("espm enc (30 runs, node -e 0 alternating) and POST /v1/nodes (2000 at concurrency 16), per store:");
  const measured = [];
  for (const store of stores as Array<"SQLite" | "PostgreSQL">) {
    const local = await withoutPuppetServer(30, store);
    const { creates } = local;
    measured.push({ store, rate: 2000 / (creates.wall / 1000), p99: creates.p99, enc: local.enc });
    const direct = local.direct
      ? `; asking PostgreSQL, without espm enc-follow: ${local.direct.enc.toFixed(0)} ms, ${(local.direct.enc / local.direct.node).toFixed(2)}x`
      : "";
    console.log(
      `  ${store.padEnd(10)} espm enc ${local.enc.toFixed(0)} ms (node -e 0 ${local.node.toFixed(0)} ms, ${(local.enc / local.node).toFixed(2)}x${direct}); ` +
        `creates ${(2000 / (creates.wall / 1000)).toFixed(0)}/s, p50 ${creates.p50.toFixed(1)} ms, p99 ${creates.p99.toFixed(1)} ms`,
    );
  }
  const [sqlite, postgres] = measured;
  if (sqlite && postgres)
    console.log(
      `  PostgreSQL/SQLite: creates/s ${(postgres.rate / sqlite.rate).toFixed(2)}x, p99 ${(postgres.p99 / sqlite.p99).toFixed(2)}x, espm enc ${(postgres.enc / sqlite.enc).toFixed(2)}x`,
    );
  const results = [];
  for (const puppet of values.puppet.split(",").filter(Boolean).map(Number))
    results.push(await benchServer(puppet, options));
  const [a, b] = results;
  if (a && b) {
    console.log(`\nPuppet 8/Puppet 7: floor ${(b.floor / a.floor).toFixed(2)}x, espm ${(b.espm / a.espm).toFixed(2)}x`);
  }
}

main().catch((err: Error) => {
  console.error(`bench: ${err.message}`);
  process.exit(1);
});
