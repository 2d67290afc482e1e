/**
 * RegisteredImage: an AMI made from a prepared instance and marked trusted ("registered"), for later
 * instances to launch from. create images the instance, waits until the image is available and tags
 * the image and its snapshots `espm:registered=true`; delete deregisters it and deletes its snapshots.
 *
 * A retried create adopts the image the first try made: the image carries a token derived from the
 * project, stack and logical name (which the resource class passes in, since a dynamic provider never
 * sees its URN) and the inputs that force replacement, so a replacement never adopts its predecessor.
 */
import * as pulumi from "@pulumi/pulumi";
import { EspmDynamicResource, thinProvider } from "./thin-provider";

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

/** The provider in this process, as the stored code (`storedProvider`) gets it from the runtime module where it runs. */
export const imageProvider = thinProvider("image");

export class RegisteredImage extends EspmDynamicResource {
  /** The AMI id: the resource's id, so it stays known while a preview shows a tag update. */
  readonly imageId: pulumi.Output<string>;
  declare readonly snapshotIds: pulumi.Output<string[]>;
  declare readonly region: pulumi.Output<string>;
  declare readonly registeredAt: pulumi.Output<string>;
  declare readonly state: pulumi.Output<string>;
  declare readonly appliedTags: pulumi.Output<Record<string, string>>;
  declare readonly appliedSnapshotTags: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: RegisteredImageArgs, opts?: pulumi.CustomResourceOptions) {
    const outputs = {
      snapshotIds: undefined,
      region: undefined,
      registeredAt: undefined,
      state: undefined,
      appliedTags: undefined,
      appliedSnapshotTags: undefined,
    };
    const scope = `${pulumi.getProject()}/${pulumi.getStack()}/${name}`;
    super("image", "RegisteredImage", name, { ...args, scope, ...outputs }, opts);
    this.imageId = this.id;
  }
}
