/**
 * RegisteredImage's lifecycle: what the dynamic-provider host (through the runtime module) and the
 * provider plugin run for it. The program loads only the resource class (./image), which declares the
 * resource, and so none of this: not its input schema (zod), not the AWS SDK.
 */
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import type * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { NO_REGION, snapshotsOf, tagMap } from "./image-tags";
import { changedProperties, checkWith, defined, inputSchemaOnce, messageOf, ResourceInitError } from "./lifecycle";
import { type Lifecycle } from "./thin-provider";
import type { StackSettings } from "./settings";
import type { ImageState } from "./image";

export { REGISTERED_TAG, TOKEN_TAG } from "./image-tags";

const EC2_SDK = "@aws-sdk/client-ec2";
export const EC2_SDK_MISSING = `RegisteredImage needs the AWS SDK for EC2, which pulumi-espm leaves to the projects that image instances (an optional peer dependency): npm install ${EC2_SDK}`;

/** Whether the AWS SDK for EC2 resolves from here, as the EC2 module will load it. */
function ec2SdkInstalled(): boolean {
  try {
    createRequire(__filename).resolve(EC2_SDK);
    return true;
  } catch {
    return false;
  }
}

/** The EC2 half of RegisteredImage, loaded only when an image is made, read, changed or removed. */
async function ec2(): Promise<typeof import("./ec2-images")> {
  if (!ec2SdkInstalled()) throw new Error(EC2_SDK_MISSING);
  return import("./ec2-images");
}

const REPLACING = ["instanceId", "name", "noReboot"] as const;
const UPDATING = ["description", "tags", "snapshotTags", "timeouts", "allowBootstrappedSource"] as const;

/** Seconds in a duration such as `40m`, `90s`, `1h`, or undefined when it is not one. */
export function durationSeconds(text: string): number | undefined {
  const match = /^(\d+)(s|m|h)$/.exec(text.trim());
  if (!match) return undefined;
  return Number(match[1]) * { s: 1, m: 60, h: 3600 }[match[2] as "s" | "m" | "h"];
}

const inputSchema = inputSchemaOnce(() => {
  const duration = z
    .string()
    .refine((value) => durationSeconds(value) !== undefined, "must be a duration such as 40m, 90s or 1h");
  const tags = z.record(z.string(), z.string().max(256)).superRefine((value, ctx) => {
    if (Object.keys(value).length > 40) ctx.addIssue({ code: "custom", message: "at most 40 tags" });
    for (const key of Object.keys(value)) {
      if (/^(aws|espm):/i.test(key))
        ctx.addIssue({ code: "custom", path: [key], message: "tag keys starting aws: or espm: are reserved" });
      else if (key.length < 1 || key.length > 128)
        ctx.addIssue({ code: "custom", path: [key], message: "tag keys are 1 to 128 characters" });
    }
  });
  return z.strictObject({
    instanceId: z.string().regex(/^i-[0-9a-f]{8,17}$/, "must be an EC2 instance id, i-…"),
    name: z
      .string()
      .regex(
        /^[A-Za-z0-9()[\]./\-'@_ ]{3,128}$/,
        "must be 3 to 128 letters, digits, spaces or ( ) [ ] . / - ' @ _ (EC2's AMI name rules)",
      ),
    description: z.string().max(255).optional(),
    noReboot: z.boolean().default(false),
    tags: tags.default({}),
    snapshotTags: tags.default({}),
    timeouts: z
      .strictObject({ create: duration.default("40m"), delete: duration.default("40m") })
      .default({ create: "40m", delete: "40m" }),
    allowBootstrappedSource: z.boolean().default(false),
    scope: z.string().min(1),
  });
});

/** The create token: the same for a retry of this resource's create, different for any replacement. */
export function createToken(inputs: Pick<ImageState, "scope" | "instanceId" | "name" | "noReboot">): string {
  return createHash("sha256")
    .update(JSON.stringify([inputs.scope, inputs.instanceId, inputs.name, inputs.noReboot]))
    .digest("hex")
    .slice(0, 32);
}

export const imageLifecycle = {
  inputSchema,
  replacing: REPLACING,

  async check(
    olds: Partial<ImageState>,
    news: Record<string, unknown>,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.CheckResult> {
    const result = checkWith(inputSchema(), news);
    if (!olds.region && !settings?.aws.region) {
      result.failures.push({ property: "region", reason: NO_REGION });
    }
    // At preview, not at the first create: the SDK is an optional peer.
    if (!ec2SdkInstalled()) result.failures.push({ property: "instanceId", reason: EC2_SDK_MISSING });
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

  async create(
    inputs: ImageState,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.CreateResult<ImageState>> {
    const { adoptOrCreate, applyTags, refuseBootstrappedSource, waitAvailable, withEc2 } = await ec2();
    return withEc2(settings, undefined, async (client) => {
      const region = await client.config.region();
      const token = createToken(inputs);
      await refuseBootstrappedSource(client, inputs);
      const imageId = await adoptOrCreate(client, inputs, token, durationSeconds(inputs.timeouts.delete)!);
      const waited = await waitAvailable(client, inputs.name, imageId, durationSeconds(inputs.timeouts.create)!);
      const snapshotIds = waited.image ? snapshotsOf(waited.image) : [];
      const base = {
        ...inputs,
        imageId,
        snapshotIds,
        region,
        registeredAt: "",
        appliedTags: {},
        appliedSnapshotTags: {},
      };
      if (waited.state !== "available") {
        throw new ResourceInitError(
          `image ${imageId} (${inputs.name}) did not become available: ${waited.reason}. It is kept in state; the next up replaces it, destroy removes it.`,
          imageId,
          defined({ ...base, state: waited.state }),
        );
      }
      try {
        const applied = await applyTags(client, imageId, snapshotIds, inputs, token);
        return {
          id: imageId,
          outs: defined({ ...base, ...applied, registeredAt: new Date().toISOString(), state: "available" }),
        };
      } catch (error) {
        throw new ResourceInitError(
          `image ${imageId} (${inputs.name}) is available but could not be tagged as registered: ${messageOf(error)}`,
          imageId,
          defined({ ...base, state: "available" }),
        );
      }
    });
  },

  async read(
    id: string,
    state: ImageState,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.ReadResult<ImageState>> {
    const { describeImage, withEc2 } = await ec2();
    return withEc2(settings, state.region, async (client) => {
      const image = await describeImage(client, id);
      // Deregistered behind Pulumi's back: an empty id tells the engine, and refresh drops it from state.
      if (!image) return { id: "", props: {} as ImageState };
      return {
        id,
        // EC2 answers an unset description as empty: that is no drift from an unset input.
        props: defined({
          ...state,
          description: image.Description || (state.description === "" ? "" : undefined),
          state: image.State ?? state.state,
          snapshotIds: snapshotsOf(image),
          appliedTags: tagMap(image.Tags),
        }),
      };
    });
  },

  async update(
    id: string,
    olds: ImageState,
    news: ImageState,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.UpdateResult<ImageState>> {
    const { applyTags, setDescription, withEc2 } = await ec2();
    return withEc2(settings, olds.region, async (client) => {
      try {
        if (news.description !== olds.description) await setDescription(client, id, news.description ?? "");
        const applied = await applyTags(client, id, olds.snapshotIds, news, createToken(olds), olds);
        return {
          outs: defined({
            ...olds,
            ...news,
            ...applied,
            imageId: olds.imageId,
            snapshotIds: olds.snapshotIds,
            region: olds.region,
            registeredAt: olds.registeredAt,
            state: olds.state,
            scope: olds.scope,
          }),
        };
      } catch (error) {
        throw new Error(`updating image ${id} failed: ${messageOf(error)}`);
      }
    });
  },

  async delete(id: string, state: ImageState, settings: StackSettings | undefined): Promise<void> {
    const { describeImage, removeImage, withEc2 } = await ec2();
    return withEc2(settings, state.region, async (client) => {
      // Describe first: a create whose wait failed may never have recorded the snapshots.
      const image = await describeImage(client, id);
      const snapshotIds = [...new Set([...(state.snapshotIds ?? []), ...(image ? snapshotsOf(image) : [])])];
      await removeImage(client, id, snapshotIds, durationSeconds(state.timeouts?.delete ?? "40m") ?? 2400);
    });
  },
} satisfies Lifecycle<ImageState>;
