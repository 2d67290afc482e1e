/**
 * One stored Puppet report as a run. Report YAML carries Ruby object tags
 * (`!ruby/object:Puppet::Transaction::Report`); the yaml library is told about them and reads them
 * as plain maps. Runs in the report worker (report-worker.ts), never on the daemon's event loop:
 * a node controls its own report, and parsing a large one takes seconds.
 */
import { parse, YAMLMap, type Tags } from "yaml";
import type { PuppetRun } from "../sdk/protocol";

const MAX_ERROR_LINES = 20;
const MAX_ERROR_LENGTH = 500;
const ERROR_LEVELS = new Set(["err", "alert", "emerg", "crit"]);

/** The Ruby classes Puppet writes into reports, across report formats. */
const RUBY_CLASSES = [
  "Puppet::Transaction::Report",
  "Puppet::Util::Log",
  "Puppet::Resource::Status",
  "Puppet::Transaction::Event",
  "Puppet::Util::Metric",
];

function rubyTags(): Tags {
  // A tagged mapping stays a mapping: the tag only names the Ruby class Puppet serialized.
  return RUBY_CLASSES.map((name) => ({
    tag: `!ruby/object:${name}`,
    collection: "map" as const,
    nodeClass: YAMLMap,
    resolve: (map: unknown) => map,
  }));
}

interface RawReport {
  host?: string;
  time?: string | Date;
  status?: string;
  transaction_uuid?: string;
  environment?: string;
  puppet_version?: string;
  logs?: { level?: string; message?: string; source?: string }[];
  metrics?: { resources?: { values?: [string, string, number][] } };
}

/** One report as a run: status, counts and, for a failed run, its error lines. */
export function runFromReport(text: string): PuppetRun | undefined {
  const raw = parse(text, { customTags: rubyTags() }) as RawReport | null;
  if (!raw || typeof raw !== "object" || !raw.time) return undefined;
  const status =
    raw.status === "changed" || raw.status === "unchanged" || raw.status === "failed" ? raw.status : "failed";
  const metric = (key: string) => Number(raw.metrics?.resources?.values?.find((v) => v[0] === key)?.[2] ?? 0);
  const errors = new Map<string, number>();
  if (status === "failed") {
    for (const log of raw.logs ?? []) {
      if (!log.level || !ERROR_LEVELS.has(log.level) || !log.message) continue;
      const line = `${log.source && log.source !== "Puppet" ? `${log.source}: ` : ""}${log.message}`
        .replace(/\s+/g, " ")
        .slice(0, MAX_ERROR_LENGTH);
      errors.set(line, (errors.get(line) ?? 0) + 1);
    }
  }
  return {
    time: new Date(raw.time).toISOString(),
    status,
    transactionUuid: raw.transaction_uuid ?? undefined,
    environment: raw.environment ?? undefined,
    puppetVersion: raw.puppet_version ?? undefined,
    resources: {
      total: metric("total"),
      changed: metric("changed"),
      failed: metric("failed"),
      skipped: metric("skipped"),
      outOfSync: metric("out_of_sync"),
    },
    errors: [...errors]
      .slice(0, MAX_ERROR_LINES)
      .map(([line, times]) => (times > 1 ? `${line} (${times} times)` : line)),
  };
}
