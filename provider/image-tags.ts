/**
 * RegisteredImage's names and the pure readings of EC2's answers, without the AWS SDK (not even its
 * types, which a project without the SDK cannot resolve), so that such a program loads the library
 * and every other resource.
 */

/** The parts of EC2's Tag and Image that espm reads. */
interface Tag {
  Key?: string;
  Value?: string;
}
interface Image {
  BlockDeviceMappings?: Array<{ Ebs?: { SnapshotId?: string } }>;
}

/** Marks an image (and its snapshots) as registered: trusted to launch from. */
export const REGISTERED_TAG = "espm:registered";
/** Carries the create token, by which a retried create finds the image its first try made. */
export const TOKEN_TAG = "espm:create-token";

export const NO_REGION =
  "no AWS region: set aws:region in the stack config (pulumi config set aws:region us-east-1) or AWS_REGION";

export const tagMap = (tags: Tag[] | undefined): Record<string, string> =>
  Object.fromEntries((tags ?? []).map((t) => [t.Key ?? "", t.Value ?? ""]));
export const snapshotsOf = (image: Image): string[] =>
  (image.BlockDeviceMappings ?? []).flatMap((m) => (m.Ebs?.SnapshotId ? [m.Ebs.SnapshotId] : []));
