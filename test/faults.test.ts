/**
 * Every failed `pulumi up` can be retried, refreshed and destroyed, and no name gets stuck: the
 * real Pulumi engine (Automation API, file backend) against a real espm and the real Puppet
 * Server, with the failure injected (a closed port, a wrong pin, a wrong PSK, no CA, espm killed
 * with SIGKILL, Puppet Server's CA cut off between submit and sign, espm down during destroy).
 * Each test ends by checking the CA's statuses and espm's store for anything left behind.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type * as automation from "@pulumi/pulumi/automation";
import Database from "better-sqlite3";
import { parse as parseIni, stringify as stringifyIni } from "ini";
import { nodeNames, program } from "./programs/faults";
import { createSelfSignedCertificate } from "espm-agent/http/self-signed";
import { EspmProcess, freePort, puppetServerArgs, setupEspm, type SetupResult } from "./helpers/espm";
import { engineDir, engineStack, requirePulumi } from "./helpers/engine";
import { CaCutter } from "./helpers/ca-cutter";
import { caState, crlSerials, sharedWorld, type World } from "./helpers/world";

const names = nodeNames;

describe("failed `pulumi up`s through the real engine", function () {
  this.timeout(600_000);
  let world: World;
  let dir: string;
  let setup: SetupResult;
  let espm: EspmProcess;

  before(async function () {
    requirePulumi(this, "the fault tests");
    world = await sharedWorld();
    const { lab } = world;
    setup = await setupEspm([...puppetServerArgs(lab, { reports: false })], "groups: {}\n");
    espm = await EspmProcess.start(setup);
    dir = engineDir("faults");
  });

  after(async () => {
    await espm?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function goodConfig(target: SetupResult = setup): Record<string, automation.ConfigValue> {
    return {
      "espm:url": { value: `https://127.0.0.1:${target.port}` },
      "espm:psk": { value: target.psk, secret: true },
      "espm:certificate": { value: target.certificate },
    };
  }

  async function stackFor(
    name: string,
    prefix: string,
    count: number,
    config = goodConfig(),
  ): Promise<automation.Stack> {
    const stack = await engineStack({
      dir: join(dir, name),
      projectName: "espm-faults",
      stackName: name,
      program,
      config,
    });
    await stack.setAllConfig({ "faults:prefix": { value: prefix }, "faults:count": { value: String(count) } });
    return stack;
  }

  /** espm's resources in the stack's state, by type. */
  async function recorded(
    stack: automation.Stack,
  ): Promise<{ registrations: number; certificates: number; withoutProvider: number }> {
    const { deployment } = await stack.exportStack();
    const resources =
      (deployment as { resources?: Array<{ type: string; outputs?: Record<string, unknown> }> }).resources ?? [];
    const ours = resources.filter(
      (r) => r.type.startsWith("pulumi-nodejs:dynamic/espm:") || r.type.startsWith("espm:"),
    );
    return {
      registrations: ours.filter((r) => r.type.endsWith("PuppetNodeRegistration")).length,
      certificates: ours.filter((r) => r.type.endsWith("PuppetCertificate")).length,
      withoutProvider: ours.filter((r) => r.outputs?.__provider === undefined).length,
    };
  }

  async function failedUp(stack: automation.Stack): Promise<string> {
    try {
      await stack.up();
    } catch (err) {
      return (err as Error).message;
    }
    assert.fail("up should have failed");
  }

  /** espm's store, read as it is on disk. */
  function store(target: SetupResult = setup) {
    const db = new Database(join(target.configDir, "espm.db"), { readonly: true });
    try {
      return {
        live: (db.prepare("SELECT name FROM nodes WHERE deleted_at IS NULL").all() as Array<{ name: string }>).map(
          (r) => r.name,
        ),
        duplicates: db
          .prepare("SELECT name, count(*) AS n FROM nodes WHERE deleted_at IS NULL GROUP BY name HAVING n > 1")
          .all(),
        certificates: db
          .prepare(
            "SELECT certname, state FROM certificates WHERE id IN (SELECT max(id) FROM certificates GROUP BY certname)",
          )
          .all() as Array<{ certname: string; state: string }>,
      };
    } finally {
      db.close();
    }
  }

  /** After a destroy: no live node, no certificate or pending request at the CA, no unrevoked record. */
  async function assertNothingLeft(all: string[], target: SetupResult = setup): Promise<void> {
    const { live, certificates } = store(target);
    assert.deepEqual(
      live.filter((n) => all.includes(n)),
      [],
      "no live node in espm's store",
    );
    for (const name of all) assert.equal(await caState(world.lab, name), "absent", `${name} at the CA`);
    const open = certificates.filter((c) => all.includes(c.certname) && c.state !== "revoked");
    assert.deepEqual(open, [], "every certificate record of these names is revoked");
  }

  /** After a converged up: each name live once in the store and signed once at the CA, as the stack says. */
  async function assertConverged(stack: automation.Stack, all: string[], target: SetupResult = setup): Promise<void> {
    const { live, duplicates, certificates } = store(target);
    assert.deepEqual(duplicates, []);
    assert.deepEqual(live.filter((n) => all.includes(n)).sort(), [...all].sort());
    for (const name of all) {
      assert.equal(await caState(world.lab, name), "signed", `${name} at the CA`);
      assert.equal(certificates.find((c) => c.certname === name)?.state, "signed");
    }
    const counts = await recorded(stack);
    assert.deepEqual(counts, { registrations: all.length, certificates: all.length, withoutProvider: 0 });
    // The state file as the backend keeps it (exportStack would decrypt secrets).
    const file = join(dir, stack.name, "state/.pulumi/stacks/espm-faults", `${stack.name}.json`);
    const state = readFileSync(file, "utf8");
    assert.ok(!state.includes(target.psk), "no plaintext PSK in state");
    assert.ok(!state.includes("PRIVATE KEY"), "no plaintext private key in state");
  }

  it("records nothing when espm is unreachable, another server, or refuses the PSK; after the fix up converges and destroy removes everything", async () => {
    const all = names("cfg", 2);
    const closed = await freePort();
    const other = createSelfSignedCertificate({ commonName: "127.0.0.1", altNames: ["127.0.0.1"] }).certificatePem;
    const cases: Array<[string, Record<string, automation.ConfigValue>, RegExp]> = [
      [
        "espm:url to a closed port",
        { "espm:url": { value: `https://127.0.0.1:${closed}` } },
        /cannot connect to espm at 127\.0\.0\.1:\d+: .*ECONNREFUSED.*check espm:url/,
      ],
      [
        "another server's certificate",
        { "espm:certificate": { value: other } },
        /not the pinned .*check espm:certificate or espm:fingerprint/,
      ],
      ["a wrong PSK", { "espm:psk": { value: "w".repeat(48), secret: true } }, /refused the PSK: check espm:psk/],
    ];
    const stack = await stackFor("config", "cfg", 2);
    for (const [what, override, expected] of cases) {
      await stack.setAllConfig({ ...goodConfig(), ...override });
      const message = await failedUp(stack);
      assert.match(message, expected, what);
      assert.doesNotMatch(message, /may exist/, what);
      assert.deepEqual(
        await recorded(stack),
        { registrations: 0, certificates: 0, withoutProvider: 0 },
        `${what}: nothing recorded`,
      );
      await stack.refresh();
    }
    await stack.setAllConfig(goodConfig());
    const up = await stack.up();
    assert.equal(up.summary.result, "succeeded");
    await assertConverged(stack, all);
    assert.equal((await stack.refresh()).summary.result, "succeeded");
    await stack.destroy();
    await assertNothingLeft(all);
  });

  it("with no CA configured, records the registration but not the certificate; once espm has a CA, up converges", async () => {
    const all = names("noca", 1);
    const ini = parseIni(readFileSync(setup.ini, "utf8"));
    const full = stringifyIni(ini);
    delete ini.puppetserver;
    await espm.stop();
    writeFileSync(setup.ini, stringifyIni(ini));
    espm = await EspmProcess.start(setup);
    const stack = await stackFor("noca", "noca", 1);
    try {
      const message = await failedUp(stack);
      assert.match(message, /no certificate authority is configured: add a \[puppetserver\] section to espm\.ini/);
      assert.doesNotMatch(message, /may exist/);
      assert.deepEqual(await recorded(stack), { registrations: 1, certificates: 0, withoutProvider: 0 });
    } finally {
      await espm.stop();
      writeFileSync(setup.ini, full);
      espm = await EspmProcess.start(setup);
    }
    await stack.up();
    await assertConverged(stack, all);
    // Deleted out of band: refresh shows it, and destroy still succeeds.
    const client = new (await import("espm-sdk/client")).EspmClient({
      url: espm.url,
      psk: setup.psk,
      certificate: setup.certificate,
    });
    await client.deleteNode(all[0]!);
    await client.revokeCertificate(all[0]!);
    await client.close();
    const refreshed = await stack.refresh();
    assert.equal(refreshed.summary.resourceChanges?.delete, 1, JSON.stringify(refreshed.summary.resourceChanges));
    assert.equal((await stack.destroy()).summary.result, "succeeded");
    await assertNothingLeft(all);
  });

  it("converges with exactly 20 nodes and 20 certificates after espm is killed with SIGKILL in the middle of an up", async () => {
    const all = names("kill", 20);
    const stack = await stackFor("kill", "kill", 20);
    const signs = () =>
      espm.logLines.filter((l) => l.includes('"url":"/v1/certificates/kill-') && l.includes('"incoming request"'))
        .length;
    const up = stack.up().then(
      () => "succeeded",
      (err: Error) => err.message,
    );
    const deadline = Date.now() + 120_000;
    while (signs() < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await espm.stop("SIGKILL");
    const outcome = await up;
    espm = await EspmProcess.start(setup);
    assert.notEqual(outcome, "succeeded", "the up was cut short");
    const counts = await recorded(stack);
    assert.equal(counts.withoutProvider, 0, "whatever was recorded can be refreshed and destroyed");
    const halfMade = [
      ...outcome.matchAll(
        /error: (\w+ \w+ [^\n]*?)(?: with espm| through espm)? failed(?: and (?:it|one) may exist)?/g,
      ),
    ].length;
    console.log(
      `      after SIGKILL: ${counts.registrations} registrations and ${counts.certificates} certificates recorded of 20 each; ${halfMade} resources failed`,
    );
    assert.ok(counts.registrations + counts.certificates < 40, "the kill cut the up short");
    assert.equal((await stack.refresh()).summary.result, "succeeded");
    const again = await stack.up();
    assert.equal(again.summary.result, "succeeded");
    await assertConverged(stack, all);
    await stack.destroy();
    await assertNothingLeft(all);
  });

  it("converges when Puppet Server's CA is cut off between submit and sign, and destroy then revokes", async () => {
    const { lab } = world;
    const cutter = await CaCutter.start(lab);
    const viaCutter = await setupEspm(cutter.espmSetupArgs(dir), "groups: {}\n");
    const cutEspm = await EspmProcess.start(viaCutter);
    const all = names("cut", 1);
    try {
      const stack = await stackFor("cut", "cut", 1, goodConfig(viaCutter));
      cutter.cutAfterSubmit();
      const message = await failedUp(stack);
      assert.match(
        message,
        /signing a certificate for cut-00\.faults\.test through espm failed and one may exist; it is kept in state/,
      );
      assert.deepEqual(
        await recorded(stack),
        { registrations: 1, certificates: 1, withoutProvider: 0 },
        "the half-made certificate is recorded whole",
      );
      assert.equal(await caState(world.lab, all[0]!), "requested", "the CSR is pending at the real CA");
      // The sign that was cut: one by one, or espm's first try of bulk signing, which tells it which Puppet it has.
      assert.ok(
        cutter.events.some((e) =>
          /^dropped (PUT \/puppet-ca\/v1\/certificate_status\/cut-00|POST \/puppet-ca\/v1\/sign)/.test(e),
        ),
        cutter.events.join("\n"),
      );
      assert.equal((await recorded(stack)).withoutProvider, 0);

      cutter.restore();
      assert.equal((await stack.refresh()).summary.result, "succeeded");
      const up = await stack.up();
      assert.equal(up.summary.result, "succeeded");
      await assertConverged(stack, all, viaCutter);
      const serial = String((await stack.outputs())["cut-00"]!.value);
      assert.match(serial, /^[0-9A-F]+$/);

      await stack.destroy();
      await assertNothingLeft(all, viaCutter);
      assert.ok((await crlSerials(lab)).includes(serial), "the signed serial is revoked");
    } finally {
      await cutEspm.stop();
      cutter.close();
    }
  });

  it("fails a destroy while espm is down with a clear message, and succeeds once espm is back", async () => {
    const all = names("down", 2);
    const stack = await stackFor("down", "down", 2);
    await stack.up();
    await assertConverged(stack, all);
    await espm.stop();
    let message = "";
    try {
      await stack.destroy();
    } catch (err) {
      message = (err as Error).message;
    }
    assert.match(message, /cannot connect to espm at 127\.0\.0\.1:\d+: .*check espm:url/);
    espm = await EspmProcess.start(setup);
    assert.equal((await stack.refresh()).summary.result, "succeeded");
    assert.equal((await stack.destroy()).summary.result, "succeeded");
    await assertNothingLeft(all);
  });
});
