/**
 * PuppetDB, when espm.ini names it (its query API /pdb/query/v4 and command API /pdb/cmd/v1): what it knows of a node, the
 * node's deactivation when espm deletes it, and its runs when reports go to PuppetDB.
 *
 * espm reaches it as Puppet Server does, with its client certificate, which PuppetDB's
 * certificate allowlist must name. That allowlist is all or nothing: it lets espm submit any
 * command and run any query, not only the two espm uses. espm itself asks only about the names
 * of its own nodes, and for a create, whether a name is already someone else's.
 */
import type { BackendStatus, PuppetRun } from "espm-sdk/protocol";
import type { EspmConfig } from "../config/config";
import { BackendError } from "./contract";
import { parseJson, PuppetServerHttp, type Service } from "./http";
import { runFrom } from "../reports/parse";
import type { RunSource } from "../reports/reports";

const PUPPETDB: Service = {
  name: "PuppetDB",
  forbidden:
    "PuppetDB's certificate allowlist does not name espm's certificate: add espm to the file its certificate-allowlist setting names and restart PuppetDB",
};

/** How long espm asks PuppetDB to wait for the deactivation to be processed before it answers. */
const DEACTIVATE_WAIT_SECONDS = 10;

/** A node as PuppetDB knows it; `absent` when PuppetDB never saw the name (or purged it). */
export type PuppetDbNodeState = "absent" | "active" | "deactivated" | "expired";

interface NodeRow {
  certname: string;
  deactivated: string | null;
  expired: string | null;
}

interface ReportRow {
  start_time: string;
  status?: string;
  transaction_uuid?: string | null;
  environment?: string | null;
  puppet_version?: string | null;
  logs?: { data?: { level?: string; message?: string; source?: string }[] | null };
  metrics?: { data?: { category?: string; name?: string; value?: number }[] | null };
}

/** A PuppetDB query string: the query and the options, each as JSON. */
function queryString(params: Record<string, unknown>): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${encodeURIComponent(typeof v === "string" ? v : JSON.stringify(v))}`)
    .join("&");
}

export class PuppetDb implements RunSource {
  private readonly http: PuppetServerHttp;

  constructor(settings: NonNullable<EspmConfig["puppetdb"]>) {
    this.http = new PuppetServerHttp(settings, PUPPETDB);
  }

  get url(): string {
    return this.http.base;
  }

  /** What PuppetDB knows of the name, deactivated and expired nodes included (node_state = any). */
  async node(certname: string): Promise<PuppetDbNodeState> {
    const query = ["and", ["=", "certname", certname], ["=", "node_state", "any"]];
    const res = await this.http.call("GET", `/pdb/query/v4/nodes?${queryString({ query })}`, { expected: [200] });
    const rows = parseJson(res.text, "a node list", PUPPETDB.name);
    if (!Array.isArray(rows)) throw new BackendError(502, "PuppetDB sent a node list that is not a list");
    const row = (rows as NodeRow[]).find((r) => r.certname === certname);
    if (!row) return "absent";
    return row.deactivated ? "deactivated" : row.expired ? "expired" : "active";
  }

  /**
   * Deactivates a node PuppetDB knows and confirms it by query: `deactivate node` version 3, with
   * the producer_timestamp that orders it against the node's own submissions. A name PuppetDB never
   * saw is left alone (the command would create a row for it). Fails when the node is still active.
   */
  async deactivate(certname: string): Promise<"never seen" | "deactivated" | "already deactivated"> {
    const before = await this.node(certname);
    if (before === "absent") return "never seen";
    if (before !== "active") return "already deactivated";
    const params = queryString({
      command: "deactivate_node",
      version: "3",
      certname,
      secondsToWaitForCompletion: String(DEACTIVATE_WAIT_SECONDS),
    });
    const res = await this.http.call("POST", `/pdb/cmd/v1?${params}`, {
      body: JSON.stringify({ certname, producer_timestamp: new Date().toISOString() }),
      contentType: "application/json",
      expected: [200, 503],
    });
    const answer = parseJson(res.text, "a command answer", PUPPETDB.name) as { processed?: boolean; error?: string };
    const after = await this.node(certname);
    if (after === "active") {
      const why =
        res.status === 503
          ? `it is not accepting commands (${answer.error ?? res.text.trim().slice(0, 200)})`
          : answer.processed === false
            ? `it had not processed the command within ${DEACTIVATE_WAIT_SECONDS} s`
            : "a newer submission from the node (its producer_timestamp is later) keeps it active";
      throw new BackendError(
        502,
        `PuppetDB did not deactivate ${certname}: ${why}; the delete did not finish, retry it`,
      );
    }
    return "deactivated";
  }

  /** The node's runs since `since` from PuppetDB's reports endpoint, newest first. */
  async runs(certname: string, limit: number, since: string): Promise<PuppetRun[]> {
    const path = `/pdb/query/v4/reports?${queryString({
      query: ["and", ["=", "certname", certname], [">=", "start_time", since]],
      order_by: [{ field: "start_time", order: "desc" }],
      limit: String(limit),
    })}`;
    const res = await this.http.call("GET", path, { expected: [200] });
    const rows = parseJson(res.text, "a report list", PUPPETDB.name);
    if (!Array.isArray(rows)) throw new BackendError(502, "PuppetDB sent a report list that is not a list");
    return (rows as ReportRow[]).map((r) =>
      runFrom({
        time: r.start_time,
        status: r.status,
        transactionUuid: r.transaction_uuid,
        environment: r.environment,
        puppetVersion: r.puppet_version,
        logs: r.logs?.data ?? [],
        resourceMetric: (name) =>
          Number(r.metrics?.data?.find((m) => m.category === "resources" && m.name === name)?.value ?? 0),
      }),
    );
  }

  async health(): Promise<BackendStatus> {
    const res = await this.http.call("GET", "/status/v1/services/puppetdb-status", { expected: [200, 503] });
    const state = (parseJson(res.text, "its status", PUPPETDB.name) as { state?: string }).state;
    return state === "running"
      ? { status: "ok", detail: `PuppetDB at ${this.url}` }
      : { status: "down", detail: `PuppetDB at ${this.url} is ${state ?? "in an unknown state"}` };
  }

  async close(): Promise<void> {
    await this.http.close();
  }
}
