/**
 * GET /v1/groups and GET /v1/classes: what a node may be classified with. Both answer with an ETag
 * (a hash of the body) and 304 to a matching If-None-Match, so a client that cached them (the
 * provider's preview validation) revalidates for the cost of a header.
 */
import { createHash } from "node:crypto";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { schemas, type ClassesResponse, type GroupsResponse } from "espm-sdk/protocol";
import { ApiError, parseInput } from "../http/errors";
import type { RouteOptions } from "../http/context";

/** The body with its ETag, or a 304 when the caller already has it. */
function conditional<T>(request: FastifyRequest, reply: FastifyReply, body: T): T | FastifyReply {
  const etag = `"${createHash("sha256").update(JSON.stringify(body)).digest("base64url").slice(0, 27)}"`;
  reply.header("etag", etag);
  if (request.headers["if-none-match"] === etag) return reply.code(304).send();
  return body;
}

export const discoveryRoutes: FastifyPluginAsync<RouteOptions> = async (app, { ctx }) => {
  app.get("/v1/groups", async (request, reply) =>
    conditional<GroupsResponse>(request, reply, { groups: [...ctx.groups().values()] }),
  );

  app.get("/v1/classes", async (request: FastifyRequest<{ Querystring: { environment?: string } }>, reply) => {
    const environment = parseInput(
      schemas.environment,
      request.query.environment ?? ctx.config.classifier.default_environment,
      "environment",
    );
    if (!ctx.classes) {
      throw new ApiError(
        "not_configured",
        "class discovery is not configured: add a [puppetserver] section to espm.ini and restart espm",
      );
    }
    return conditional<ClassesResponse>(request, reply, {
      environment,
      classes: await ctx.classes.classes(environment),
    });
  });
};
