/**
 * The local channel `espm autosign` asks: a Unix socket (mode 0660, espm's export group) with one
 * route, POST /v1/autosign, authorized by the autosign secret, never by the PSK. Puppet Server's
 * user may ask espm to decide on a CSR, and nothing else; the PSK's API is not reachable here.
 */
import { chmodSync, chownSync, existsSync, lstatSync, rmSync } from "node:fs";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { z } from "zod";
import { bearerToken, pskMatches } from "../http/auth";
import { decide, type AutosignAnswer } from "./policy";
import type { AgentContext } from "../http/context";
import { groupId } from "../enc/export";
import { cleanRefusedSoon } from "../enrollment/enrollments";

const question = z.strictObject({ certname: z.string().max(253), csr: z.string().max(32 * 1024) });

export function buildAutosignServer(ctx: AgentContext, secret: string, log: FastifyBaseLogger): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024, requestTimeout: 10_000 });
  app.post("/v1/autosign", async (request, reply): Promise<AutosignAnswer | undefined> => {
    if (!pskMatches(secret, bearerToken(request.headers.authorization))) {
      log.warn("autosign: a caller without the autosign secret was refused");
      await reply.code(401).send({ error: { code: "unauthorized", message: "wrong autosign secret" } });
      return undefined;
    }
    const parsed = question.safeParse(request.body);
    if (!parsed.success) {
      await reply.code(400).send({ error: { code: "invalid_request", message: "send {certname, csr}" } });
      return undefined;
    }
    const { certname, csr } = parsed.data;
    const answer = await decide(ctx, certname, csr, "espm autosign");
    if (answer.decision === "refuse") {
      log.warn({ certname, reason: answer.reason }, "autosign: refused");
      if (!answer.undecided) cleanRefusedSoon(ctx, certname, csr, log);
    } else log.info({ certname, decision: answer.decision }, "autosign: decided");
    return answer;
  });
  return app;
}

/** Listens on the socket, replacing a stale one, readable and writable by espm and the group only. */
export async function listenOnSocket(app: FastifyInstance, socket: string, group: string | undefined): Promise<void> {
  if (existsSync(socket) && lstatSync(socket).isSocket()) rmSync(socket);
  await app.listen({ path: socket });
  chmodSync(socket, 0o660);
  if (group) chownSync(socket, -1, groupId(group));
}
