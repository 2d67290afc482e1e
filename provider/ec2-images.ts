/**
 * The EC2 work behind RegisteredImage: an EC2 client per operation, and the calls that make, wait
 * for, tag and remove an image and its snapshots. The lifecycle in image.ts reads as check → diff →
 * create → read → update → delete on top of these. The only module that loads the AWS SDK, an
 * optional peer of pulumi-espm: image.ts loads this one when an image is made, read or removed.
 */
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
  waitForImageAvailable,
  type DescribeImagesCommandOutput,
  type Image,
  type Tag,
} from "@aws-sdk/client-ec2";
import { elapsed, messageOf, poll, progress } from "./lifecycle";
import type { AwsSettings, StackSettings } from "./settings";
import { isEspmBootstrap } from "./userdata";
import { NO_REGION, REGISTERED_TAG, snapshotsOf, TOKEN_TAG } from "./image-tags";

/** Runs `use` with an EC2 client for `region` (the stack's when not given), and destroys it after. */
export async function withEc2<T>(
  settings: StackSettings | undefined,
  region: string | undefined,
  use: (client: EC2Client) => Promise<T>,
): Promise<T> {
  const aws: AwsSettings = settings?.aws ?? {};
  const where = region ?? aws.region;
  if (!where) throw new Error(NO_REGION);
  // The AWS SDK prints seven lines into every `pulumi up` and `destroy` on Node 20 ("node >= 22"):
  // espm supports Node 20, and its users cannot act on a warning about the SDK's own plans.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const client = new EC2Client({ region: where, endpoint: aws.endpoint, profile: aws.profile });
  try {
    return await use(client);
  } finally {
    client.destroy();
  }
}

const tagList = (tags: Record<string, string>): Tag[] => Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : "";
}

/** Whether EC2 answered that the image does not exist (any more). */
function isImageGone(error: unknown): boolean {
  return /^InvalidAMIID\.(NotFound|Unavailable)$/.test(errorName(error));
}

/** The image, or undefined when it is gone (deregistered, or never was). */
export async function describeImage(client: EC2Client, imageId: string): Promise<Image | undefined> {
  try {
    const { Images } = await client.send(new DescribeImagesCommand({ ImageIds: [imageId] }));
    const image = Images?.[0];
    return image && image.State !== "deregistered" ? image : undefined;
  } catch (error) {
    if (isImageGone(error)) return undefined;
    throw error;
  }
}

/** Refuses a source whose userdata is espm's bootstrap: the image would carry that node's key. */
export async function refuseBootstrappedSource(
  client: EC2Client,
  source: { instanceId: string; allowBootstrappedSource: boolean },
): Promise<void> {
  if (source.allowBootstrappedSource) return;
  const { UserData } = await client.send(
    new DescribeInstanceAttributeCommand({ InstanceId: source.instanceId, Attribute: "userData" }),
  );
  if (!UserData?.Value) return;
  let bytes = Buffer.from(UserData.Value, "base64");
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
  if (isEspmBootstrap(bytes.toString("utf8"))) {
    throw new Error(
      `instance ${source.instanceId} was booted with espm's bootstrap userdata: an image of it would carry that node's Puppet key and certificate into every instance launched from it. ` +
        "Image a prepared instance that was never bootstrapped, or set allowBootstrappedSource: true if the key is removed.",
    );
  }
}

export interface ImageRequest {
  instanceId: string;
  name: string;
  description?: string;
  noReboot: boolean;
}

/** The image this resource's earlier create made (found by token), or a fresh one. Failed leftovers are removed. */
export async function adoptOrCreate(
  client: EC2Client,
  request: ImageRequest,
  token: string,
  deleteSeconds: number,
): Promise<string> {
  const { Images } = await client.send(
    new DescribeImagesCommand({ Owners: ["self"], Filters: [{ Name: `tag:${TOKEN_TAG}`, Values: [token] }] }),
  );
  for (const image of Images ?? []) {
    if (image.State === "pending" || image.State === "available") {
      progress(`RegisteredImage ${request.name}: adopting ${image.ImageId}, made by an earlier try of this create`);
      return image.ImageId!;
    }
    if (image.State === "failed" || image.State === "error")
      await removeImage(client, image.ImageId!, snapshotsOf(image), deleteSeconds);
  }
  const created = await client.send(
    new CreateImageCommand({
      InstanceId: request.instanceId,
      Name: request.name,
      Description: request.description,
      NoReboot: request.noReboot,
      // Only the image: a snapshot TagSpecification is not accepted everywhere (moto fails on it).
      TagSpecifications: [{ ResourceType: "image", Tags: [{ Key: TOKEN_TAG, Value: token }] }],
    }),
  );
  return created.ImageId!;
}

/**
 * Waits until the image is available, within `seconds`, with the SDK's own waiter (backoff with
 * jitter from 2 s to 30 s); says how it goes after each of its DescribeImages.
 */
export async function waitAvailable(
  client: EC2Client,
  name: string,
  imageId: string,
  seconds: number,
): Promise<{ image?: Image; state: string; reason?: string }> {
  const started = Date.now();
  let last: Image | undefined;
  const watcher = "espm image progress";
  client.middlewareStack.add(
    (next) => async (args) => {
      const result = await next(args);
      const asked = (args.input as { ImageIds?: string[] }).ImageIds;
      if (asked?.length === 1 && asked[0] === imageId) {
        last = (result.output as DescribeImagesCommandOutput).Images?.[0];
        progress(`RegisteredImage ${name}: ${imageId} is ${last?.State ?? "gone"} after ${elapsed(started)}`);
      }
      return result;
    },
    { step: "initialize", name: watcher, override: true },
  );
  try {
    const minDelay = Math.min(2, seconds / 2);
    const waited = await waitForImageAvailable(
      { client, maxWaitTime: seconds, minDelay, maxDelay: Math.max(minDelay, 30) },
      { ImageIds: [imageId] },
    );
    // The SDK's WaiterState, from a package of its own that espm does not load.
    if (String(waited.state) === "SUCCESS") return { image: last, state: "available" };
    const state = last?.State ?? "deregistered";
    if (state === "pending")
      return {
        image: last,
        state,
        reason: `still pending after ${elapsed(started)} (timeouts.create is ${seconds}s)`,
      };
    return { image: last, state, reason: last?.StateReason?.Message ?? `the image became ${state}` };
  } finally {
    client.middlewareStack.remove(watcher);
  }
}

/** Deregisters the image (gone is fine), then deletes its snapshots, retrying while EC2 still holds them. */
export async function removeImage(
  client: EC2Client,
  imageId: string,
  snapshotIds: string[],
  seconds: number,
): Promise<void> {
  try {
    await client.send(new DeregisterImageCommand({ ImageId: imageId }));
  } catch (error) {
    if (!isImageGone(error)) throw error;
  }
  const deadline = Date.now() + seconds * 1000;
  for (const snapshotId of snapshotIds) {
    let lastError: unknown;
    const deleted = await poll({ deadline, firstDelayMs: 1000, factor: 2, maxDelayMs: 15_000 }, async () => {
      try {
        await client.send(new DeleteSnapshotCommand({ SnapshotId: snapshotId }));
        return true;
      } catch (error) {
        if (errorName(error) === "InvalidSnapshot.NotFound") return true;
        lastError = error;
        // Still in use by the image EC2 is deregistering: try again. Anything else will not change.
        if (errorName(error) === "InvalidSnapshot.InUse") return undefined;
        throw new Error(
          `image ${imageId} is deregistered, but its snapshot ${snapshotId} could not be deleted: ${messageOf(error)}`,
        );
      }
    });
    if (!("value" in deleted))
      throw new Error(
        `image ${imageId} is deregistered, but its snapshot ${snapshotId} could not be deleted: ${messageOf(lastError)}`,
      );
  }
}

export interface WantedTags {
  tags: Record<string, string>;
  snapshotTags: Record<string, string>;
}

/** Makes the tags of image and snapshots exactly the wanted ones (ours and the user's). */
export async function applyTags(
  client: EC2Client,
  imageId: string,
  snapshotIds: string[],
  wanted: WantedTags,
  token: string,
  before?: WantedTags,
) {
  const imageTags = { ...wanted.tags, [REGISTERED_TAG]: "true", [TOKEN_TAG]: token };
  const snapshotTags = { ...wanted.snapshotTags, [REGISTERED_TAG]: "true" };
  const removed = (old: Record<string, string> | undefined, now: Record<string, string>) =>
    Object.keys(old ?? {}).filter((key) => !(key in now));
  const goneFromImage = removed(before?.tags, wanted.tags);
  const goneFromSnapshots = removed(before?.snapshotTags, wanted.snapshotTags);
  if (goneFromImage.length)
    await client.send(new DeleteTagsCommand({ Resources: [imageId], Tags: goneFromImage.map((Key) => ({ Key })) }));
  if (goneFromSnapshots.length && snapshotIds.length)
    await client.send(
      new DeleteTagsCommand({ Resources: snapshotIds, Tags: goneFromSnapshots.map((Key) => ({ Key })) }),
    );
  await client.send(new CreateTagsCommand({ Resources: [imageId], Tags: tagList(imageTags) }));
  if (snapshotIds.length)
    await client.send(new CreateTagsCommand({ Resources: snapshotIds, Tags: tagList(snapshotTags) }));
  return { appliedTags: imageTags, appliedSnapshotTags: snapshotTags };
}

/** Sets an image's description. */
export async function setDescription(client: EC2Client, imageId: string, description: string): Promise<void> {
  await client.send(new ModifyImageAttributeCommand({ ImageId: imageId, Description: { Value: description } }));
}
