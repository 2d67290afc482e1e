/**
 * RegisteredImage's provider methods against moto's EC2 server (test/fixtures/moto/launcher.py),
 * through @aws-sdk/client-ec2 with an endpoint override.
 */
import assert from "node:assert/strict";
import {
  DeleteSnapshotCommand,
  DeregisterImageCommand,
  DescribeImagesCommand,
  DescribeSnapshotsCommand,
  type EC2Client,
} from "@aws-sdk/client-ec2";
import { imageProvider, renderUserData } from "pulumi-espm";
import type { ImageState } from "pulumi-espm/image";
import { createToken, TOKEN_TAG } from "pulumi-espm/image-lifecycle";
import { ResourceInitError } from "pulumi-espm/lifecycle";
import { createSelfSignedCertificate } from "espm-agent/http/self-signed";
import { sharedMoto, type Moto } from "./helpers/moto";
import { configuredProvider } from "./helpers/providers";

type Provider = typeof imageProvider;

function configured(moto: Moto, overrides: Record<string, string | undefined> = {}): Promise<Provider> {
  return configuredProvider(imageProvider, { ...moto.config(), ...overrides });
}

async function checked(provider: Provider, news: Record<string, unknown>): Promise<ImageState> {
  const result = await provider.check!({}, { scope: "espm-test/test/image", ...news });
  assert.deepEqual(result.failures ?? [], [], "check passes");
  return result.inputs as ImageState;
}

async function snapshotsExist(client: EC2Client, ids: string[]): Promise<string[]> {
  const { Snapshots } = await client.send(
    new DescribeSnapshotsCommand({ Filters: [{ Name: "snapshot-id", Values: ids }] }),
  );
  return (Snapshots ?? []).map((s) => s.SnapshotId!);
}

/** Captures the progress lines a create prints, as `pulumi up` would show them. */
async function withProgress<T>(run: () => Promise<T>): Promise<{ result?: T; error?: unknown; lines: string[] }> {
  const lines: string[] = [];
  const original = console.log;
  console.log = (...args: unknown[]) => lines.push(args.join(" "));
  try {
    return { result: await run(), lines };
  } catch (error) {
    return { error, lines };
  } finally {
    console.log = original;
  }
}

describe("RegisteredImage against moto's EC2", function () {
  this.timeout(120_000);
  let moto: Moto;
  let images: Provider;
  let ec2: EC2Client;

  before(async () => {
    moto = await sharedMoto();
    images = await configured(moto);
    ec2 = moto.ec2();
  });

  beforeEach(async () => {
    await moto.reset();
  });

  after(() => ec2?.destroy());

  describe("check and diff", () => {
    it("names a bad instance id, a bad name and a missing region", async () => {
      const noRegion = await configured(moto, { "aws:region": undefined });
      const saved = [process.env.AWS_REGION, process.env.AWS_DEFAULT_REGION];
      delete process.env.AWS_REGION;
      delete process.env.AWS_DEFAULT_REGION;
      try {
        const result = await noRegion.check!(
          {},
          { scope: "p/s/n", instanceId: "web-01", name: "x", tags: { "aws:owner": "me" } },
        );
        const byProperty = new Map((result.failures ?? []).map((f) => [f.property, f.reason]));
        assert.match(byProperty.get("instanceId") ?? "", /i-/);
        assert.match(byProperty.get("name") ?? "", /3 to 128/);
        assert.match(byProperty.get("region") ?? "", /aws:region/);
        assert.match(byProperty.get("tags.aws:owner") ?? "", /reserved/);
      } finally {
        if (saved[0] !== undefined) process.env.AWS_REGION = saved[0];
        if (saved[1] !== undefined) process.env.AWS_DEFAULT_REGION = saved[1];
      }
    });

    it("updates tags and description in place, replaces on instance, name or noReboot", async () => {
      const olds = {
        ...(await checked(images, { instanceId: "i-0123456789abcdef0", name: "base 1", tags: { team: "a" } })),
        state: "available",
      };
      assert.deepEqual(await images.diff!("ami-1", olds, { ...olds, tags: { team: "b" }, description: "new" }), {
        changes: true,
        replaces: [],
        deleteBeforeReplace: true,
      });
      assert.deepEqual(await images.diff!("ami-1", olds, { ...olds }), {
        changes: false,
        replaces: [],
        deleteBeforeReplace: true,
      });
      // Same name: the old image must go first, since AWS keeps names unique per region.
      assert.deepEqual(await images.diff!("ami-1", olds, { ...olds, instanceId: "i-0123456789abcdef1" }), {
        changes: true,
        replaces: ["instanceId"],
        deleteBeforeReplace: true,
      });
      assert.deepEqual(await images.diff!("ami-1", olds, { ...olds, name: "base 2" }), {
        changes: true,
        replaces: ["name"],
        deleteBeforeReplace: false,
      });
      assert.deepEqual((await images.diff!("ami-1", { ...olds, state: "pending" }, { ...olds })).replaces, ["state"]);
    });
  });

  it("creates, reads, updates tags and deletes with its snapshots", async () => {
    const instanceId = await moto.runInstance();
    const inputs = await checked(images, {
      instanceId,
      name: "base-2026.11",
      description: "prepared",
      tags: { team: "infra", os: "debian" },
      snapshotTags: { team: "infra" },
    });
    const { result: created, lines } = await withProgress(() => images.create(inputs));
    const state = created!.outs as ImageState;
    assert.match(created!.id, /^ami-/);
    assert.equal(state.region, "us-east-1");
    assert.equal(state.state, "available");
    assert.ok(state.snapshotIds.length >= 1);
    assert.ok(
      lines.some((line) => line.includes(`${created!.id} is available after`)),
      lines.join("\n"),
    );

    const { Images } = await ec2.send(new DescribeImagesCommand({ ImageIds: [created!.id] }));
    const tags = Object.fromEntries(Images![0]!.Tags!.map((t) => [t.Key, t.Value]));
    assert.deepEqual(tags, {
      team: "infra",
      os: "debian",
      "espm:registered": "true",
      [TOKEN_TAG]: createToken(inputs),
    });
    assert.deepEqual(state.appliedTags, tags);
    const { Snapshots } = await ec2.send(
      new DescribeSnapshotsCommand({ Filters: [{ Name: "snapshot-id", Values: state.snapshotIds }] }),
    );
    for (const snapshot of Snapshots!)
      assert.deepEqual(Object.fromEntries(snapshot.Tags!.map((t) => [t.Key, t.Value])), {
        team: "infra",
        "espm:registered": "true",
      });

    const read = await images.read!(created!.id, state);
    assert.equal(read.id, created!.id);
    assert.deepEqual((read.props as ImageState).appliedTags, tags);

    const news = await checked(images, { ...inputs, tags: { team: "platform" }, description: "prepared, v2" });
    const updated = await images.update!(created!.id, state, news);
    const after = (await ec2.send(new DescribeImagesCommand({ ImageIds: [created!.id] }))).Images![0]!;
    assert.deepEqual(Object.fromEntries(after.Tags!.map((t) => [t.Key, t.Value])), {
      team: "platform",
      "espm:registered": "true",
      [TOKEN_TAG]: createToken(inputs),
    });
    assert.equal((updated.outs as ImageState).imageId, created!.id);

    await images.delete!(created!.id, updated.outs);
    assert.deepEqual((await ec2.send(new DescribeImagesCommand({ ImageIds: [created!.id] }))).Images, []);
    assert.deepEqual(await snapshotsExist(ec2, state.snapshotIds), []);
    await images.delete!(created!.id, updated.outs);
  });

  it("adopts the image a retried create made, and a replacement never does", async () => {
    const instanceId = await moto.runInstance();
    const inputs = await checked(images, { instanceId, name: "retry-me" });
    const first = await images.create(inputs);
    // The engine never recorded the first answer (the program was killed): it creates again.
    const retry = await images.create(inputs);
    assert.equal(retry.id, first.id);
    const { Images } = await ec2.send(
      new DescribeImagesCommand({
        Owners: ["self"],
        Filters: [{ Name: `tag:${TOKEN_TAG}`, Values: [createToken(inputs)] }],
      }),
    );
    assert.equal(Images!.length, 1);
    const replacement = await images.create({ ...inputs, name: "retry-me-2" });
    assert.notEqual(replacement.id, first.id);
    for (const made of [first, replacement]) await images.delete!(made.id, made.outs);
  });

  it("leaves state on refresh when the image was deregistered behind Pulumi's back", async () => {
    const created = await images.create(
      await checked(images, { instanceId: await moto.runInstance(), name: "out-of-band" }),
    );
    const state = created.outs as ImageState;
    await ec2.send(new DeregisterImageCommand({ ImageId: created.id }));
    for (const id of state.snapshotIds) await ec2.send(new DeleteSnapshotCommand({ SnapshotId: id }));
    assert.equal((await images.read!(created.id, state)).id, "");
    await images.delete!(created.id, state);
  });

  it("waits with progress while the image is pending", async () => {
    await moto.imagesAvailableAfter(2);
    const inputs = await checked(images, { instanceId: await moto.runInstance(), name: "slow-image" });
    const { result, lines } = await withProgress(() => images.create(inputs));
    assert.equal((result!.outs as ImageState).state, "available");
    assert.ok(
      lines.some((line) => /is pending after \d+s/.test(line)),
      lines.join("\n"),
    );
    await images.delete!(result!.id, result!.outs);
  });

  it("records an image whose wait times out, and destroy removes it with its snapshots", async () => {
    await moto.imagesAvailableAfter(1000);
    const inputs = await checked(images, {
      instanceId: await moto.runInstance(),
      name: "stuck-image",
      timeouts: { create: "3s" },
    });
    const { error } = await withProgress(() => images.create(inputs));
    assert.ok(error instanceof ResourceInitError, String(error));
    assert.match(error.id, /^ami-/);
    assert.equal(error.properties.state, "pending");
    assert.match(error.message, /still pending after .*timeouts\.create is 3s/);
    // Destroy deletes with the properties recorded in state.
    const { Images } = await ec2.send(new DescribeImagesCommand({ ImageIds: [error.id] }));
    const snapshots = Images![0]!.BlockDeviceMappings!.map((m) => m.Ebs!.SnapshotId!);
    await images.delete!(error.id, error.properties);
    assert.deepEqual(await snapshotsExist(ec2, snapshots), []);
    assert.deepEqual((await ec2.send(new DescribeImagesCommand({ ImageIds: [error.id] }))).Images, []);
  });

  it("records an image that ends failed, with EC2's reason", async () => {
    await moto.imagesAvailableAfter(1);
    const inputs = await checked(images, { instanceId: await moto.runInstance(), name: "fails-image" });
    const { error } = await withProgress(() => images.create(inputs));
    assert.ok(error instanceof ResourceInitError, String(error));
    assert.equal(error.properties.state, "failed");
    assert.match(error.message, /did not become available/);
    await images.delete!(error.id, error.properties);
    assert.deepEqual((await ec2.send(new DescribeImagesCommand({ ImageIds: [error.id] }))).Images, []);
  });

  it("refuses to image an instance booted with espm's bootstrap, unless told to", async () => {
    const ca = createSelfSignedCertificate({ commonName: "ca", altNames: [] });
    const userData = renderUserData({
      nodeName: "web-01.example.test",
      master: "puppet",
      certificatePem: ca.certificatePem,
      privateKeyPem: ca.privateKeyPem,
      caCertificatePem: ca.certificatePem,
    });
    const instanceId = await moto.runInstance(userData.script);
    const inputs = await checked(images, { instanceId, name: "from-a-node" });
    await assert.rejects(images.create(inputs), /booted with espm's bootstrap userdata.*allowBootstrappedSource/);
    const { Images } = await ec2.send(new DescribeImagesCommand({ Owners: ["self"] }));
    assert.deepEqual(Images, [], "no image was made");
    const allowed = await images.create({ ...inputs, allowBootstrappedSource: true });
    await images.delete!(allowed.id, allowed.outs);
  });
});
