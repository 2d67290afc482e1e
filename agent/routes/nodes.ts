/**
 * /v1/nodes: espm's own nodes. It never lists nodes, and answers 404 for any name it did not create,
 * so a caller learns nothing about nodes classified by other means. Every verb passes the gate
 * (ca/gate.ts) first: a create only for a name the certname policy allows now and no other classifier
 * knows, a change only for a live registration the policy still allows.
 *
 * A registration's end is its certificate's end. A delete, with or without PuppetDB, in this order:
 * the enrollment's unused token invalidated and what was signed for the name (through an
 * enrollment or a CSR) revoked and cleaned at the CA, so the machine can no longer fetch a
 * catalog; with PuppetDB, the node deactivated there and confirmed by query; then the node removed
 * from espm's classifier, keeping its name, times and audit, not its classification. A step that
 * fails fails the delete and leaves the node in espm, so the retry does the rest.
 */
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { IDEMPOTENCY_HEADER, nodeEnvironment, schemas, type Classification, type Node } from "espm-sdk/protocol";
import { ApiError, parseInput } from "../http/errors";
import { actor, auditEntry, now, type AgentContext, type RouteOptions } from "../http/context";
import { revokeCertificate } from "../ca/holding";
import { revokeEnrollment } from "../enrollment/enrollments";
import { admit } from "../ca/gate";
import { checkClassificationSize, checkNodeQuota } from "../http/quotas";
import { StoreConflict, type StoreOps } from "../store/store";

type Params = { Params: { name: string } };

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

/**
 * The node's environment: its own, else that of the first of its groups that names one, else espm's
 * default. Decided when the node is created or updated, and stored with it.
 */
function complete(ctx: AgentContext, c: Classification): Required<Classification> {
  const environment = nodeEnvironment(c, (g) => ctx.groups().get(g)?.environment);
  return { ...c, environment: environment ?? ctx.config.classifier.default_environment };
}

/**
 * Ends what espm issued for the name: an enrollment (its unused token invalidated, what was signed
 * through it revoked) and a certificate espm signed, revoked and cleaned at the CA. Nothing to do
 * when all of it already ended; a failure to revoke throws, so the caller's step fails with it.
 */
export async function revokeWhatWasIssued(ctx: AgentContext, name: string, who: string): Promise<void> {
  const enrollment = await ctx.store.liveEnrollment(name);
  if (enrollment) await revokeEnrollment(ctx, enrollment, who);
  const certificate = await ctx.store.certificate(name);
  if (certificate && ctx.ca) await revokeCertificate(ctx, ctx.ca, certificate, who);
}

/** With PuppetDB: the node deactivated there and confirmed by query. */
async function deactivate(ctx: AgentContext, name: string, who: string): Promise<void> {
  if (!ctx.puppetdb) return;
  let outcome: string;
  try {
    outcome = await ctx.puppetdb.deactivate(name);
  } catch (err) {
    const detail = (err as Error).message;
    await ctx.store.audit({ actor: who, action: "node.deactivate", target: name, outcome: "failed", detail }, now());
    throw err;
  }
  await ctx.store.audit({ actor: who, action: "node.deactivate", target: name, outcome }, now());
}

/**
 * Runs a transaction that changes `name`'s export file, which it writes before its commit so that
 * export writes follow the order of commits. If the transaction fails (not a conflict, which fails
 * before the file is touched), the file is put back as the store has it, and the export is rebuilt
 * from every row at the next review in case it could not be: `espm enc` never keeps serving a
 * change that did not land.
 */
async function exportingTransaction<T>(
  ctx: AgentContext,
  name: string,
  work: (tx: StoreOps) => Promise<T>,
): Promise<T> {
  try {
    return await ctx.store.transaction(work);
  } catch (err) {
    if (!(err instanceof StoreConflict)) {
      ctx.export.distrust();
      const node = await ctx.store.liveNode(name).catch(() => undefined);
      if (node && !ctx.outsidePolicy.includes(name)) ctx.export.writeNode(node);
      else ctx.export.removeNode(name);
    }
    throw err;
  }
}

export const nodeRoutes: FastifyPluginAsync<RouteOptions> = async (app, { ctx }) => {
  app.post("/v1/nodes", async (request, reply) => {
    const input = parseInput(schemas.createNodeRequest, request.body, "node");
    const outcome = await ctx.idempotency.run(
      { key: request.headers[IDEMPOTENCY_HEADER] as string | undefined, scope: "POST /v1/nodes", body: request.body },
      async (remember) => {
        const { name, ...classification } = input;
        checkGroups(ctx, classification.groups);
        const completed = complete(ctx, classification);
        checkClassificationSize(ctx, completed);
        await checkNodeQuota(ctx);
        await admit(ctx, "register", name, "name");
        // A certificate signed for an earlier registration of this name (in a store from before
        // deletes revoked) must never fetch the new owner's catalog.
        await revokeWhatWasIssued(ctx, name, actor(request));
        let node: Node;
        try {
          node = await exportingTransaction(ctx, name, async (tx) => {
            const created = await tx.insertNode(name, completed, now());
            await remember(tx, { status: 201, body: created });
            await tx.audit(auditEntry(request, { action: "node.create", target: name, outcome: "created" }), now());
            // In the transaction: export writes follow the order of commits (see EncExport.sync).
            ctx.export.writeNode(created);
            return created;
          });
        } catch (err) {
          if (err instanceof StoreConflict)
            throw new ApiError(
              "conflict",
              `a node named ${name} already exists; delete it first or choose another name`,
              [{ field: "name", message: "already registered" }],
            );
          throw err;
        }
        return { status: 201, body: node };
      },
    );
    return reply.code(outcome.status).send(outcome.body);
  });

  app.get("/v1/nodes/:name", async (request: FastifyRequest<Params>) => {
    return (await admit(ctx, "read", request.params.name, "name")).node!;
  });

  app.put("/v1/nodes/:name", async (request: FastifyRequest<Params>) => {
    const classification = parseInput(schemas.classification, request.body, "classification");
    const { name } = await admit(ctx, "change", request.params.name, "name");
    checkGroups(ctx, classification.groups);
    const completed = complete(ctx, classification);
    checkClassificationSize(ctx, completed);
    const node = await exportingTransaction(ctx, name, async (tx) => {
      const updated = await tx.updateNode(name, completed, now());
      if (updated) {
        await tx.audit(auditEntry(request, { action: "node.update", target: name, outcome: "updated" }), now());
        ctx.export.writeNode(updated);
      }
      return updated;
    });
    if (!node) throw new ApiError("not_found", `espm has no node named ${name}`);
    return node;
  });

  app.delete("/v1/nodes/:name", async (request: FastifyRequest<Params>, reply) => {
    const { name, node } = await admit(ctx, "delete", request.params.name, "name");
    if (node) {
      await revokeWhatWasIssued(ctx, name, actor(request));
      await deactivate(ctx, name, actor(request));
    }
    await exportingTransaction(ctx, name, async (tx) => {
      if (await tx.deleteNode(name, now()))
        await tx.audit(auditEntry(request, { action: "node.delete", target: name, outcome: "deleted" }), now());
      ctx.export.removeNode(name);
    });
    return reply.code(204).send();
  });
};
