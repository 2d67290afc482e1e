/**
 * /v1/nodes: espm's own nodes. It never lists nodes, and answers 404 for any name it did not create,
 * so a caller learns nothing about nodes classified by other means. It creates a node only for a
 * name the certname policy allows and no other classifier knows: not the CA (a certificate or
 * request espm did not make), not the site's fallback ENC, and not PuppetDB (an active node).
 *
 * With PuppetDB, a delete is a whole decommission, in this order: espm's certificate for the name
 * revoked and cleaned at the CA (so the node's agent can no longer report), the node deactivated in
 * PuppetDB and confirmed by query, then the node removed from espm's classifier. A step that fails
 * fails the delete and leaves the node in espm, so the retry does the rest.
 */
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { IDEMPOTENCY_HEADER, nodeEnvironment, schemas, type Classification, type Node } from "../../sdk/protocol";
import { classifiesNode, runFallbackEnc } from "../fallback-enc";
import { ApiError, checkAllowed, checkName, parseInput } from "../http";
import { actor, auditEntry, now, type AgentContext, type RouteOptions } from "../context";
import { caHolding, revokeCertificate } from "../ca-holding";
import { revokeEnrollment } from "../enrollments";
import type { PuppetDb } from "../puppetdb";
import { StoreConflict } from "../store";

/** How long a create waits for the fallback ENC's answer before it refuses to guess (503). */
const FALLBACK_TIMEOUT_MS = 5000;

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

/** Refuses a name the site's own ENC already classifies: espm never takes a node over. */
async function checkFallbackEnc(ctx: AgentContext, name: string): Promise<void> {
  const fallback = ctx.config.classifier.fallback_enc;
  if (!fallback) return;
  const answer = await runFallbackEnc(fallback, name, FALLBACK_TIMEOUT_MS);
  if (answer.timedOut) {
    throw new ApiError(
      "backend_unavailable",
      `the fallback ENC ${fallback} gave no answer for ${name} within ${FALLBACK_TIMEOUT_MS / 1000} s, so espm cannot tell whether another classifier owns it; retry later`,
    );
  }
  if (classifiesNode(answer)) {
    throw new ApiError(
      "conflict",
      `the fallback ENC ${fallback} already classifies ${name}; espm never takes over a node another classifier knows. Choose another name, or remove the node from that classifier`,
      [{ field: "name", message: "classified by the fallback ENC" }],
    );
  }
}

/**
 * The node's environment: its own, else that of the first of its groups that names one, else espm's
 * default. Decided when the node is created or updated, and stored with it.
 */
function complete(ctx: AgentContext, c: Classification): Required<Classification> {
  const environment = nodeEnvironment(c, (g) => ctx.groups().get(g)?.environment);
  return { ...c, environment: environment ?? ctx.config.classifier.default_environment };
}

/** Refuses a name PuppetDB knows as an active node: someone else's machine reports under it. */
async function checkPuppetDb(ctx: AgentContext, name: string): Promise<void> {
  if (!ctx.puppetdb) return;
  if ((await ctx.puppetdb.node(name)) === "active") {
    throw new ApiError(
      "conflict",
      `PuppetDB at ${ctx.puppetdb.url} knows ${name} as an active node; espm never takes over a node another classifier knows. Choose another name, or deactivate the node in PuppetDB (puppet node deactivate ${name}) if that machine is gone`,
      [{ field: "name", message: "active in PuppetDB" }],
    );
  }
}

/** The certificate revoked (and any enrollment), then the node deactivated in PuppetDB and confirmed. */
async function decommission(ctx: AgentContext, puppetdb: PuppetDb, name: string, who: string): Promise<void> {
  const enrollment = await ctx.store.liveEnrollment(name);
  if (enrollment) await revokeEnrollment(ctx, enrollment, who);
  const certificate = await ctx.store.certificate(name);
  if (certificate && ctx.ca) await revokeCertificate(ctx, ctx.ca, certificate, who);
  let outcome: string;
  try {
    outcome = await puppetdb.deactivate(name);
  } catch (err) {
    const detail = (err as Error).message;
    await ctx.store.audit({ actor: who, action: "node.deactivate", target: name, outcome: "failed", detail }, now());
    throw err;
  }
  await ctx.store.audit({ actor: who, action: "node.deactivate", target: name, outcome }, now());
}

function notOurs(name: string): ApiError {
  return new ApiError("not_found", `espm has no node named ${name}`);
}

function liveConflict(name: string): ApiError {
  return new ApiError("conflict", `a node named ${name} already exists; delete it first or choose another name`, [
    { field: "name", message: "already registered" },
  ]);
}

export const nodeRoutes: FastifyPluginAsync<RouteOptions> = async (app, { ctx }) => {
  app.post("/v1/nodes", async (request, reply) => {
    const input = parseInput(schemas.createNodeRequest, request.body, "node");
    checkAllowed(ctx.policy, input.name, "name");
    const outcome = await ctx.idempotency.run(
      { key: request.headers[IDEMPOTENCY_HEADER] as string | undefined, scope: "POST /v1/nodes", body: request.body },
      async (remember) => {
        const { name, ...classification } = input;
        checkGroups(ctx, classification.groups);
        if (await ctx.store.liveNode(name)) throw liveConflict(name);
        if (ctx.ca) {
          const { foreign } = await caHolding(ctx, name);
          if (foreign)
            throw new ApiError("conflict", foreign, [{ field: "name", message: "held by the CA for another owner" }]);
        }
        await checkFallbackEnc(ctx, name);
        await checkPuppetDb(ctx, name);
        let node: Node;
        try {
          node = await ctx.store.transaction(async (tx) => {
            const created = await tx.insertNode(name, complete(ctx, classification), now());
            await remember(tx, { status: 201, body: created });
            await tx.audit(auditEntry(request, { action: "node.create", target: name, outcome: "created" }), now());
            return created;
          });
        } catch (err) {
          if (err instanceof StoreConflict) throw liveConflict(name);
          throw err;
        }
        ctx.export.writeNode(node);
        return { status: 201, body: node };
      },
    );
    return reply.code(outcome.status).send(outcome.body);
  });

  app.get("/v1/nodes/:name", async (request: FastifyRequest<{ Params: { name: string } }>) => {
    const name = checkName(request.params.name, "name");
    const node = await ctx.store.liveNode(name);
    if (!node) throw notOurs(name);
    return node;
  });

  app.put("/v1/nodes/:name", async (request: FastifyRequest<{ Params: { name: string } }>) => {
    const name = checkName(request.params.name, "name");
    const classification = parseInput(schemas.classification, request.body, "classification");
    if (!(await ctx.store.liveNode(name))) throw notOurs(name);
    checkGroups(ctx, classification.groups);
    const node = await ctx.store.transaction(async (tx) => {
      const updated = await tx.updateNode(name, complete(ctx, classification), now());
      if (updated)
        await tx.audit(auditEntry(request, { action: "node.update", target: name, outcome: "updated" }), now());
      return updated;
    });
    if (!node) throw notOurs(name);
    ctx.export.writeNode(node);
    return node;
  });

  app.delete("/v1/nodes/:name", async (request: FastifyRequest<{ Params: { name: string } }>, reply) => {
    const name = checkName(request.params.name, "name");
    if (ctx.puppetdb && (await ctx.store.liveNode(name))) await decommission(ctx, ctx.puppetdb, name, actor(request));
    const deleted = await ctx.store.transaction(async (tx) => {
      const gone = await tx.deleteNode(name, now());
      if (gone) await tx.audit(auditEntry(request, { action: "node.delete", target: name, outcome: "deleted" }), now());
      return gone;
    });
    if (!deleted && !(await ctx.store.everCreatedNode(name))) throw notOurs(name);
    ctx.export.removeNode(name);
    return reply.code(204).send();
  });
};
