/**
 * GET /v1/health. Without the PSK it says only whether espm is up: an unauthenticated caller learns
 * nothing about versions, paths or backends. With the PSK it reports each backend's state, from a
 * cache that is refreshed at most every few seconds, so health checks never load Puppet Server.
 */
import { AnswerCache } from "espm-sdk/cache";
import type { FastifyPluginAsync } from "fastify";
import { PROTOCOL_VERSION, type BackendStatus, type Health } from "espm-sdk/protocol";
import type { AgentContext, RouteOptions } from "../http/context";

const BACKEND_CHECK_TIMEOUT_MS = 3000;
/** Backend states younger than this are served from the cache. */
const BACKEND_CACHE_MS = 10_000;

async function probe(check: (() => Promise<BackendStatus>) | undefined): Promise<BackendStatus> {
  if (!check) return { status: "not_configured" };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<BackendStatus>((resolve) => {
    timer = setTimeout(
      () => resolve({ status: "down", detail: `no answer within ${BACKEND_CHECK_TIMEOUT_MS} ms` }),
      BACKEND_CHECK_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([
      check().catch((err: Error): BackendStatus => ({ status: "down", detail: err.message })),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function storeStatus(ctx: AgentContext): Promise<BackendStatus> {
  try {
    await ctx.store.ping();
    return { status: "ok", detail: ctx.store.description };
  } catch (err) {
    return { status: "down", detail: (err as Error).message };
  }
}

export const healthRoutes: FastifyPluginAsync<RouteOptions> = async (app, { ctx }) => {
  /** One probe of the remote backends at a time, shared by every caller within the cache's life. */
  const probes = new AnswerCache<"remote", Record<string, BackendStatus>>({ ttlMs: BACKEND_CACHE_MS }, async () => {
    const [ca, classes, reports, puppetdb] = await Promise.all([
      probe(ctx.ca && (() => ctx.ca!.health())),
      probe(ctx.classes && (() => ctx.classes!.health())),
      probe(ctx.reports && (() => ctx.reports!.health())),
      probe(ctx.puppetdb && (() => ctx.puppetdb!.health())),
    ]);
    return { value: { ca, classes, reports, puppetdb } };
  });
  const remoteBackends = () => probes.get("remote");

  app.get("/v1/health", async (request): Promise<Health> => {
    const store = await storeStatus(ctx);
    if (!request.authenticated) return { status: store.status === "ok" ? "ok" : "down" };
    const heldBack = ctx.groupsProblem();
    const groups: BackendStatus = heldBack
      ? { status: "down", detail: `serving the last good ${ctx.groups().size} groups; ${heldBack}` }
      : { status: "ok", detail: `${ctx.groups().size} groups` };
    const names = ctx.policy.describe();
    const outside = ctx.outsidePolicy;
    if (outside.length)
      names.detail += `; ${outside.length} registration${outside.length > 1 ? "s" : ""} outside the policy, not classified and not changeable (delete them): ${outside.slice(0, 20).join(", ")}${outside.length > 20 ? ", …" : ""}`;
    const autosign: BackendStatus = !ctx.autosign
      ? { status: "not_configured" }
      : ctx.autosign.listening
        ? { status: "ok", detail: `espm autosign reaches espm on ${ctx.autosign.socket}` }
        : { status: "down", detail: `not listening on ${ctx.autosign.socket}` };
    return {
      status: store.status === "ok" ? "ok" : "down",
      version: ctx.version,
      protocol: PROTOCOL_VERSION,
      backends: { store, groups, certnames: names, autosign, ...(await remoteBackends()) },
    };
  });
};
