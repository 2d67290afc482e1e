/** `espm enc` as Puppet Server runs it: a separate process, read-only, fast. */
import assert from "node:assert/strict";
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { parse as parseIni, stringify as stringifyIni } from "ini";
import { join } from "node:path";
import { parse } from "yaml";
import { EspmClient } from "espm-sdk/client";
import { ESPM_BIN, EspmProcess, GROUPS_YAML, installedCopy, run, setupEspm } from "./helpers/espm";

let installedBin = ESPM_BIN;

async function enc(ini: string, certname: string, asUser?: string) {
  const argv = [process.execPath, asUser ? installedBin : ESPM_BIN, "enc", "-c", ini, certname];
  const [cmd, ...args] = asUser ? ["runuser", "-u", asUser, "--", ...argv] : argv;
  try {
    const { stdout, stderr } = await run(cmd!, args);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("espm enc", () => {
  let espm: EspmProcess;
  let client: EspmClient;

  before(async () => {
    espm = await EspmProcess.start(await setupEspm([], GROUPS_YAML));
    installedBin = installedCopy(espm.setup.dir);
    client = new EspmClient({ url: espm.url, psk: espm.setup.psk, certificate: espm.setup.certificate });
    await client.registerNode({
      name: "web-01.example.test",
      groups: ["base", "web"],
      classes: { motd: { message: "the node's own" }, apache: {} },
      parameters: { tier: "back" },
    });
  });

  after(async () => {
    await client.close();
    await espm.stop();
    rmSync(espm.setup.dir, { recursive: true });
  });

  it("prints the merged classification, the node's own values winning", async () => {
    const result = await enc(espm.setup.ini, "web-01.example.test");
    assert.equal(result.code, 0);
    assert.deepEqual(parse(result.stdout), {
      environment: "production",
      classes: { ssh: { port: 22 }, motd: { message: "the node's own" }, ntp: {}, apache: {} },
      parameters: { role: "web", tier: "back" },
    });
  });

  /** The node's classification as espm enc prints it, once `accept` says it shows what a test waits for (within 5 s). */
  async function encUntil(
    certname: string,
    accept: (classification: { classes: Record<string, unknown>; parameters: Record<string, unknown> }) => boolean,
  ) {
    const deadline = Date.now() + 5000;
    for (;;) {
      const result = await enc(espm.setup.ini, certname);
      assert.equal(result.code, 0, result.stderr);
      const classification = parse(result.stdout);
      if (accept(classification) || Date.now() > deadline) return classification;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it("picks up a groups.yaml edit within 5 s, without a restart", async () => {
    const started = Date.now();
    writeFileSync(
      join(espm.setup.configDir, "groups.yaml"),
      GROUPS_YAML.replace("ntp: {}", "ntp: { servers: [pool.example] }").replace("role: web", "role: frontend"),
    );
    const result = await encUntil("web-01.example.test", (c) => c.parameters.role === "frontend");
    assert.deepEqual(result.classes.ntp, { servers: ["pool.example"] });
    assert.equal(result.parameters.role, "frontend");
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
  });

  it("keeps printing the last good classification when groups.yaml is broken or deleted", async () => {
    const file = join(espm.setup.configDir, "groups.yaml");
    const good = readFileSync(file, "utf8");
    const before = (await enc(espm.setup.ini, "web-01.example.test")).stdout;
    writeFileSync(file, "groups:\n  web: [this is: not: valid\n");
    await new Promise((r) => setTimeout(r, 2500));
    const broken = await enc(espm.setup.ini, "web-01.example.test");
    assert.equal(broken.code, 0, broken.stderr);
    assert.equal(broken.stdout, before);
    assert.ok(
      espm.logLines.some((l) => l.includes("kept the last good groups: the groups file is not valid")),
      "the log says why",
    );
    rmSync(file);
    await new Promise((r) => setTimeout(r, 2500));
    const deleted = await enc(espm.setup.ini, "web-01.example.test");
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.stdout, before);
    assert.ok(
      espm.logLines.some((l) => l.includes("kept the last good groups: the groups file is gone")),
      "the log says why",
    );
    writeFileSync(file, good);
    await encUntil(
      "web-01.example.test",
      () => espm.logLines.filter((l) => l.includes('"published groups"')).length >= 2,
    );
  });

  it("prints classes: {} for a node espm does not know, and exits 0", async () => {
    const result = await enc(espm.setup.ini, "stranger.example.test");
    assert.equal(result.code, 0);
    assert.deepEqual(parse(result.stdout), { classes: {} });
  });

  it("passes a fallback ENC's output and exit code through for other nodes", async () => {
    const fallback = join(espm.setup.dir, "fallback.sh");
    writeFileSync(
      fallback,
      '#!/bin/sh\ncase "$1" in known*) echo "classes: { legacy: {} }";; *) echo "unknown $1" >&2; exit 3;; esac\n',
      { mode: 0o755 },
    );
    const ini = join(espm.setup.configDir, "fallback.ini");
    const config = parseIni(readFileSync(espm.setup.ini, "utf8"));
    config.classifier.fallback_enc = fallback;
    writeFileSync(ini, stringifyIni(config));
    const known = await enc(ini, "known-01");
    assert.equal(known.code, 0);
    assert.deepEqual(parse(known.stdout), { classes: { legacy: {} } });
    const unknown = await enc(ini, "other-01");
    assert.equal(unknown.code, 3);
    assert.match(unknown.stderr, /unknown other-01/);
    const ours = await enc(ini, "web-01.example.test");
    assert.equal(parse(ours.stdout).classes.motd.message, "the node's own");
  });

  it("works as Puppet Server's user, who cannot write, or even read, the store; others cannot read the export", async () => {
    const result = await enc(espm.setup.ini, "web-01.example.test", "puppet");
    assert.equal(result.code, 0, result.stderr);
    assert.equal(parse(result.stdout).classes.motd.message, "the node's own");
    const write = await run("runuser", [
      "-u",
      "puppet",
      "--",
      "sh",
      "-c",
      `echo x >> ${join(espm.setup.configDir, "espm.db")}`,
    ]).then(
      () => "written",
      () => "refused",
    );
    assert.equal(write, "refused");
    const exported = join(espm.setup.configDir, "enc-nodes/web-01.example.test.json");
    const info = statSync(exported);
    assert.equal(info.mode & 0o777, 0o640, "parameters can hold secrets: not world-readable");
    // espm's group, which Puppet Server's user is in (as the operator guide sets it up).
    assert.equal(info.gid, Number((await run("getent", ["group", "espm"])).stdout.split(":")[2]));
    const stranger = await enc(espm.setup.ini, "web-01.example.test", "nobody");
    assert.notEqual(stranger.code, 0, "a user outside espm's group reads nothing");
  });

  it("sends certnames that Puppet allows but espm's name rule does not to the fallback, and never to a file path", async () => {
    const fallback = join(espm.setup.dir, "fallback-names.sh");
    writeFileSync(fallback, `#!/bin/sh\nprintf -- "---\\nclasses: {}\\nparameters:\\n  asked: '%s'\\n" "$1"\n`, {
      mode: 0o755,
    });
    const ini = join(espm.setup.configDir, "fallback-names.ini");
    const config = parseIni(readFileSync(espm.setup.ini, "utf8"));
    config.classifier.fallback_enc = fallback;
    writeFileSync(ini, stringifyIni(config));
    for (const certname of ["x_", "a..b", "../etc/passwd", "Upper.example.test"]) {
      const result = await enc(ini, certname);
      assert.equal(result.code, 0, `${certname}: ${result.stderr}`);
      assert.deepEqual(parse(result.stdout), { classes: {}, parameters: { asked: certname } });
    }
    const plain = await enc(espm.setup.ini, "a..b");
    assert.deepEqual(parse(plain.stdout), { classes: {} });
  });

  it("treats espm enc --help as a request for help, not a certname", async () => {
    const result = await enc(espm.setup.ini, "--help");
    assert.equal(result.code, 0);
    assert.match(result.stdout, /usage:/);
  });

  it("keeps answering while the agent writes", async () => {
    const writes = Array.from({ length: 40 }, (_, i) =>
      client.registerNode({ name: `burst-${i}.example.test`, groups: ["web"] }),
    );
    const reads = Array.from({ length: 4 }, () => enc(espm.setup.ini, "web-01.example.test"));
    const results = await Promise.all(reads);
    await Promise.all(writes);
    for (const r of results) assert.equal(parse(r.stdout).classes.motd.message, "the node's own");
    assert.equal(parse((await enc(espm.setup.ini, "burst-39.example.test")).stdout).parameters.role, "frontend");
  });

  it("shows an update to the unprivileged user on the next call", async () => {
    await client.updateNode("web-01.example.test", { groups: ["web"], classes: {}, parameters: {} });
    const result = await enc(espm.setup.ini, "web-01.example.test", "puppet");
    assert.equal(result.code, 0, result.stderr);
    // The web group's classes as espm has them now (an earlier test may have edited groups.yaml).
    const web = (await client.groups()).groups.find((g) => g.name === "web")!;
    assert.ok(web.classes.motd, "the web group sets motd");
    assert.deepEqual(parse(result.stdout).classes, web.classes);
  });
});

describe("espm enc's load (it runs for every catalog compile)", () => {
  it("loads none of the server's libraries or the protocol's schemas, on SQLite and on PostgreSQL", async () => {
    // The modules the command reaches: the CLI, its enc command, and both stores' readers.
    const modules = ["cli/commands/enc.js", "enc/enc.js", "enc/postgres.js"].map((m) => join(ESPM_BIN, "../..", m));
    const probe = `
      for (const m of process.argv.slice(1)) require(m);
      const heavy = Object.keys(require.cache).flatMap((k) =>
        /node_modules\\/(zod|fastify|yaml|@peculiar|node-forge|undici|better-sqlite3|kysely)\\//.test(k) ? [k] : []);
      console.log(JSON.stringify(heavy));`;
    const { stdout } = await run(process.execPath, ["-e", probe, ...modules]);
    assert.deepEqual(JSON.parse(stdout), []);
  });
});
