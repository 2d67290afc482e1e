/**
 * GET /v1/nodes/:name/runs: the Puppet runs of a node espm created, newest first, from Puppet
 * Server's stored reports, or from PuppetDB's when reports go there. Reports of any other node are never read or shown: the name must be a
 * live node in espm's store (the gate's `read`) before the report directory is touched, and only
 * the runs since that registration was created are shown: a reused name's earlier holder's are not.
 */
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import type { RunsResponse } from "espm-sdk/protocol";
import type { RouteOptions } from "../http/context";
import { admit } from "../ca/gate";
import { ApiError } from "../http/errors";

const DEFAULT_LIMIT = 10;
const MAX_LIMIT = 50;

export const runRoutes: FastifyPluginAsync<RouteOptions> = async (app, { ctx }) => {
  app.get(
    "/v1/nodes/:name/runs",
    async (
      request: FastifyRequest<{ Params: { name: string }; Querystring: { limit?: string } }>,
    ): Promise<RunsResponse> => {
      const limit = request.query.limit === undefined ? DEFAULT_LIMIT : Number(request.query.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT)
        throw new ApiError("invalid_request", `limit must be a whole number from 1 to ${MAX_LIMIT}`, [
          { field: "limit", message: "out of range" },
        ]);
      const { name, node } = await admit(ctx, "read", request.params.name, "name");
      if (!ctx.reports) {
        throw new ApiError(
          "not_configured",
          "espm does not know where to read runs: set reportdir in espm.ini's [puppetserver] section (with reports = store in puppet.conf), or name PuppetDB in a [puppetdb] section (with reports = puppetdb)",
        );
      }
      // A reused name's earlier holder ran under it too: only runs since this registration are its own.
      const since = node!.createdAt;
      return { name, runs: await ctx.reports.runs(name, limit, since) };
    },
  );
};
