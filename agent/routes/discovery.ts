/** GET /v1/groups and GET /v1/classes: what a node may be classified with. */
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { schemas, type ClassesResponse, type GroupsResponse } from "../../sdk/protocol";
import { ApiError, parseInput } from "../http";
import type { RouteOptions } from "../context";

export const discoveryRoutes: FastifyPluginAsync<RouteOptions> = async (app, { ctx }) => {
  app.get("/v1/groups", async (): Promise<GroupsResponse> => ({ groups: [...ctx.groups().values()] }));

  app.get(
    "/v1/classes",
    async (request: FastifyRequest<{ Querystring: { environment?: string } }>): Promise<ClassesResponse> => {
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
      return { environment, classes: await ctx.classes.classes(environment) };
    },
  );
};
