/**
 * GET /v1/nodes/:name/runs: the Puppet runs of a node espm created, newest first, from Puppet
 * Server's stored reports, or from PuppetDB's when reports go there. Reports of any other node are never read or shown: the name must be a
 * live node in espm's store before the report directory is touched.
 */
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import type { RunsResponse } from "../../sdk/protocol";
import type { RouteOptions } from "../context";
import { ApiError, checkName } from "../http";

const DEFAULT_LIMIT = 10;
const MAX_LIMIT = 50;

export const runRoutes: FastifyPluginAsync<RouteOptions> = async (app, { ctx }) => {
  app.get(
    "/v1/nodes/:name/runs",
    async (
      request: FastifyRequest<{ Params: { name: string }; Querystring: { limit?: string } }>,
    ): Promise<RunsResponse> => {
      const name = checkName(request.params.name, "name");
      const limit = request.query.limit === undefined ? DEFAULT_LIMIT : Number(request.query.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT)
        throw new ApiError("invalid_request", `limit must be a whole number from 1 to ${MAX_LIMIT}`, [
          { field: "limit", message: "out of range" },
        ]);
      if (!(await ctx.store.liveNode(name)))
        throw new ApiError("not_found", `espm has no node ${name}; it shows runs only of nodes it created`);
      if (!ctx.reports) {
        throw new ApiError(
          "not_configured",
          "espm does not know where to read runs: set reportdir in espm.ini's [puppetserver] section (with reports = store in puppet.conf), or name PuppetDB in a [puppetdb] section (with reports = puppetdb)",
        );
      }
      return { name, runs: await ctx.reports.runs(name, limit) };
    },
  );
};
