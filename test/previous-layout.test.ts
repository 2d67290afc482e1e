/**
 * A stack made before the workspaces: Pulumi keeps each dynamic resource's provider code in state,
 * and refresh and destroy run that code, not the program's. The fixtures are the code pulumi-espm
 * 0.1.0 serialized when it was one package built from the repository's root (installed from its
 * tarball, so it loads `pulumi-espm/dist/provider/runtime.js` by name). This layout must still
 * answer that name, with the same exports.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type * as automation from "@pulumi/pulumi/automation";
import { PuppetCertificate, PuppetNodeRegistration } from "pulumi-espm";
import { storedProvider, type LifecycleName } from "pulumi-espm/thin-provider";
import { ROOT } from "./helpers/espm";
import { engineDir, engineStack, requirePulumi } from "./helpers/engine";
import { sharedWorld, type World } from "./helpers/world";

/** The provider code of the previous layout, by the resource type it was stored under. */
const PREVIOUS_PROVIDERS: Record<string, LifecycleName> = {
  "pulumi-nodejs:dynamic/espm:PuppetNodeRegistration": "registration",
  "pulumi-nodejs:dynamic/espm:PuppetCertificate": "certificate",
};

function previousProvider(kind: string): string {
  return readFileSync(join(ROOT, `test/fixtures/previous-layout/${kind}.provider.txt`), "utf8");
}

describe("a stack made by the previous layout (one package at the root), refreshed and destroyed by this one", function () {
  this.timeout(300_000);
  let world: World;
  let stack: automation.Stack;
  const nodeName = "old-layout-01.serialization.test";
  let upOutput = "";

  before(async function () {
    requirePulumi(this);
    world = await sharedWorld();
    stack = await engineStack({
      dir: engineDir("previous-layout"),
      projectName: "espm-previous-layout",
      stackName: "test",
      program: async () => {
        const registration = new PuppetNodeRegistration("node", { name: nodeName, groups: ["base"] });
        new PuppetCertificate("node", { certname: registration.nodeName });
      },
      config: world.engineConfig(),
    });
    upOutput = (await stack.up()).stdout;
  });

  it("is told of includeCrl's deprecated default, as every run is, however many ran before it in this process", () => {
    // This mocha process has run other inline programs that leave includeCrl out (the engine suite's).
    assert.match(upOutput, /includeCrl defaults to true, which is deprecated/);
  });

  it("holds the previous layout's provider code, which loads the runtime module by its package path", async () => {
    const exported = await stack.exportStack();
    const resources = (exported.deployment as { resources: { type: string; inputs?: object; outputs?: object }[] })
      .resources;
    let replaced = 0;
    for (const resource of resources) {
      const kind = PREVIOUS_PROVIDERS[resource.type];
      if (!kind) continue;
      const text = previousProvider(kind);
      assert.match(text, /runtimeModule: "pulumi-espm\/dist\/provider\/runtime\.js"/);
      for (const props of [resource.inputs, resource.outputs] as Record<string, unknown>[]) {
        // This layout stores one line where the previous stored Pulumi's serialization of the provider.
        assert.equal(props.__provider, storedProvider(kind), resource.type);
        props.__provider = text;
      }
      replaced++;
    }
    assert.equal(replaced, 2, "the registration and the certificate");
    await stack.importStack(exported);
    const stored = JSON.stringify((await stack.exportStack()).deployment);
    assert.equal(stored.match(/pulumi-espm\/dist\/provider\/runtime\.js/g)?.length, 4, "inputs and outputs of both");
  });

  it("previews this layout's program over it as unchanged: the stored code is no difference", async () => {
    const result = await stack.preview();
    assert.deepEqual(result.changeSummary, { same: 3 });
  });

  it("refreshes with it: both still there, nothing changed", async () => {
    const result = await stack.refresh();
    assert.deepEqual(result.summary.resourceChanges, { same: 3 });
  });

  it("destroys with it: the certificate revoked, the node gone from the classifier", async () => {
    const client = world.client();
    try {
      assert.equal((await client.getNode(nodeName))?.name, nodeName);
      await stack.destroy();
      assert.equal(await client.getNode(nodeName), undefined);
      assert.equal((await client.certificateStatus(nodeName))?.state, "revoked");
    } finally {
      await client.close();
    }
  });
});
