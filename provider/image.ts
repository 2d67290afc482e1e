/**
 * RegisteredImage: an AMI made from a prepared instance and marked trusted ("registered"), for later
 * instances to launch from. create images the instance, waits until the image is available and tags
 * the image and its snapshots `espm:registered=true`; delete deregisters it and deletes its snapshots.
 *
 * A retried create adopts the image the first try made: the image carries a token derived from the
 * project, stack and logical name (which the resource class passes in, since a dynamic provider never
 * sees its URN) and the inputs that force replacement, so a replacement never adopts its predecessor.
 */
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { gunzipSync } from "node:zlib";
import {
  CreateImageCommand,
  CreateTagsCommand,
  DeleteSnapshotCommand,
  DeleteTagsCommand,
  DeregisterImageCommand,
  DescribeImagesCommand,
  DescribeInstanceAttributeCommand,
  EC2Client,
  ModifyImageAttributeCommand,
  type Image,
  type Tag,
} from "@aws-sdk/client-ec2";
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { changedProperties, checkWith, defined, elapsed, messageOf, progress, ResourceInitError } from "./lifecycle";
import { thinProvider, type Lifecycle } from "./thin-provider";
import type { AwsSettings, StackSettings } from "./settings";
import { isEspmBootstrap } from "./userdata";

export interface RegisteredImageArgs {
  /** The prepared instance to image: Puppet agent installed, never bootstrapped. */
  instanceId: pulumi.Input<string>;
  /** The AMI name: 3 to 128 of letters, digits, `( ) [ ] . / - ' @ _` and spaces; unique in the region. */
  name: pulumi.Input<string>;
  description?: pulumi.Input<string>;
  /** Image without stopping the instance (the file systems may then be inconsistent). Default false. */
  noReboot?: pulumi.Input<boolean>;
  /** Tags for the image, beside `espm:registered=true`. */
  tags?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Tags for the image's snapshots, beside `espm:registered=true`. */
  snapshotTags?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** How long create waits for the image and delete for its snapshots: `40m` (default), `90s`, `1h`. */
  timeouts?: pulumi.Input<{ create?: pulumi.Input<string>; delete?: pulumi.Input<string> }>;
  /** Image an instance whose userdata is espm's bootstrap anyway. Its node's key would be in every instance launched from the image. */
  allowBootstrappedSource?: pulumi.Input<boolean>;
}

export interface ImageState {
  instanceId: string;
  name: string;
  description?: string;
  noReboot: boolean;
  tags: Record<string, string>;
  snapshotTags: Record<string, string>;
  timeouts: { create: string; delete: string };
  allowBootstrappedSource: boolean;
  /** `project/stack/logical name`, from the resource class; part of the create token. */
  scope: string;
  imageId: string;
  snapshotIds: string[];
  /** The region the image is in; read and delete use it, whatever the config says later. */
  region: string;
  registeredAt: string;
  /** `available`; `pending` or `failed` when create could not finish (the next up replaces it). */
  state: string;
  appliedTags: Record<string, string>;
  appliedSnapshotTags: Record<string, string>;
}

export const REGISTERED_TAG = "espm:registered";
export const TOKEN_TAG = "espm:create-token";
const REPLACING = ["instanceId", "name", "noReboot"] as const;
const UPDATING = ["description", "tags", "snapshotTags", "timeouts", "allowBootstrappedSource"] as const;

/** Seconds in a duration such as `40m`, `90s`, `1h`, or undefined when it is not one. */
export function durationSeconds(text: string): number | undefined {
  const match = /^(\d+)(s|m|h)$/.exec(text.trim());
  if (!match) return undefined;
  return Number(match[1]) * { s: 1, m: 60, h: 3600 }[match[2] as "s" | "m" | "h"];
}

function inputSchema() {
  const duration = z.string().refine((value) => durationSeconds(value) !== undefined, "must be a duration such as 40m, 90s or 1h");
  const tags = z.record(z.string(), z.string().max(256)).superRefine((value, ctx) => {
    if (Object.keys(value).length > 40) ctx.addIssue({ code: "custom", message: "at most 40 tags" });
    for (const key of Object.keys(value)) {
      if (/^(aws|espm):/i.test(key)) ctx.addIssue({ code: "custom", path: [key], message: "tag keys starting aws: or espm: are reserved" });
      else if (key.length < 1 || key.length > 128) ctx.addIssue({ code: "custom", path: [key], message: "tag keys are 1 to 128 characters" });
    }
  });
  return z.strictObject({
    instanceId: z.string().regex(/^i-[0-9a-f]{8,17}$/, "must be an EC2 instance id, i-…"),
    name: z.string().regex(/^[A-Za-z0-9()[\]./\-'@_ ]{3,128}$/, "must be 3 to 128 letters, digits, spaces or ( ) [ ] . / - ' @ _ (EC2's AMI name rules)"),
    description: z.string().max(255).optional(),
    noReboot: z.boolean().default(false),
    tags: tags.default({}),
    snapshotTags: tags.default({}),
    timeouts: z.strictObject({ create: duration.default("40m"), delete: duration.default("40m") }).default({ create: "40m", delete: "40m" }),
    allowBootstrappedSource: z.boolean().default(false),
    scope: z.string().min(1),
  });
}

/** The create token: the same for a retry of this resource's create, different for any replacement. */
export function createToken(inputs: Pick<ImageState, "scope" | "instanceId" | "name" | "noReboot">): string {
  return createHash("sha256").update(JSON.stringify([inputs.scope, inputs.instanceId, inputs.name, inputs.noReboot])).digest("hex").slice(0, 32);
}

const NO_REGION = "no AWS region: set aws:region in the stack config (pulumi config set aws:region us-east-1) or AWS_REGION";

/** Runs `use` with an EC2 client for `region` (the stack's when not given), and destroys it after. */
async function withEc2<T>(settings: StackSettings | undefined, region: string | undefined, use: (client: EC2Client) => Promise<T>): Promise<T> {
  const aws: AwsSettings = settings?.aws ?? {};
  const where = region ?? aws.region;
  if (!where) throw new Error(NO_REGION);
  const client = new EC2Client({ region: where, endpoint: aws.endpoint, profile: aws.profile });
  try {
    return await use(client);
  } finally {
    client.destroy();
  }
}

const tagList = (tags: Record<string, string>): Tag[] => Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));
const tagMap = (tags: Tag[] | undefined): Record<string, string> => Object.fromEntries((tags ?? []).map((t) => [t.Key ?? "", t.Value ?? ""]));
const snapshotsOf = (image: Image): string[] => (image.BlockDeviceMappings ?? []).flatMap((m) => (m.Ebs?.SnapshotId ? [m.Ebs.SnapshotId] : []));

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : "";
}

async function describeImage(client: EC2Client, imageId: string): Promise<Image | undefined> {
  try {
    const { Images } = await client.send(new DescribeImagesCommand({ ImageIds: [imageId] }));
    const image = Images?.[0];
    return image && image.State !== "deregistered" ? image : undefined;
  } catch (error) {
    if (/^InvalidAMIID\.(NotFound|Unavailable)$/.test(errorName(error))) return undefined;
    throw error;
  }
}

/** Refuses a source whose userdata is espm's bootstrap: the image would carry that node's key. */
async function refuseBootstrappedSource(client: EC2Client, inputs: ImageState): Promise<void> {
  if (inputs.allowBootstrappedSource) return;
  const { UserData } = await client.send(new DescribeInstanceAttributeCommand({ InstanceId: inputs.instanceId, Attribute: "userData" }));
  if (!UserData?.Value) return;
  let bytes = Buffer.from(UserData.Value, "base64");
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
  if (isEspmBootstrap(bytes.toString("utf8"))) {
    throw new Error(
      `instance ${inputs.instanceId} was booted with espm's bootstrap userdata: an image of it would carry that node's Puppet key and certificate into every instance launched from it. ` +
        "Image a prepared instance that was never bootstrapped, or set allowBootstrappedSource: true if the key is removed.",
    );
  }
}

/** The image this resource's earlier create made (found by token), or a fresh one. Failed leftovers are removed. */
async function adoptOrCreate(client: EC2Client, inputs: ImageState, token: string, deleteSeconds: number): Promise<string> {
  const { Images } = await client.send(new DescribeImagesCommand({ Owners: ["self"], Filters: [{ Name: `tag:${TOKEN_TAG}`, Values: [token] }] }));
  for (const image of Images ?? []) {
    if (image.State === "pending" || image.State === "available") {
      progress(`RegisteredImage ${inputs.name}: adopting ${image.ImageId}, made by an earlier try of this create`);
      return image.ImageId!;
    }
    if (image.State === "failed" || image.State === "error") await removeImage(client, image.ImageId!, snapshotsOf(image), deleteSeconds);
  }
  const created = await client.send(
    new CreateImageCommand({
      InstanceId: inputs.instanceId,
      Name: inputs.name,
      Description: inputs.description,
      NoReboot: inputs.noReboot,
      // Only the image: a snapshot TagSpecification is not accepted everywhere (moto fails on it).
      TagSpecifications: [{ ResourceType: "image", Tags: [{ Key: TOKEN_TAG, Value: token }] }],
    }),
  );
  return created.ImageId!;
}

/** Polls until the image is available, with backoff, within `seconds`; says how it goes. */
async function waitAvailable(client: EC2Client, name: string, imageId: string, seconds: number): Promise<{ image?: Image; state: string; reason?: string }> {
  const started = Date.now();
  const deadline = started + seconds * 1000;
  let delay = 2000;
  for (;;) {
    const image = await describeImage(client, imageId);
    const state = image?.State ?? "deregistered";
    progress(`RegisteredImage ${name}: ${imageId} is ${state} after ${elapsed(started)}`);
    if (state === "available") return { image, state };
    if (state !== "pending") return { image, state, reason: image?.StateReason?.Message ?? `the image became ${state}` };
    if (Date.now() + delay > deadline) return { image, state, reason: `still pending after ${elapsed(started)} (timeouts.create is ${seconds}s)` };
    await sleep(delay);
    delay = Math.min(delay * 1.5, 30_000);
  }
}

/** Deregisters the image (gone is fine), then deletes its snapshots, retrying while EC2 still holds them. */
async function removeImage(client: EC2Client, imageId: string, snapshotIds: string[], seconds: number): Promise<void> {
  try {
    await client.send(new DeregisterImageCommand({ ImageId: imageId }));
  } catch (error) {
    if (!/^InvalidAMIID\.(NotFound|Unavailable)$/.test(errorName(error))) throw error;
  }
  const deadline = Date.now() + seconds * 1000;
  for (const snapshotId of snapshotIds) {
    let delay = 1000;
    for (;;) {
      try {
        await client.send(new DeleteSnapshotCommand({ SnapshotId: snapshotId }));
        break;
      } catch (error) {
        if (errorName(error) === "InvalidSnapshot.NotFound") break;
        if (errorName(error) !== "InvalidSnapshot.InUse" || Date.now() + delay > deadline) {
          throw new Error(`image ${imageId} is deregistered, but its snapshot ${snapshotId} could not be deleted: ${messageOf(error)}`);
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 15_000);
      }
    }
  }
}

/** Makes the tags of image and snapshots exactly the wanted ones (ours and the user's). */
async function applyTags(client: EC2Client, imageId: string, snapshotIds: string[], state: ImageState, token: string, before?: ImageState) {
  const imageTags = { ...state.tags, [REGISTERED_TAG]: "true", [TOKEN_TAG]: token };
  const snapshotTags = { ...state.snapshotTags, [REGISTERED_TAG]: "true" };
  const removed = (old: Record<string, string> | undefined, now: Record<string, string>) => Object.keys(old ?? {}).filter((key) => !(key in now));
  const goneFromImage = removed(before?.tags, state.tags);
  const goneFromSnapshots = removed(before?.snapshotTags, state.snapshotTags);
  if (goneFromImage.length) await client.send(new DeleteTagsCommand({ Resources: [imageId], Tags: goneFromImage.map((Key) => ({ Key })) }));
  if (goneFromSnapshots.length && snapshotIds.length) await client.send(new DeleteTagsCommand({ Resources: snapshotIds, Tags: goneFromSnapshots.map((Key) => ({ Key })) }));
  await client.send(new CreateTagsCommand({ Resources: [imageId], Tags: tagList(imageTags) }));
  if (snapshotIds.length) await client.send(new CreateTagsCommand({ Resources: snapshotIds, Tags: tagList(snapshotTags) }));
  return { appliedTags: imageTags, appliedSnapshotTags: snapshotTags };
}

export const imageLifecycle = {
  async check(olds: Partial<ImageState>, news: Record<string, unknown>, settings: StackSettings | undefined): Promise<pulumi.dynamic.CheckResult> {
    const result = checkWith(inputSchema(), news);
    if (!olds.region && !settings?.aws.region) {
      result.failures.push({ property: "region", reason: NO_REGION });
    }
    return result.failures.length ? { failures: result.failures } : { inputs: result.inputs };
  },

  async diff(_id: string, olds: ImageState, news: ImageState): Promise<pulumi.dynamic.DiffResult> {
    const replaces = changedProperties({ ...olds }, { ...news }, REPLACING);
    // A create that did not finish (recorded in state) is replaced by a fresh one.
    if (olds.state !== "available") replaces.push("state");
    const changes = [...replaces, ...changedProperties({ ...olds }, { ...news }, UPDATING)];
    // AWS keeps AMI names unique in a region: with the same name, the old image must go first.
    return { changes: changes.length > 0, replaces, deleteBeforeReplace: olds.name === news.name };
  },

  async create(inputs: ImageState, settings: StackSettings | undefined): Promise<pulumi.dynamic.CreateResult<ImageState>> {
    return withEc2(settings, undefined, async (client) => {
      const region = await client.config.region();
      const token = createToken(inputs);
      await refuseBootstrappedSource(client, inputs);
      const imageId = await adoptOrCreate(client, inputs, token, durationSeconds(inputs.timeouts.delete)!);
      const waited = await waitAvailable(client, inputs.name, imageId, durationSeconds(inputs.timeouts.create)!);
      const snapshotIds = waited.image ? snapshotsOf(waited.image) : [];
      const base = { ...inputs, imageId, snapshotIds, region, registeredAt: "", appliedTags: {}, appliedSnapshotTags: {} };
      if (waited.state !== "available") {
        throw new ResourceInitError(`image ${imageId} (${inputs.name}) did not become available: ${waited.reason}. It is kept in state; the next up replaces it, destroy removes it.`, imageId, defined({ ...base, state: waited.state }));
      }
      try {
        const applied = await applyTags(client, imageId, snapshotIds, inputs, token);
        return { id: imageId, outs: defined({ ...base, ...applied, registeredAt: new Date().toISOString(), state: "available" }) };
      } catch (error) {
        throw new ResourceInitError(`image ${imageId} (${inputs.name}) is available but could not be tagged as registered: ${messageOf(error)}`, imageId, defined({ ...base, state: "available" }));
      }
    });
  },

  async read(id: string, state: ImageState, settings: StackSettings | undefined): Promise<pulumi.dynamic.ReadResult<ImageState>> {
    return withEc2(settings, state.region, async (client) => {
      const image = await describeImage(client, id);
      // Deregistered behind Pulumi's back: an empty id tells the engine, and refresh drops it from state.
      if (!image) return { id: "", props: {} as ImageState };
      return {
        id,
        // EC2 answers an unset description as empty: that is no drift from an unset input.
        props: defined({ ...state, description: image.Description || (state.description === "" ? "" : undefined), state: image.State ?? state.state, snapshotIds: snapshotsOf(image), appliedTags: tagMap(image.Tags) }),
      };
    });
  },

  async update(id: string, olds: ImageState, news: ImageState, settings: StackSettings | undefined): Promise<pulumi.dynamic.UpdateResult<ImageState>> {
    return withEc2(settings, olds.region, async (client) => {
      try {
        if (news.description !== olds.description) {
          await client.send(new ModifyImageAttributeCommand({ ImageId: id, Description: { Value: news.description ?? "" } }));
        }
        const applied = await applyTags(client, id, olds.snapshotIds, news, createToken(olds), olds);
        return { outs: defined({ ...olds, ...news, ...applied, imageId: olds.imageId, snapshotIds: olds.snapshotIds, region: olds.region, registeredAt: olds.registeredAt, state: olds.state, scope: olds.scope }) };
      } catch (error) {
        throw new Error(`updating image ${id} failed: ${messageOf(error)}`);
      }
    });
  },

  async delete(id: string, state: ImageState, settings: StackSettings | undefined): Promise<void> {
    return withEc2(settings, state.region, async (client) => {
      // Describe first: a create whose wait failed may never have recorded the snapshots.
      const image = await describeImage(client, id);
      const snapshotIds = [...new Set([...(state.snapshotIds ?? []), ...(image ? snapshotsOf(image) : [])])];
      await removeImage(client, id, snapshotIds, durationSeconds(state.timeouts?.delete ?? "40m") ?? 2400);
    });
  },
} satisfies Lifecycle<ImageState>;

/** The provider object Pulumi serializes into state: thin calls into the stable runtime module. */
export const imageProvider = thinProvider("image");

export class RegisteredImage extends pulumi.dynamic.Resource {
  /** The AMI id: the resource's id, so it stays known while a preview shows a tag update. */
  readonly imageId: pulumi.Output<string>;
  declare readonly snapshotIds: pulumi.Output<string[]>;
  declare readonly region: pulumi.Output<string>;
  declare readonly registeredAt: pulumi.Output<string>;
  declare readonly state: pulumi.Output<string>;
  declare readonly appliedTags: pulumi.Output<Record<string, string>>;
  declare readonly appliedSnapshotTags: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: RegisteredImageArgs, opts?: pulumi.CustomResourceOptions) {
    const outputs = { snapshotIds: undefined, region: undefined, registeredAt: undefined, state: undefined, appliedTags: undefined, appliedSnapshotTags: undefined };
    const scope = `${pulumi.getProject()}/${pulumi.getStack()}/${name}`;
    super(imageProvider, name, { ...args, scope, ...outputs }, opts, "espm", "RegisteredImage");
    this.imageId = this.id;
  }
}
