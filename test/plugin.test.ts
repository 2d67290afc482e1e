/**
 * Both providers through Pulumi's real dynamic-provider plugin, over gRPC, in the order the engine
 * calls it for create, a change, a refresh and destroy: Configure, Check, Create, Diff, Update,
 * Read, Delete. Against live espm and Puppet Server.
 */
import assert from "node:assert/strict";
import { storedProvider } from "pulumi-espm/thin-provider";
import { ROOT } from "./helpers/espm";
import { sharedMoto, type Moto } from "./helpers/moto";
import { DynamicProviderPlugin } from "./helpers/plugin";
import { sharedWorld, signedUserdata, type World } from "./helpers/world";

const urn = (type: string, name: string) => `urn:pulumi:test::espm-test::pulumi-nodejs:dynamic/espm:${type}::${name}`;

describe("through Pulumi's dynamic-provider plugin over gRPC", function () {
  this.timeout(180_000);
  let world: World;
  let plugin: DynamicProviderPlugin;
  let moto: Moto;

  before(async () => {
    [world, moto] = await Promise.all([sharedWorld(), sharedMoto()]);
    plugin = await DynamicProviderPlugin.start(ROOT);
    await plugin.configure({
      "espm:url": world.espm.url,
      "espm:psk": world.setup.psk,
      "espm:certificate": world.setup.certificate,
      ...moto.config(),
    });
  });

  after(async () => {
    await plugin?.stop();
  });

  it("runs a registration's whole lifecycle", async () => {
    const __provider = storedProvider("registration");
    const at = urn("PuppetNodeRegistration", "web");
    const refused = await plugin.check(at, {}, { __provider, name: "Web!" });
    assert.deepEqual(refused.failures.map((f) => f.property).sort(), ["groups", "name"]);

    const { inputs } = await plugin.check(
      at,
      {},
      { __provider, name: "plugin-01.plugin.test", groups: ["base"], parameters: { tier: "front" } },
    );
    assert.equal(inputs.__provider, __provider);
    const created = await plugin.create(at, inputs);
    assert.equal(created.id, "plugin-01.plugin.test");
    assert.equal(created.properties.nodeName, "plugin-01.plugin.test");

    const { inputs: changed } = await plugin.check(at, inputs, {
      __provider,
      name: "plugin-01.plugin.test",
      groups: ["base"],
      parameters: { tier: "back" },
    });
    assert.deepEqual(await plugin.diff(at, created.id, created.properties, changed), {
      changes: "some",
      replaces: [],
      deleteBeforeReplace: false,
    });
    const renamed = (await plugin.check(at, inputs, { ...changed, name: "plugin-02.plugin.test" })).inputs;
    assert.deepEqual((await plugin.diff(at, created.id, created.properties, renamed)).replaces, ["name"]);

    const updated = await plugin.update(at, created.id, created.properties, changed);
    assert.deepEqual(updated.properties.parameters, { tier: "back" });
    assert.equal(updated.properties.__provider, __provider);

    const read = await plugin.read(at, created.id, updated.properties, changed);
    assert.equal(read.id, created.id);
    assert.deepEqual(read.properties.parameters, { tier: "back" });

    await plugin.delete(at, created.id, updated.properties);
    const gone = await plugin.read(at, created.id, updated.properties, changed);
    assert.equal(gone.id, "", "refresh sees it gone");
    await plugin.delete(at, created.id, updated.properties);
  });

  it("runs a certificate's whole lifecycle, replacing delete-before-replace", async () => {
    // espm signs only for its own live registrations.
    const client = world.client();
    await client.registerNode({ name: "plugin-03.plugin.test", groups: [] });
    const __provider = storedProvider("certificate");
    const at = urn("PuppetCertificate", "web");
    const { inputs } = await plugin.check(
      at,
      {},
      { __provider, certname: "plugin-03.plugin.test", extensions: { pp_role: "web" } },
    );
    const created = await plugin.create(at, inputs);
    assert.equal(created.id, "plugin-03.plugin.test");
    assert.match(String(created.properties.privateKeyPem), /BEGIN PRIVATE KEY/);
    assert.equal(created.properties.state, "signed");

    assert.deepEqual(await plugin.diff(at, created.id, created.properties, inputs), {
      changes: "none",
      replaces: [],
      deleteBeforeReplace: true,
    });
    const bigger = (await plugin.check(at, inputs, { ...inputs, keyType: "rsa-3072" })).inputs;
    assert.deepEqual(await plugin.diff(at, created.id, created.properties, bigger), {
      changes: "some",
      replaces: ["keyType"],
      deleteBeforeReplace: true,
    });

    const read = await plugin.read(at, created.id, created.properties, inputs);
    assert.equal(read.properties.serial, created.properties.serial);
    await plugin.delete(at, created.id, created.properties);
    const revoked = await plugin.read(at, created.id, created.properties, inputs);
    assert.equal(revoked.properties.state, "revoked");
    await plugin.delete(at, created.id, created.properties);
    await client.deleteNode("plugin-03.plugin.test");
    await client.close();
  });

  it("fails a create with espm's reason and no secret in the message", async () => {
    const __provider = storedProvider("registration");
    const at = urn("PuppetNodeRegistration", "dup");
    const { inputs } = await plugin.check(
      at,
      {},
      { __provider, name: "plugin-04.plugin.test", groups: ["no-such-group"], onConflict: "fail" },
    );
    await assert.rejects(plugin.create(at, inputs), (err: Error & { code: number }) => {
      assert.equal(err.code, 2);
      assert.match(err.message, /no-such-group/);
      assert.ok(!err.message.includes(world.setup.psk));
      return true;
    });
  });

  it("runs an image's whole lifecycle against moto, and shows progress on the host's stdout", async () => {
    await moto.reset();
    const __provider = storedProvider("image");
    const at = urn("RegisteredImage", "base");
    const instanceId = await moto.runInstance();
    const { inputs, failures } = await plugin.check(
      at,
      {},
      { __provider, scope: "espm-test/test/base", instanceId, name: "plugin-image", tags: { team: "a" } },
    );
    assert.deepEqual(failures, []);
    const created = await plugin.create(at, inputs);
    assert.match(created.id, /^ami-/);
    assert.equal(created.properties.region, "us-east-1");
    assert.match(plugin.stdout(), new RegExp(`RegisteredImage plugin-image: ${created.id} is available after \\d+s`));

    const retagged = (await plugin.check(at, inputs, { ...inputs, tags: { team: "b" } })).inputs;
    assert.deepEqual(await plugin.diff(at, created.id, created.properties, retagged), {
      changes: "some",
      replaces: [],
      deleteBeforeReplace: true,
    });
    const updated = await plugin.update(at, created.id, created.properties, retagged);
    assert.equal((updated.properties.appliedTags as Record<string, string>).team, "b");
    const read = await plugin.read(at, created.id, updated.properties, retagged);
    assert.equal((read.properties.appliedTags as Record<string, string>).team, "b");
    await plugin.delete(at, created.id, updated.properties);
    assert.equal((await plugin.read(at, created.id, updated.properties, retagged)).id, "");
    await plugin.delete(at, created.id, updated.properties);
  });

  it("waits for a first Puppet run and fails on a failed one", async () => {
    const __provider = storedProvider("firstRun");
    const client = world.client();
    const boots: Record<string, string> = {};
    for (const [short, classes] of [
      ["plugin-run-ok", { espm_file: { path: `${world.dir}/agent-plugin-run-ok/f.txt`, content: "via plugin" } }],
      ["plugin-run-bad", { missing_class: {} }],
    ] as const) {
      const name = `${short}.plugin.test`;
      await client.registerNode({ name, classes });
      boots[short] = (await signedUserdata(client, name, { masterPort: world.lab.port })).userdata.script;
    }
    await client.close();

    const at = urn("PuppetFirstRun", "ok");
    const { inputs } = await plugin.check(
      at,
      {},
      { __provider, nodeName: "plugin-run-ok.plugin.test", instanceId: "i-0123456789abcdef0", timeoutMinutes: 3 },
    );
    const [created, boot] = await Promise.all([
      plugin.create(at, inputs),
      world.boot("plugin-run-ok", boots["plugin-run-ok"]!),
    ]);
    assert.equal(boot.code, 0);
    assert.equal(created.properties.status, "changed");
    assert.match(plugin.stdout(), /PuppetFirstRun plugin-run-ok\.plugin\.test: changed/);
    const moved = (await plugin.check(at, inputs, { ...inputs, instanceId: "i-0fedcba9876543210" })).inputs;
    assert.deepEqual((await plugin.diff(at, created.id, created.properties, moved)).replaces, ["instanceId"]);
    await plugin.delete(at, created.id, created.properties);

    const bad = urn("PuppetFirstRun", "bad");
    const badInputs = (
      await plugin.check(
        bad,
        {},
        { __provider, nodeName: "plugin-run-bad.plugin.test", instanceId: "i-0123456789abcdef1", timeoutMinutes: 3 },
      )
    ).inputs;
    const [failed] = await Promise.all([
      plugin.create(bad, badInputs).then(
        () => undefined,
        (err: Error) => err,
      ),
      world.boot("plugin-run-bad", boots["plugin-run-bad"]!),
    ]);
    assert.ok(failed, "the create failed");
    assert.match(failed.message, /Could not find class (::)?missing_class for plugin-run-bad\.plugin\.test/);
  });
});
