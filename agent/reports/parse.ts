/**
 * One stored Puppet report as a run. Report YAML carries Ruby object tags
 * (`!ruby/object:Puppet::Transaction::Report`); the yaml library is told about them and reads them
 * as plain maps. Runs in the report worker (worker.ts), never on the daemon's event loop:
 * a node controls its own report, and parsing a large one takes seconds.
 */
import { parse, YAMLMap, type Tags } from "yaml";
import type { PuppetRun } from "espm-sdk/protocol";

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

/** What a run is made of, whether read from a stored report file or from PuppetDB's reports endpoint. */
export interface RunFields {
  time: string | Date;
  status?: string;
  transactionUuid?: string | null;
  environment?: string | null;
  puppetVersion?: string | null;
  logs: readonly { level?: string; message?: string; source?: string }[];
  /** A resources metric by name (total, changed, failed, skipped, out_of_sync). */
  resourceMetric(name: string): number;
}

/** A run: status, counts and, for a failed run, its error lines, deduplicated and bounded. */
export function runFrom(fields: RunFields): PuppetRun {
  const status =
    fields.status === "changed" || fields.status === "unchanged" || fields.status === "failed"
      ? fields.status
      : "failed";
  const errors = new Map<string, number>();
  if (status === "failed") {
    for (const log of fields.logs) {
      if (!log.level || !ERROR_LEVELS.has(log.level) || !log.message) continue;
      const line = `${log.source && log.source !== "Puppet" ? `${log.source}: ` : ""}${log.message}`
        .replace(/\s+/g, " ")
        .slice(0, MAX_ERROR_LENGTH);
      errors.set(line, (errors.get(line) ?? 0) + 1);
    }
  }
  const metric = fields.resourceMetric;
  return {
    time: new Date(fields.time).toISOString(),
    status,
    transactionUuid: fields.transactionUuid ?? undefined,
    environment: fields.environment ?? undefined,
    puppetVersion: fields.puppetVersion ?? undefined,
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

/** One report file as a run. */
export function runFromReport(text: string): PuppetRun | undefined {
  const raw = parse(text, { customTags: rubyTags() }) as RawReport | null;
  if (!raw || typeof raw !== "object" || !raw.time) return undefined;
  return runFrom({
    time: raw.time,
    status: raw.status,
    transactionUuid: raw.transaction_uuid,
    environment: raw.environment,
    puppetVersion: raw.puppet_version,
    logs: raw.logs ?? [],
    resourceMetric: (key) => Number(raw.metrics?.resources?.values?.find((v) => v[0] === key)?.[2] ?? 0),
  });
}
