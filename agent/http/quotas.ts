/**
 * What one PSK holder may store (`[limits]` in espm.ini): live nodes, one node's classification
 * bytes, and enrollments outstanding. The defaults are far above what a site reaches by accident
 * and far below what fills a disk; over a limit is a 429 (a count) or a 413 (a size) naming it.
 */
import type { Classification } from "espm-sdk/protocol";
import type { AgentContext } from "./context";
import { ApiError } from "./errors";

/** Throws a 413 when the classification, as espm stores it, is larger than `[limits] classification_bytes`. */
export function checkClassificationSize(ctx: AgentContext, classification: Required<Classification>): void {
  const limit = ctx.config.limits.classification_bytes;
  const { classes, parameters, groups, environment } = classification;
  const bytes = Buffer.byteLength(JSON.stringify({ environment, groups, classes, parameters }));
  if (bytes > limit)
    throw new ApiError(
      "payload_too_large",
      `the classification is ${bytes} bytes, over the limit of ${limit} bytes per node ([limits] classification_bytes in espm.ini); move large data to Hiera or a file the node fetches`,
      [{ field: "classes", message: `over ${limit} bytes` }],
    );
}

/** Throws a 429 when espm already holds `[limits] nodes` live nodes. */
export async function checkNodeQuota(ctx: AgentContext): Promise<void> {
  const limit = ctx.config.limits.nodes;
  const live = await ctx.store.liveNodeCount();
  if (live >= limit)
    throw new ApiError(
      "too_many_requests",
      `espm holds ${live} live nodes, its limit ([limits] nodes in espm.ini is ${limit}); delete nodes that are gone, or have the operator raise the limit`,
    );
}

/** Throws a 429 when `[limits] enrollments` tokens are issued and not yet presented. */
export async function checkEnrollmentQuota(ctx: AgentContext): Promise<void> {
  const limit = ctx.config.limits.enrollments;
  const outstanding = (await ctx.store.liveEnrollments()).filter((e) => e.state === "issued").length;
  if (outstanding >= limit)
    throw new ApiError(
      "too_many_requests",
      `${outstanding} enrollment tokens are outstanding, the limit ([limits] enrollments in espm.ini is ${limit}); delete enrollments whose nodes never booted, or have the operator raise the limit`,
    );
}
