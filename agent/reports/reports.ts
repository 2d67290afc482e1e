/**
 * The Puppet runs of espm's nodes, read from Puppet Server's stored reports (`reports = store`:
 * one YAML file per run under REPORTDIR/CERTNAME/, named by the minute it was stored). No new path
 * from instances to espm: Puppet Server already receives every agent's report, including the report
 * of a run that never got a catalog.
 *
 * A node controls its own report, so espm treats it as hostile input: files over a small cap are
 * skipped, and parsing happens in a worker thread with its own memory limit, so that a huge or
 * slow report never holds up health checks or other requests.
 */
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type { BackendStatus, PuppetRun } from "espm-sdk/protocol";

/** Report files bigger than this are skipped: a run's report is tens of KB, a large one a few hundred. */
const MAX_REPORT_BYTES = 4 * 1024 * 1024;

/** The one worker thread that parses reports, started on first use and not keeping the process alive. */
class ReportParser {
  private worker: Worker | undefined;
  private next = 0;
  private readonly pending = new Map<
    number,
    { resolve: (run: PuppetRun | undefined) => void; reject: (err: Error) => void }
  >();

  parse(path: string): Promise<PuppetRun | undefined> {
    const worker = this.start();
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, path });
    });
  }

  async close(): Promise<void> {
    await this.worker?.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(join(__dirname, "worker.js"), { resourceLimits: { maxOldGenerationSizeMb: 256 } });
    worker.on("message", (message: { id: number; run?: PuppetRun; error?: string }) => {
      const waiting = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (this.pending.size === 0) worker.unref();
      if (!waiting) return;
      if (message.error !== undefined) waiting.reject(new Error(message.error));
      else waiting.resolve(message.run);
    });
    const failAll = (err: Error) => {
      this.worker = undefined;
      for (const waiting of this.pending.values()) waiting.reject(err);
      this.pending.clear();
    };
    worker.on("error", failAll);
    worker.on("exit", (code) => failAll(new Error(`the report worker stopped (exit ${code})`)));
    worker.unref();
    this.worker = worker;
    return worker;
  }
}

/** Where espm reads a node's Puppet runs: report files (ReportReader) or PuppetDB (puppetserver/puppetdb.ts). */
export interface RunSource {
  /**
   * The node's runs that started at or after `since` (an ISO time: the registration's creation),
   * newest first. The caller has checked the name.
   */
  runs(certname: string, limit: number, since: string): Promise<PuppetRun[]>;
  health(): Promise<BackendStatus>;
  close(): Promise<void>;
}

/** A time as the name Puppet's store processor gives a report file: YYYYMMDDHHMM, UTC. */
function minuteOf(ms: number): string {
  return new Date(ms).toISOString().replace(/[-T:]/g, "").slice(0, 12);
}

export class ReportReader implements RunSource {
  /** Parsed runs by file path, kept while the file's size and mtime stay the same. */
  private readonly cache = new Map<string, { key: string; run: PuppetRun | undefined }>();
  private readonly parser = new ReportParser();

  constructor(readonly dir: string) {}

  /** The node's runs since `since`, newest first. The caller has checked the name (so it is a safe path segment). */
  async runs(certname: string, limit: number, since: string): Promise<PuppetRun[]> {
    const from = Date.parse(since);
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
      // Files are named by the minute Puppet Server stored them (UTC): older than the minute of
      // `since` means older than the registration, and so are all the files after it.
      if (file.slice(0, 12) < minuteOf(from)) break;
      const run = await this.read(join(nodeDir, file));
      if (run && Date.parse(run.time) >= from) runs.push(run);
      if (runs.length >= limit) break;
    }
    return runs.sort((a, b) => b.time.localeCompare(a.time));
  }

  async health(): Promise<{ status: "ok"; detail: string }> {
    await readdir(this.dir);
    return { status: "ok", detail: this.dir };
  }

  async close(): Promise<void> {
    await this.parser.close();
  }

  private async read(path: string): Promise<PuppetRun | undefined> {
    const info = await stat(path);
    if (info.size > MAX_REPORT_BYTES) return undefined;
    const key = `${info.size}:${info.mtimeMs}`;
    const cached = this.cache.get(path);
    if (cached?.key === key) return cached.run;
    let run: PuppetRun | undefined;
    try {
      run = await this.parser.parse(path);
    } catch {
      run = undefined; // a report being written, or not a report: skip it
    }
    this.cache.set(path, { key, run });
    return run;
  }
}
