/**
 * The instance key mode through the real Pulumi engine: `up` of a registration, its enrollment and
 * PuppetFirstRun while a real agent boots with the userdata (making its own key), then `destroy`:
 * the agent's certificate revoked, nothing left in espm or at the CA, and no private key anywhere
 * in the stack's state.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type * as automation from "@pulumi/pulumi/automation";
import { program } from "./programs/enrollment";
import { engineDir, engineStack, requirePulumi } from "./helpers/engine";
import { caState, crlSerials, sharedWorld, type World } from "./helpers/world";

describe("the real Pulumi engine in the instance key mode", function () {
  this.timeout(600_000);
  let world: World;
  let dir: string;
  let stack: automation.Stack;
  const nodeName = "engine-enroll-01.enroll.test";

  before(async function () {
    requirePulumi(this);
    world = await sharedWorld();
    dir = engineDir("enroll-engine");
    stack = await engineStack({
      dir,
      projectName: "espm-enroll",
      stackName: "test",
      program,
      config: {
        "enroll:nodeName": { value: nodeName },
        "enroll:managedFile": { value: join(world.dir, "agent-engine-enroll/managed.txt") },
        "enroll:userdataFile": { value: join(dir, "userdata.sh") },
        "enroll:masterPort": { value: String(world.lab.port) },
        ...world.engineConfig(),
      },
    });
  });

  after(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("up enrolls the node, which boots with its own key while PuppetFirstRun waits; destroy revokes its certificate and leaves nothing", async () => {
    const up = stack.up();
    const userdata = join(dir, "userdata.sh");
    while (!existsSync(userdata)) {
      const settled = await Promise.race([
        up.then(
          () => "done",
          () => "failed",
        ),
        sleep(250).then(() => "waiting"),
      ]);
      assert.equal(settled, "waiting", "up ended before the instance's userdata existed");
    }
    const script = readFileSync(userdata, "utf8");
    assert.doesNotMatch(script, /PRIVATE KEY/, "no key in the userdata");
    const boot = await world.boot("engine-enroll", script);
    assert.equal(boot.code, 0, `${boot.stdout}\n${boot.log}`);
    assert.match(boot.stdout, /agent exit 2/);

    const result = await up;
    assert.equal(result.summary.result, "succeeded");
    assert.deepEqual(result.summary.resourceChanges, { create: 4 });
    assert.equal(result.outputs.firstRun!.value, "changed");
    assert.equal(readFileSync(join(world.dir, "agent-engine-enroll/managed.txt"), "utf8"), "enrolled by pulumi up\n");

    const state = readFileSync(join(dir, "state/.pulumi/stacks/espm-enroll/test.json"), "utf8");
    assert.ok(!state.includes("PRIVATE KEY"), "no private key in state, encrypted or not: none was ever made here");
    const token = /<<'ESPM_ENROLLMENT_TOKEN'\n(\w+)\n/.exec(script)?.[1] ?? "";
    assert.ok(token.length >= 32);
    assert.ok(!state.includes(token), "the token only encrypted in state");

    const client = world.client();
    const enrollment = await client.enrollment(nodeName);
    assert.equal(enrollment?.state, "signed");
    const serial = enrollment.serial!;

    const destroyed = await stack.destroy();
    assert.equal(destroyed.summary.result, "succeeded");
    assert.ok((await crlSerials(world.lab)).includes(serial), "the agent's serial is in the CRL");
    assert.equal(await caState(world.lab, nodeName), "absent");
    assert.equal(await client.getNode(nodeName), undefined);
    assert.equal(await client.enrollment(nodeName), undefined);
    await client.close();
    const refused = await world.boot("engine-enroll", script);
    assert.notEqual(refused.code, 0, "the destroyed node's agent is refused");
  });
});
