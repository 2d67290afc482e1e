/**
 * espm for every Pulumi language: the Pulumi YAML program examples/yaml-node (a registration, an
 * enrollment and bootstrapUserData) through the real engine, from the command line, with Pulumi's
 * YAML language host and espm's provider plugin installed from its tarball as users install
 * plugins; against the real espm and Puppet Server, with a real agent booting from the userdata.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { requirePulumi, engineDir } from "./helpers/engine";
import { PulumiCli, yamlHostBin } from "./helpers/pulumi-cli";
import { pluginTarball } from "./helpers/plugin-package";
import { caState, sharedWorld, type World } from "./helpers/world";

const PROJECT = "espm-yaml-node";

interface StoredResource {
  type: string;
  outputs?: Record<string, unknown>;
}

describe("a Pulumi YAML program through espm's provider plugin (examples/yaml-node)", function () {
  this.timeout(600_000);
  let world: World;
  let dir: string;
  let cli: PulumiCli;
  const nodeName = "yaml-01.yaml.test";
  const managedFile = () => join(world.dir, "agent-yaml/managed.txt");
  let script = "";

  before(async function () {
    requirePulumi(this, "the YAML suite");
    if (!yamlHostBin()) {
      console.log("    (no YAML language host: run scripts/build-pulumi-yaml.sh; skipping the YAML suite)");
      this.skip();
    }
    world = await sharedWorld();
    dir = engineDir("yaml");
    cli = await PulumiCli.create({ dir, example: "yaml-node", stack: "test", pluginTarball: await pluginTarball() });
    await cli.config({
      "espm:url": world.espm.url,
      "espm:certificate": world.setup.certificate,
      nodeName,
      puppetMaster: "localhost",
      masterPort: String(world.lab.port),
      managedFile: managedFile(),
    });
    await cli.config({ "espm:psk": world.setup.psk }, true);
  });

  after(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("up registers and enrolls the node, a real agent boots from bootstrapUserData's output, and every secret is ciphertext in the state file", async () => {
    const up = await cli.ok("up", "--yes");
    assert.match(up, /\+ 3 created/);
    assert.doesNotMatch(up, /using pulumi-resource-espm from \$PATH/, "the installed plugin, not one on PATH");
    script = await cli.ok("stack", "output", "userDataScript", "--show-secrets");
    assert.match(script, /^#!/);
    assert.doesNotMatch(script, /PRIVATE KEY/, "the instance key mode: no key in the userdata");
    assert.doesNotMatch(script, /BEGIN CERTIFICATE/, "includeCaBundle: false: no CA bundle in the userdata");
    assert.match(script, /^ESPM_CA_FINGERPRINT=[0-9a-f]{64}$/m, "only its fingerprint, which the agent checks");

    const boot = await world.boot("yaml", script);
    assert.equal(boot.code, 0, `${boot.stdout}\n${boot.log}`);
    assert.match(boot.stdout, /agent exit 2/);
    const client = world.client();
    assert.equal((await client.enrollment(nodeName))?.state, "signed");
    await client.close();

    const state = cli.stateText(PROJECT, "test");
    const resources = (JSON.parse(state) as { checkpoint: { latest: { resources: StoredResource[] } } }).checkpoint
      .latest.resources;
    const enrollment = resources.find((r) => r.type === "espm:index:Enrollment");
    assert.equal(enrollment?.outputs?.caCertificatePem, "", "no CA bundle in the state file either");
    assert.match(String(enrollment?.outputs?.caFingerprint), /^[0-9a-f]{64}$/);
    const token = /<<'ESPM_ENROLLMENT_TOKEN'\n(\w+)\n/.exec(script)?.[1] ?? "";
    assert.ok(token.length >= 32, "the token is in the userdata");
    assert.ok(!state.includes(token), "the token only encrypted in the state file");
    assert.ok(!state.includes(world.setup.psk), "the PSK only encrypted in the state file");
    assert.ok(!state.includes("ESPM_ENROLLMENT_TOKEN"), "the userdata only encrypted in the state file");
    assert.ok(
      (state.match(/"ciphertext"/g) ?? []).length >= 4,
      "the PSK, the token and both userdata outputs encrypted",
    );
  });

  it("preview --diff shows a class parameter's change as an update in place, and the name's as a replacement", async () => {
    await cli.config({ managedFile: `${managedFile()}.moved` });
    const inPlace = await cli.ok("preview", "--diff");
    assert.match(inPlace, /~ espm:index:NodeRegistration: \(update\)/);
    assert.match(inPlace, /~ path\s*: ".*managed\.txt" => ".*managed\.txt\.moved"/);
    assert.doesNotMatch(inPlace, /espm:index:Enrollment: \(replace\)/, "the enrollment follows an unchanged nodeName");
    assert.match(inPlace, /~ 1 to update/);

    await cli.config({ managedFile: managedFile(), nodeName: "yaml-02.yaml.test" });
    const renamed = await cli.ok("preview", "--diff");
    assert.match(renamed, /\+-espm:index:NodeRegistration: \(replace\)/);
    assert.match(renamed, /~ name: "yaml-01\.yaml\.test" => "yaml-02\.yaml\.test"/);
    assert.match(renamed, /\+-2 to replace/);
    await cli.config({ nodeName });
  });

  it("a preview fails on a misspelled class, naming the property", async () => {
    const program = join(cli.project, "Pulumi.yaml");
    const original = readFileSync(program, "utf8");
    writeFileSync(program, original.replace("        espm_file:", "        espm_fil:"));
    try {
      const preview = await cli.run("preview");
      assert.notEqual(preview.code, 0);
      assert.match(preview.stdout, /property classes\.espm_fil .*environment production has no class espm_fil/);
    } finally {
      writeFileSync(program, original);
    }
  });

  it("refresh takes in a change made behind Pulumi's back, and the next up puts the program's back", async () => {
    const client = world.client();
    await client.updateNode(nodeName, {
      groups: ["base"],
      classes: { espm_file: { path: "/tmp/elsewhere", content: "drifted" } },
    });
    const refresh = await cli.ok("refresh", "--yes", "--diff");
    assert.match(refresh, /~ content: "web node, classified through espm" => "drifted"/);
    const up = await cli.ok("up", "--yes");
    assert.match(up, /~ 1 updated/);
    assert.deepEqual((await client.getNode(nodeName))?.classes, {
      espm_file: { path: managedFile(), content: "web node, classified through espm" },
    });
    await client.close();
  });

  it("import adopts a registration espm holds; destroy removes everything: the agent is refused, and nothing is left at the CA or in espm", async () => {
    const client = world.client();
    const adopted = "import-01.yaml.test";
    await client.registerNode({
      name: adopted,
      groups: ["base"],
      classes: { espm_file: { path: "/tmp/i", content: "i" } },
    });
    const imported = await cli.ok("import", "espm:index:NodeRegistration", "adopted", adopted, "--yes");
    assert.match(imported, /= 1 imported/);
    assert.match(imported, /type: espm:NodeRegistration[\s\S]*name: import-01\.yaml\.test/, "the YAML to paste");
    await cli.ok("state", "unprotect", `urn:pulumi:test::${PROJECT}::espm:index:NodeRegistration::adopted`, "--yes");
    assert.equal(
      (await cli.ok("refresh", "--yes")).match(/~ \d+ updated/),
      null,
      "refresh finds the adopted node as imported",
    );

    const destroy = await cli.ok("destroy", "--yes");
    assert.match(destroy, /- 4 deleted/);
    for (const name of [nodeName, adopted]) assert.equal(await client.getNode(name), undefined);
    assert.equal(await client.enrollment(nodeName), undefined);
    assert.equal(await caState(world.lab, nodeName), "absent");
    await client.close();
    const refused = await world.boot("yaml", script);
    assert.notEqual(refused.code, 0, "the destroyed node's agent is refused");
  });
});
