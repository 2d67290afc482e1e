/**
 * /v1/nodes: espm's own nodes. It never lists nodes, and answers 404 for any name it did not create,
 * so a caller learns nothing about nodes classified by other means.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { IDEMPOTENCY_HEADER, protocol, type Classification, type Node } from "../../sdk/protocol";
import { removeNodeExport, writeNodeExport } from "../enc-export";
import { ApiError, checkName, parseInput } from "../http";
import { auditEntry, now, type AgentContext } from "../context";
import { caHolding } from "./certificates";

function checkGroups(ctx: AgentContext, groups: string[]): void {
  const known = ctx.groups();
  const unknown = groups.filter((g) => !known.has(g));
  if (unknown.length) {
    throw new ApiError(
      "unprocessable",
      `unknown group${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}: define ${unknown.length > 1 ? "them" : "it"} in ${ctx.config.classifier.groups} or remove ${unknown.length > 1 ? "them" : "it"} from groups`,
      unknown.map((g) => ({ field: "groups", message: `unknown group ${g}` })),
    );
  }
}

function complete(ctx: AgentContext, c: Classification): Required<Classification> {
  return { ...c, environment: c.environment ?? ctx.config.classifier.default_environment };
}

function notOurs(name: string): ApiError {
  return new ApiError("not_found", `espm has no node named ${name}`);
}

function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE";
}

function liveConflict(name: string): ApiError {
  return new ApiError("conflict", `a node named ${name} already exists; delete it first or choose another name`, [
    { field: "name", message: "already registered" },
  ]);
}

export function nodeRoutes(app: FastifyInstance, ctx: AgentContext): void {
  const p = protocol();

  app.post("/v1/nodes", async (request, reply) => {
    const input = parseInput(p.createNodeRequest, request.body, "node");
    const outcome = await ctx.idempotency.run(
      { key: request.headers[IDEMPOTENCY_HEADER] as string | undefined, scope: "POST /v1/nodes", body: request.body },
      async (remember) => {
        const { name, ...classification } = input;
        checkGroups(ctx, classification.groups);
        if (ctx.store.liveNode(name)) throw liveConflict(name);
        if (ctx.ca) {
          const { foreign } = await caHolding(ctx, name);
          if (foreign) throw new ApiError("conflict", foreign, [{ field: "name", message: "held by the CA for another owner" }]);
        }
        let node: Node;
        try {
          node = ctx.store.transaction(() => {
            const created = ctx.store.insertNode(name, complete(ctx, classification), now());
            remember({ status: 201, body: created });
            ctx.store.audit(auditEntry(request, { action: "node.create", target: name, outcome: "created" }), now());
            return created;
          });
        } catch (err) {
          if (isUniqueViolation(err)) throw liveConflict(name);
          throw err;
        }
        writeNodeExport(ctx.config.store.enc_export, node);
        return { status: 201, body: node };
      },
    );
    return reply.code(outcome.status).send(outcome.body);
  });

  app.get("/v1/nodes/:name", async (request: FastifyRequest<{ Params: { name: string } }>) => {
    const name = checkName(request.params.name, "name");
    const node = ctx.store.liveNode(name);
    if (!node) throw notOurs(name);
    return node;
  });

  app.put("/v1/nodes/:name", async (request: FastifyRequest<{ Params: { name: string } }>) => {
    const name = checkName(request.params.name, "name");
    const classification = parseInput(p.classification, request.body, "classification");
    if (!ctx.store.liveNode(name)) throw notOurs(name);
    checkGroups(ctx, classification.groups);
    const node = ctx.store.transaction(() => {
      const updated = ctx.store.updateNode(name, complete(ctx, classification), now());
      if (updated) ctx.store.audit(auditEntry(request, { action: "node.update", target: name, outcome: "updated" }), now());
      return updated;
    });
    if (!node) throw notOurs(name);
    writeNodeExport(ctx.config.store.enc_export, node);
    return node;
  });

  app.delete("/v1/nodes/:name", async (request: FastifyRequest<{ Params: { name: string } }>, reply) => {
    const name = checkName(request.params.name, "name");
    const deleted = ctx.store.transaction(() => {
      const gone = ctx.store.deleteNode(name, now());
      if (gone) ctx.store.audit(auditEntry(request, { action: "node.delete", target: name, outcome: "deleted" }), now());
      return gone;
    });
    if (!deleted && !ctx.store.everCreatedNode(name)) throw notOurs(name);
    removeNodeExport(ctx.config.store.enc_export, name);
    return reply.code(204).send();
  });
}
