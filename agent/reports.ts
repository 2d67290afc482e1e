/**
 * The Puppet runs of espm's nodes, read from Puppet Server's stored reports (`reports = store`:
 * one YAML file per run under REPORTDIR/CERTNAME/, named by the minute it was stored). No new path
 * from instances to espm: Puppet Server already receives every agent's report, including the report
 * of a run that never got a catalog.
 *
 * Report YAML carries Ruby object tags (`!ruby/object:Puppet::Transaction::Report`); the yaml library
 * is told about them and reads them as plain maps.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { parse, YAMLMap, type Tags } from "yaml";
import type { PuppetRun } from "../sdk/protocol";

/** Report files bigger than this are skipped: a run's report is tens of KB. */
const MAX_REPORT_BYTES = 16 * 1024 * 1024;
const MAX_ERROR_LINES = 20;
const MAX_ERROR_LENGTH = 500;
const ERROR_LEVELS = new Set(["err", "alert", "emerg", "crit"]);

/** The Ruby classes Puppet writes into reports, across report formats. */
const RUBY_CLASSES = ["Puppet::Transaction::Report", "Puppet::Util::Log", "Puppet::Resource::Status", "Puppet::Transaction::Event", "Puppet::Util::Metric"];

function rubyTags(): Tags {
  // A tagged mapping stays a mapping: the tag only names the Ruby class Puppet serialized.
  return RUBY_CLASSES.map((name) => ({ tag: `!ruby/object:${name}`, collection: "map" as const, nodeClass: YAMLMap, resolve: (map: unknown) => map }));
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
  const status = raw.status === "changed" || raw.status === "unchanged" || raw.status === "failed" ? raw.status : "failed";
  const metric = (key: string) => Number(raw.metrics?.resources?.values?.find((v) => v[0] === key)?.[2] ?? 0);
  const errors = new Map<string, number>();
  if (status === "failed") {
    for (const log of raw.logs ?? []) {
      if (!log.level || !ERROR_LEVELS.has(log.level) || !log.message) continue;
      const line = `${log.source && log.source !== "Puppet" ? `${log.source}: ` : ""}${log.message}`.replace(/\s+/g, " ").slice(0, MAX_ERROR_LENGTH);
      errors.set(line, (errors.get(line) ?? 0) + 1);
    }
  }
  return {
    time: new Date(raw.time).toISOString(),
    status,
    transactionUuid: raw.transaction_uuid ?? undefined,
    environment: raw.environment ?? undefined,
    puppetVersion: raw.puppet_version ?? undefined,
    resources: { total: metric("total"), changed: metric("changed"), failed: metric("failed"), skipped: metric("skipped"), outOfSync: metric("out_of_sync") },
    errors: [...errors].slice(0, MAX_ERROR_LINES).map(([line, times]) => (times > 1 ? `${line} (${times} times)` : line)),
  };
}

export class ReportReader {
  /** Parsed runs by file path, kept while the file's size and mtime stay the same. */
  private readonly cache = new Map<string, { key: string; run: PuppetRun | undefined }>();

  constructor(readonly dir: string) {}

  /** The node's runs, newest first. The caller has checked the name (so it is a safe path segment). */
  async runs(certname: string, limit: number): Promise<PuppetRun[]> {
    const nodeDir = join(this.dir, certname);
    let files: string[];
    try {
      files = (await readdir(nodeDir)).filter((f) => /^\d{12}\.yaml$/.test(f));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const runs: PuppetRun[] = [];
    for (const file of files.sort().reverse()) {
      const run = await this.read(join(nodeDir, file));
      if (run) runs.push(run);
      if (runs.length >= limit) break;
    }
    return runs.sort((a, b) => b.time.localeCompare(a.time));
  }

  async health(): Promise<{ status: "ok"; detail: string }> {
    await readdir(this.dir);
    return { status: "ok", detail: this.dir };
  }

  private async read(path: string): Promise<PuppetRun | undefined> {
    const info = await stat(path);
    if (info.size > MAX_REPORT_BYTES) return undefined;
    const key = `${info.size}:${info.mtimeMs}`;
    const cached = this.cache.get(path);
    if (cached?.key === key) return cached.run;
    let run: PuppetRun | undefined;
    try {
      run = runFromReport(await readFile(path, "utf8"));
    } catch {
      run = undefined; // a report being written, or not a report: skip it
    }
    this.cache.set(path, { key, run });
    return run;
  }
}
