/**
 * A rotated PSK through the real engine. Pulumi runs refresh and destroy with the provider settings
 * recorded at the last `up`, whatever the stack's config says now, so the old PSK is refused there
 * and the error names the ways out; both work: ESPM_* environment variables (read at every
 * operation, winning over the recorded config), and `--run-program` (the program runs, so the
 * current config is used).
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type * as automation from "@pulumi/pulumi/automation";
import { EspmClient } from "espm-sdk/client";
import { program } from "./programs/rotation";
import { engineDir, engineStack, requirePulumi } from "./helpers/engine";
import { sharedWorld, type World } from "./helpers/world";

describe("the real Pulumi engine after a PSK rotation", function () {
  this.timeout(600_000);
  let world: World;
  let dir: string;
  const originalPsk = () => world.setup.psk;

  const stackFor = async (name: string, nodeName: string) =>
    engineStack({
      dir: join(dir, name),
      projectName: "espm-rotation",
      stackName: name,
      program,
      config: { "rotation:nodeName": { value: nodeName }, ...world.engineConfig() },
    });

  /** The registration espm holds for `name`, asked with `psk`. */
  const nodeAtEspm = async (name: string, psk: string) => {
    const client = new EspmClient({ url: world.espm.url, psk, certificate: world.setup.certificate });
    try {
      return await client.getNode(name);
    } finally {
      await client.close();
    }
  };

  /** The operation's failure message (it must fail). */
  const failure = async (operation: Promise<unknown>): Promise<string> => {
    const err = await operation.then(
      () => assert.fail("the operation succeeded with the PSK recorded before the rotation"),
      (e: Error) => e,
    );
    return err.message;
  };

  before(async function () {
    requirePulumi(this);
    world = await sharedWorld();
    dir = engineDir("rotation");
  });

  after(async () => {
    // The shared world goes on with its own PSK.
    if (world) await world.rotatePsk(originalPsk());
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("refreshes and destroys with ESPM_PSK from the environment, after the recorded PSK is refused with the ways out named", async () => {
    const stack = await stackFor("env", "rot-01.engine.test");
    assert.equal((await stack.up()).summary.result, "succeeded");
    const rotated = await world.rotatePsk();
    const refused = await failure(stack.refresh());
    assert.match(refused, /refused the PSK/);
    assert.match(refused, /recorded at the last `pulumi up`/);
    assert.match(refused, /--run-program/);
    assert.match(refused, /ESPM_PSK/);
    assert.ok(!refused.includes(rotated) && !refused.includes(originalPsk()), "no PSK in the message");
    stack.workspace.envVars.ESPM_PSK = rotated;
    assert.equal((await stack.refresh()).summary.result, "succeeded");
    assert.equal((await stack.destroy()).summary.result, "succeeded");
    assert.equal(await nodeAtEspm("rot-01.engine.test", rotated), undefined, "destroyed at espm");
    await world.rotatePsk(originalPsk());
  });

  it("refreshes and destroys with --run-program, which uses the stack's current config", async () => {
    const stack: automation.Stack = await stackFor("run-program", "rot-02.engine.test");
    assert.equal((await stack.up()).summary.result, "succeeded");
    const rotated = await world.rotatePsk();
    await stack.setConfig("espm:psk", { value: rotated, secret: true });
    // The current config has the new PSK, but refresh without the program uses the recorded one.
    assert.match(await failure(stack.refresh()), /recorded at the last `pulumi up`/);
    assert.equal((await stack.refresh({ runProgram: true })).summary.result, "succeeded");
    assert.equal((await stack.destroy({ runProgram: true })).summary.result, "succeeded");
    assert.equal(await nodeAtEspm("rot-02.engine.test", rotated), undefined, "destroyed at espm");
  });
});
