/**
 * The real Pulumi engine (the CLI built from Go modules by scripts/build-pulumi.sh) driving our
 * dynamic resources against live espm, Puppet Server and moto: up, preview --diff, refresh and
 * destroy, with a local file backend and a passphrase secrets provider.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { DescribeImagesCommand, DescribeSnapshotsCommand } from "@aws-sdk/client-ec2";
import type * as automation from "@pulumi/pulumi/automation";
import Database from "better-sqlite3";
import { PuppetNodeRegistration } from "pulumi-espm";
import { program } from "./programs/engine";
import { engineDir, engineStack, requirePulumi } from "./helpers/engine";
import { sharedMoto, type Moto } from "./helpers/moto";
import { crlSerials, sharedWorld, type World } from "./helpers/world";

describe("the real Pulumi engine: one stack's life, in order (each step starts from the one before)", function () {
  this.timeout(600_000);
  /**
   * The steps are one story (up, boot, update, refresh, preview, replace, destroy) on one stack, as
   * a user lives it: each starts from the state the one before left. A failed step skips the rest
   * with its name, instead of failing them for a state they never got.
   */
  let failedStep: string | undefined;
  function step(title: string, body: () => Promise<void>): void {
    it(title, async function () {
      if (failedStep) {
        console.log(`    (skipped: it follows "${failedStep}", which failed)`);
        this.skip();
      }
      try {
        await body();
      } catch (err) {
        failedStep = title;
        throw err;
      }
    });
  }
  let world: World;
  let moto: Moto;
  let dir: string;
  let stack: automation.Stack;
  /** The node name the stack's config gives, as the program reads it. */
  let nodeName = "engine-01.engine.test";

  /** Changes the program's config, as `pulumi config set engine:KEY VALUE` would. */
  const configure = (key: string, value: string) => stack.setConfig(`engine:${key}`, { value });

  function audit(target: string): string[] {
    const db = new Database(join(world.setup.configDir, "espm.db"), { readonly: true, fileMustExist: true });
    try {
      return (
        db.prepare("SELECT action FROM audit WHERE target = ? ORDER BY id").all(target) as { action: string }[]
      ).map((row) => row.action);
    } finally {
      db.close();
    }
  }

  /** The calls for this stack's nodes and certificates that espm received while `action` ran. */
  const espmCallsDuring = (action: () => Promise<unknown>) =>
    world.espmCallsDuring(action, /"url":"\/v1\/(nodes"|nodes\/engine-|certificates\/engine-)/);

  before(async function () {
    requirePulumi(this);
    [world, moto] = await Promise.all([sharedWorld(), sharedMoto()]);
    await moto.reset();
    dir = engineDir("engine");
    stack = await engineStack({
      dir,
      projectName: "espm-engine",
      stackName: "test",
      program,
      config: {
        "engine:nodeName": { value: nodeName },
        "engine:content": { value: "from pulumi up" },
        "engine:managedFile": { value: join(world.dir, "agent-engine/managed.txt") },
        "engine:builderInstanceId": { value: await moto.runInstance() },
        "engine:masterPort": { value: String(world.lab.port) },
        ...world.engineConfig(),
        "aws:region": { value: "us-east-1" },
        "espm:ec2Endpoint": { value: moto.url },
      },
    });
  });

  after(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  step(
    "up creates the registration, the certificate and the image, with the key and PSK only encrypted in state",
    async () => {
      const stackTraceLimit = Error.stackTraceLimit;
      const result = await stack.up();
      assert.equal(result.summary.result, "succeeded");
      assert.deepEqual(result.summary.resourceChanges, { create: 4 });
      // The resources turn stack traces off only while Pulumi registers them (thin-provider.ts).
      assert.equal(Error.stackTraceLimit, stackTraceLimit, "the program's stack trace limit is as it was");
      assert.equal(result.outputs.nodeName!.value, nodeName);
      assert.equal(result.outputs.bootstrapScript!.secret, true);
      // A dynamic provider's progress lines reach `pulumi up`'s output.
      assert.match(result.stdout, /RegisteredImage engine-base: ami-\w+ is available after \d+s/);
      // The program leaves includeCrl out: its deprecated default is named, once, with what to write.
      assert.match(result.stdout, /includeCrl defaults to true, which is deprecated[^\n]*give includeCrl: false/);
      assert.match(result.stdout, /Stack espm-engine-test created \(\d+s\) 1 warning/);

      // The state as the file backend keeps it (Automation's exportStack adds --show-secrets).
      const state = readFileSync(join(dir, "state/.pulumi/stacks/espm-engine/test.json"), "utf8");
      assert.ok(!state.includes(world.setup.psk), "no plaintext PSK in state");
      assert.ok(!state.includes("PRIVATE KEY"), "no plaintext private key in state");
      const resources = (
        JSON.parse(state) as {
          checkpoint: {
            latest: {
              resources: {
                type: string;
                inputs?: Record<string, unknown>;
                outputs?: Record<string, unknown>;
                sourcePosition?: string;
              }[];
            };
          };
        }
      ).checkpoint.latest.resources;
      const encrypted = (value: unknown) => typeof value === "object" && value !== null && "ciphertext" in value;
      const certificate = resources.find((r) => r.type.endsWith("PuppetCertificate"))!;
      assert.ok(encrypted(certificate.outputs!.privateKeyPem), "privateKeyPem is an encrypted secret");
      // Wherever state holds the PSK (the default provider's config inputs, a resource's connection), it is a ciphertext.
      const pskValues = resources.flatMap((r) =>
        Object.entries({ ...r.inputs, ...r.outputs }).filter(([key]) => key === "espm:psk" || key === "connection"),
      );
      for (const [key, value] of pskValues) assert.ok(encrypted(value), `${key} is an encrypted secret`);
      // Without stack traces during registration, the engine still records where each resource was declared.
      for (const resource of resources.filter((r) => r.type.includes("dynamic/espm:")))
        assert.match(resource.sourcePosition ?? "", /^project:\/\/\/.+\.js#\d+,\d+$/, resource.type);
      const client = world.client();
      assert.equal((await client.getNode(nodeName))?.name, nodeName);
      assert.equal((await client.certificateStatus(nodeName))?.state, "signed");
      await client.close();
    },
  );

  step("boots a node from the stack's bootstrap output (agent exit 2)", async () => {
    const outputs = await stack.outputs();
    const boot = await world.boot("engine", String(outputs.bootstrapScript!.value));
    assert.equal(boot.code, 0, `${boot.stdout}\n${boot.log}`);
    assert.match(boot.stdout, /agent exit 2/);
    assert.equal(readFileSync(join(world.dir, "agent-engine/managed.txt"), "utf8"), "from pulumi up\n");
  });

  step("previews a class parameter change as an in-place update, and up updates without replacing", async () => {
    await configure("content", "changed by pulumi");
    const preview = await stack.preview({ diff: true });
    assert.deepEqual(preview.changeSummary, { same: 3, update: 1 }, preview.stdout);
    assert.match(preview.stdout, /~ .*PuppetNodeRegistration/);
    assert.match(preview.stdout, /from pulumi up/);
    assert.match(preview.stdout, /changed by pulumi/);

    const result = await stack.up();
    assert.deepEqual(result.summary.resourceChanges, { same: 3, update: 1 });
    assert.deepEqual(
      audit(nodeName).filter((action) => action.startsWith("node.")),
      ["node.create", "node.update"],
      "an update, not a delete and create",
    );
  });

  step("refresh shows a node deleted behind Pulumi's back, and the next up recreates it", async () => {
    const client = world.client();
    await client.deleteNode(nodeName);
    const refreshed = await stack.refresh();
    assert.equal(refreshed.summary.resourceChanges?.delete, 1, JSON.stringify(refreshed.summary.resourceChanges));
    const result = await stack.up();
    assert.equal(result.summary.resourceChanges?.create, 1);
    assert.equal((await client.getNode(nodeName))?.name, nodeName);
    await client.close();
  });

  step("an unchanged stack's preview makes no node or certificate calls to espm", async () => {
    let summary: automation.PreviewResult["changeSummary"] | undefined;
    const calls = await espmCallsDuring(async () => {
      const preview = await stack.preview({ diff: true });
      summary = preview.changeSummary;
    });
    assert.deepEqual(summary, { same: 4 });
    assert.deepEqual(calls, [], "check and diff work from inputs and state alone");
  });

  step(
    "replaces the certificate delete-before-replace when the certname changes, and revokes the old one",
    async () => {
      const oldName = nodeName;
      const oldSerial = String((await stack.outputs()).serial!.value);
      nodeName = "engine-02.engine.test";
      await configure("nodeName", nodeName);
      const ops: string[] = [];
      const result = await stack.up({
        onEvent: (event) => {
          const meta = event.resourcePreEvent?.metadata;
          if (meta?.type.endsWith("PuppetCertificate")) ops.push(meta.op);
        },
      });
      assert.equal(result.summary.result, "succeeded");
      assert.ok(
        ops.indexOf("delete-replaced") >= 0 && ops.indexOf("delete-replaced") < ops.indexOf("create-replacement"),
        `certificate steps: ${ops}`,
      );
      assert.ok((await crlSerials(world.lab)).includes(oldSerial), "the old serial is in the CRL");
      const client = world.client();
      assert.equal((await client.certificateStatus(oldName))?.state, "revoked");
      assert.equal(await client.getNode(oldName), undefined);
      assert.equal((await client.certificateStatus(nodeName))?.state, "signed");
      await client.close();
    },
  );

  step(
    "destroy removes everything: node gone, certificate revoked, image deregistered, snapshots deleted; the agent is refused",
    async () => {
      const outputs = await stack.outputs();
      const imageId = String(outputs.imageId!.value);
      const snapshotIds = outputs.snapshotIds!.value as string[];
      const script = String(outputs.bootstrapScript!.value);
      const result = await stack.destroy();
      assert.equal(result.summary.result, "succeeded");

      const client = world.client();
      assert.equal(await client.getNode(nodeName), undefined);
      assert.equal((await client.certificateStatus(nodeName))?.state, "revoked");
      await client.close();
      const ec2 = moto.ec2();
      assert.deepEqual((await ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }))).Images, []);
      const { Snapshots } = await ec2.send(
        new DescribeSnapshotsCommand({ Filters: [{ Name: "snapshot-id", Values: snapshotIds }] }),
      );
      ec2.destroy();
      assert.deepEqual(Snapshots, []);

      const refused = await world.boot("engine-after", script);
      assert.equal(refused.code, 1, refused.stdout);
      assert.match(refused.log, /is revoked|certificate unknown|certificate revoked|SSL/i);
    },
  );
});

describe("declaring espm's resources", () => {
  it("restores the program's stack trace limit when Pulumi refuses the declaration", () => {
    const stackTraceLimit = Error.stackTraceLimit;
    assert.throws(
      () => new PuppetNodeRegistration("", { name: "refused.engine.test", groups: ["base"] }),
      /Missing resource name argument/,
    );
    assert.equal(Error.stackTraceLimit, stackTraceLimit);
  });
});
