/**
 * `pulumi preview` through the real engine catches classification mistakes against the real Puppet
 * Server (a test module with typed parameters) and espm's groups: an unknown group, an unknown
 * class, a parameter of the wrong type, each naming the property; a required parameter nobody sets
 * is a note; espm down at preview is a note and a clean preview. The discovery functions return what
 * groups.yaml and the module define.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type * as automation from "@pulumi/pulumi/automation";
import { program } from "./programs/preview";
import { freePort } from "./helpers/espm";
import { engineDir, engineStack, requirePulumi } from "./helpers/engine";
import { sharedWorld, type World } from "./helpers/world";

describe("pulumi preview validates classifications against espm and Puppet Server", function () {
  this.timeout(600_000);
  let world: World;
  let dir: string;
  let stack: automation.Stack;

  before(async function () {
    requirePulumi(this);
    world = await sharedWorld();
    dir = engineDir("preview");
    stack = await engineStack({
      dir,
      projectName: "espm-preview",
      stackName: "test",
      program,
      config: {
        ...world.engineConfig(),
      },
    });
  });

  after(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const nodes = (list: unknown[]) => stack.setConfig("preview:nodes", { value: JSON.stringify(list) });

  /** The preview's error text, or "" when it succeeded. */
  async function previewError(): Promise<string> {
    try {
      await stack.preview();
      return "";
    } catch (err) {
      return (err as Error).message;
    }
  }

  const mistakes: Array<{ what: string; node: object; says: RegExp }> = [
    {
      what: "an unknown group, naming groups[0]",
      node: { name: "typo-01.engine.test", groups: ["bsae"] },
      says: /groups\[0\].*espm has no group bsae; its groups.yaml defines: base/,
    },
    {
      what: "a class the environment does not have",
      node: { name: "typo-02.engine.test", classes: { espm_tpyed: { port: 80 } } },
      says: /classes\.espm_tpyed.*environment production has no class espm_tpyed/,
    },
    {
      what: "a parameter of the wrong type, naming the path and Puppet's type",
      node: { name: "typo-03.engine.test", classes: { espm_typed: { port: "80" } } },
      says: /classes\.espm_typed\.port.*Puppet expects Integer\[1, 65535\], got \\?"80\\?"/,
    },
    {
      what: "a wrong element deep in a value",
      node: { name: "typo-04.engine.test", classes: { espm_typed: { port: 80, servers: ["a", 2] } } },
      says: /classes\.espm_typed\.servers\[1\].*Puppet expects String, got 2/,
    },
    {
      what: "a value outside an Enum",
      node: { name: "typo-05.engine.test", classes: { espm_typed: { port: 80, mode: "reckless" } } },
      says: /classes\.espm_typed\.mode.*Puppet expects Enum\['fast', 'safe'\]/,
    },
    {
      what: "a parameter the class does not have",
      node: { name: "typo-06.engine.test", classes: { espm_typed: { port: 80, prot: 80 } } },
      says: /classes\.espm_typed\.prot.*class espm_typed has no parameter prot; it has: port, servers, mode, note/,
    },
  ];
  for (const m of mistakes) {
    it(`fails on ${m.what}`, async () => {
      await nodes([m.node]);
      assert.match(await previewError(), m.says);
    });
  }

  it("previews a correct stack clean, and notes a required parameter nobody sets (Hiera may)", async () => {
    await nodes([
      { name: "good-01.engine.test", groups: ["base"], classes: { espm_typed: { port: 8080, servers: ["a"] } } },
      { name: "good-02.engine.test", classes: { espm_typed: {} } },
    ]);
    const preview = await stack.preview();
    assert.ok([2, 3].includes(preview.changeSummary.create ?? 0), JSON.stringify(preview.changeSummary));
    assert.match(preview.stdout, /good-02\.engine\.test: class espm_typed requires port \(Integer\[1, 65535\]\)/);
  });

  it("notes once that espm cannot be asked, and previews clean (up checks again)", async () => {
    await nodes([{ name: "down-01.engine.test", groups: ["bsae"] }]);
    const closed = `https://127.0.0.1:${await freePort()}`;
    await stack.setConfig("espm:url", { value: closed });
    try {
      const preview = await stack.preview();
      assert.ok([1, 2].includes(preview.changeSummary.create ?? 0), JSON.stringify(preview.changeSummary));
      // Once as the engine shows it live, once in its Diagnostics summary: one message.
      const diagnostics = preview.stdout.slice(preview.stdout.indexOf("Diagnostics:"));
      assert.equal(
        diagnostics.match(/espm could not be asked to validate classifications/g)?.length,
        1,
        preview.stdout,
      );
    } finally {
      await stack.setConfig("espm:url", { value: world.espm.url });
    }
  });

  it("can be turned off by the stack: espm:validateClassification false", async () => {
    await nodes([{ name: "off-01.engine.test", groups: ["bsae"] }]);
    await stack.setConfig("espm:validateClassification", { value: "false" });
    try {
      const preview = await stack.preview();
      assert.ok([1, 2].includes(preview.changeSummary.create ?? 0), JSON.stringify(preview.changeSummary));
    } finally {
      await stack.removeConfig("espm:validateClassification");
    }
  });

  it("notes, and never fails, a classification unchanged in the stack whose group has since gone", async () => {
    const groupsFile = join(world.setup.configDir, "groups.yaml");
    const original = readFileSync(groupsFile, "utf8");
    const client = world.client();
    const groupsAre = async (present: boolean) => {
      for (let waited = 0; waited < 10_000; waited += 100) {
        if ((await client.groups()).groups.some((g) => g.name === "passing") === present) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.fail(`groups.yaml reload: passing ${present ? "never appeared" : "never went"}`);
    };
    try {
      writeFileSync(groupsFile, `${original}  passing:\n    parameters:\n      temp: "yes"\n`);
      await groupsAre(true);
      await nodes([{ name: "kept-01.engine.test", groups: ["passing"] }]);
      assert.equal((await stack.up()).summary.result, "succeeded");
      writeFileSync(groupsFile, original); // the operator removes the group
      await groupsAre(false);
      const preview = await stack.preview();
      assert.equal(preview.changeSummary.update ?? 0, 0);
      assert.match(
        preview.stdout,
        /kept-01\.engine\.test: groups\[0\]: espm has no group passing; .*\(unchanged in this stack, so not failed/,
      );
    } finally {
      writeFileSync(groupsFile, original);
      await stack.destroy();
      await client.close();
    }
  });

  it("gives programs espm's groups and an environment's classes with their types", async () => {
    await nodes([]);
    await stack.setConfig("preview:discover", { value: "true" });
    try {
      const result = await stack.up();
      assert.deepEqual(result.outputs.groupNames!.value, ["base"]);
      assert.deepEqual(result.outputs.typedParameters!.value, [
        "port: Integer[1, 65535]",
        "servers: Array[String] (default)",
        "mode: Enum['fast', 'safe'] (default)",
        "note: Optional[String[1]] (default)",
      ]);
    } finally {
      await stack.removeConfig("preview:discover");
    }
  });

  it("validates a preview of 100 registrations with one call for the groups and one for the classes, not one per node", async () => {
    await nodes([]);
    await stack.setConfig("preview:count", { value: "100" });
    const preview = async () => {
      const result = await stack.preview();
      // 100 nodes, and the stack itself unless an earlier test's up made it.
      assert.ok([100, 101].includes(result.changeSummary.create ?? 0), JSON.stringify(result.changeSummary));
    };
    const calls = () => world.espmCallsDuring(preview, /"url":"\/v1\//);
    try {
      // Without validation, a preview asks espm nothing; with it, each list once (the provider
      // host shares one answer among the 100 checks). The time each takes is the benchmark's to say.
      await stack.setConfig("espm:validateClassification", { value: "false" });
      assert.deepEqual(await calls(), []);
      await stack.removeConfig("espm:validateClassification");
      const validated = await calls();
      assert.deepEqual(
        validated.map((c) => c.replace(/\?.*/, "")).sort(),
        ["GET /v1/classes", "GET /v1/groups"],
        validated.join("\n"),
      );
    } finally {
      await stack.removeConfig("espm:validateClassification");
      await stack.removeConfig("preview:count");
    }
  });
});
