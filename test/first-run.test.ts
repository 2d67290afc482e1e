/**
 * The first Puppet run's result reaching Pulumi: espm reads its nodes' runs from the real Puppet
 * Server's stored reports, and PuppetFirstRun waits for the first one while a real agent boots.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { bootstrapUserData, certificateProvider, firstRunProvider, registrationProvider } from "pulumi-espm";
import type { CertificateState } from "pulumi-espm/certificate";
import type { FirstRunState } from "pulumi-espm/first-run";
import type { RegistrationState } from "pulumi-espm/registration";
import type { ClassificationInput } from "espm-sdk/protocol";
import { valueOf } from "./helpers/mocks";
import { configuredProvider } from "./helpers/providers";
import { sharedWorld, type World } from "./helpers/world";

type Provider = typeof registrationProvider;

describe("first Puppet runs, from Puppet Server's reports", function () {
  this.timeout(240_000);
  let world: World;
  let registrations: Provider;
  let certificates: Provider;
  let firstRuns: Provider;

  const configured = (provider: Provider) => configuredProvider(provider, world.stackConfig());

  /** A node registered and signed through the providers; returns its userdata script. */
  async function provision(
    name: string,
    classification: Omit<ClassificationInput, "environment">,
    using = registrations,
  ): Promise<string> {
    const registration = await using.create((await using.check!({}, { name, ...classification })).inputs);
    const certificate = await certificates.create((await certificates.check!({}, { certname: name })).inputs);
    const userData = await valueOf(
      bootstrapUserData({
        registration: registration.outs as RegistrationState,
        certificate: certificate.outs as CertificateState,
        master: "localhost",
        masterPort: world.lab.port,
      }),
    );
    return userData.script;
  }

  /** Starts PuppetFirstRun's create, as the engine does once the instance exists, then boots the instance. */
  async function firstRunWhileBooting(name: string, script: string, timeoutMinutes = 3) {
    const inputs = (
      await firstRuns.check!({}, { nodeName: name, instanceId: `i-${name.split(".")[0]}`, timeoutMinutes })
    ).inputs;
    const waiting = firstRuns.create(inputs).then(
      (result) => ({ result, error: undefined }),
      (error: Error) => ({ result: undefined, error }),
    );
    const boot = await world.boot(name.split(".")[0]!, script);
    return { boot, ...(await waiting) };
  }

  before(async () => {
    world = await sharedWorld();
    registrations = await configured(registrationProvider);
    certificates = await configured(certificateProvider);
    firstRuns = await configured(firstRunProvider);
  });

  it("succeeds with `changed` when the bootstrap's run applies the catalog", async () => {
    const name = "run-ok.first-run.test";
    const script = await provision(name, {
      classes: { espm_file: { path: join(world.dir, "agent-run-ok/managed.txt"), content: "first run" } },
    });
    const { boot, result, error } = await firstRunWhileBooting(name, script);
    assert.equal(boot.code, 0, boot.log);
    assert.equal(error, undefined);
    const state = result.outs as FirstRunState;
    assert.equal(state.status, "changed");
    assert.ok(state.resources.changed >= 1, JSON.stringify(state.resources));
    assert.match(state.runAt, /^\d{4}-\d\d-\d\dT/);

    const client = world.client();
    const runs = await client.nodeRuns(name);
    await client.close();
    assert.equal(runs?.runs[0]?.status, "changed");
    assert.deepEqual(runs?.runs[0]?.errors, []);
  });

  it("fails with Puppet's error lines when the run fails (a class that does not exist)", async () => {
    const name = "run-bad.first-run.test";
    // Preview validation refuses the class; a stack that turned it off gets a failing first run.
    const refused = await registrations.check!({}, { name, classes: { no_such_class: {} } });
    assert.match(refused.failures?.[0]?.reason ?? "", /environment production has no class no_such_class/);
    const unvalidated = await configuredProvider(
      registrationProvider,
      world.stackConfig({ "espm:validateClassification": "false" }),
    );
    const script = await provision(name, { classes: { no_such_class: {} } }, unvalidated);
    const { boot, error } = await firstRunWhileBooting(name, script);
    assert.equal(boot.code, 1, "the bootstrap exits 1");
    assert.ok(error, "PuppetFirstRun create fails");
    assert.match(error.message, /first run on run-bad\.first-run\.test .* failed/);
    assert.match(error.message, /Could not find class (::)?no_such_class for run-bad\.first-run\.test/);
  });

  it("times out with what to check when no run comes", async () => {
    const name = "run-none.first-run.test";
    await provision(name, { groups: ["base"] });
    const inputs = (
      await firstRuns.check!({}, { nodeName: name, instanceId: "i-0123456789abcdef0", timeoutMinutes: 0.1 })
    ).inputs;
    const started = Date.now();
    await assert.rejects(firstRuns.create(inputs), (err: Error) => {
      assert.match(err.message, /no Puppet run of run-none\.first-run\.test reached espm within 0\.1 minutes/);
      assert.match(err.message, /get-console-output --instance-id i-0123456789abcdef0/);
      assert.match(err.message, /reports = store/);
      return true;
    });
    assert.ok(Date.now() - started < 20_000, "gave up within the short timeout");
  });

  it("never shows another node's reports, and says when the node is not espm's", async () => {
    const reports = world.lab.reportDir;
    const source = readdirSync(reports).find((dir) => dir.startsWith("run-ok."))!;
    const stranger = join(reports, "stranger.first-run.test");
    mkdirSync(stranger, { recursive: true });
    const file = readdirSync(join(reports, source))[0]!;
    copyFileSync(join(reports, source, file), join(stranger, file));
    const client = world.client();
    assert.equal(await client.nodeRuns("stranger.first-run.test"), undefined);
    const raw = await world.espm.raw("GET", "/v1/nodes/stranger.first-run.test/runs");
    assert.equal(raw.status, 404);
    assert.ok(!raw.text.includes("transaction"), "nothing of the report leaks");
    assert.equal((await client.health()).backends?.reports?.status, "ok");
    await client.close();
    const inputs = (
      await firstRuns.check!({}, { nodeName: "stranger.first-run.test", instanceId: "i-1", timeoutMinutes: 0.1 })
    ).inputs;
    await assert.rejects(firstRuns.create(inputs), /espm has no node stranger\.first-run\.test/);
  });
});
