/** GET /v1/health: always 200, reporting each backend's state and never a secret. */
import type { FastifyInstance } from "fastify";
import { PROTOCOL_VERSION, type BackendStatus, type Health } from "../../sdk/protocol";
import type { AgentContext } from "../context";

const BACKEND_CHECK_TIMEOUT_MS = 3000;

async function probe(check: (() => Promise<BackendStatus>) | undefined): Promise<BackendStatus> {
  if (!check) return { status: "not_configured" };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<BackendStatus>((resolve) => {
    timer = setTimeout(() => resolve({ status: "down", detail: `no answer within ${BACKEND_CHECK_TIMEOUT_MS} ms` }), BACKEND_CHECK_TIMEOUT_MS);
  });
  try {
    return await Promise.race([check().catch((err: Error): BackendStatus => ({ status: "down", detail: err.message })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function healthRoutes(app: FastifyInstance, ctx: AgentContext): void {
  app.get("/v1/health", async (): Promise<Health> => {
    const [ca, classes, reports] = await Promise.all([
      probe(ctx.ca && (() => ctx.ca!.health())),
      probe(ctx.classes && (() => ctx.classes!.health())),
      probe(ctx.reports && (() => ctx.reports!.health())),
    ]);
    let store: BackendStatus = { status: "ok" };
    try {
      ctx.store.liveNode("health-check.invalid");
    } catch (err) {
      store = { status: "down", detail: (err as Error).message };
    }
    const groups: BackendStatus = { status: "ok", detail: `${ctx.groups().size} groups` };
    return { status: "ok", version: ctx.version, protocol: PROTOCOL_VERSION, backends: { store, groups, ca, classes, reports } };
  });
}
