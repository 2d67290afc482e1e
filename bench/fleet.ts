/**
 * Benchmark (not a test): a fleet's `pulumi up`, an unchanged `pulumi preview` and `pulumi destroy`
 * through the real engine (the CLI scripts/build-pulumi.sh builds, a file backend, the
 * dynamic-provider host), against the lab's Puppet Server and espm, beside the same engine driving
 * do-nothing dynamic resources in the same run:
 *
 *   baseline   2N dynamic resources whose provider does nothing
 *   instance   N registrations and N enrollments (the recommended key mode; only the CA bundle's
 *              fingerprint in state, `includeCaBundle: false`, as the README gives)
 *   provider   N registrations and N certificates (keys made by the provider, P-256; no CRL and
 *              no CA bundle in state, `includeCrl: false`, `includeCaBundle: false`, as the README
 *              gives)
 *   yaml       the instance mode's resources as a Pulumi YAML program, from the command line
 *              (`pulumi up --skip-preview`, as the Automation API runs it), through espm's
 *              provider plugin installed from its tarball (scripts/pack-plugin.sh) under the YAML
 *              language host (scripts/build-pulumi-yaml.sh); skipped when that host is not built
 *
 * It prints each operation's time and its ratio to the baseline's, and the issue's goals beside
 * them (up and destroy within 1.5x in the instance mode and 2x in the provider mode, preview 1.2x);
 * the YAML program's also against the TypeScript program's (the instance mode).
 *
 *   node dist/bench/fleet.js [--count 100] [--modes baseline,instance,provider,yaml] [--runs 1] [--breakdown]
 *                            [--jvm fast|production]
 *   (root; starts the lab's Puppet Server and espm; --breakdown prints, for each operation, the CPU
 *   each kind of process spent (engine, provider host, program, espm, Puppet Server) and espm's
 *   requests by route, with their count and mean time in espm; --runs N runs every mode N times,
 *   alternating, and prints each operation's median; --jvm production starts Puppet Server with
 *   Debian's JVM settings instead of the lab's fast start, under which signing costs several times more)
 */
import { rmSync } from "node:fs";
import { parseArgs } from "node:util";
import * as pulumi from "@pulumi/pulumi";
import type * as automation from "@pulumi/pulumi/automation";
import { PuppetCertificate, PuppetEnrollment, PuppetNodeRegistration } from "pulumi-espm";
import { cleanUpOnInterrupt } from "../scripts/lab/interrupt";
import { cpuDuring, formatCpu } from "./cpu";
import { engineDir, engineStack, pulumiBin } from "../test/helpers/engine";
import { pluginTarball } from "../test/helpers/plugin-package";
import { PulumiCli, yamlHostBin } from "../test/helpers/pulumi-cli";
import { sharedWorld, stopSharedWorld, World } from "../test/helpers/world";

type Mode = "baseline" | "instance" | "provider" | "yaml";

type Operation = "up" | "preview" | "destroy";

type Timings = Record<Operation, number> & {
  /** espm's side of each operation (modes other than the baseline). */
  espm?: Record<Operation, string>;
  /** The CPU each kind of process spent in each operation (with --breakdown). */
  cpu?: Record<Operation, string>;
  /** Each operation's fastest and slowest run, with --runs above 1. */
  range?: Record<Operation, [number, number]>;
};

/**
 * espm's side of an operation, from its request log lines during it: the requests by method and
 * route, each with its count and mean time in espm (from arrival to answer, the CA's calls included).
 */
function espmShare(lines: string[]): string {
  const routes = new Map<number | string, string>();
  const totals = new Map<string, { count: number; ms: number }>();
  for (const line of lines) {
    let entry: { msg?: string; reqId?: string; req?: { method?: string; url?: string }; responseTime?: number };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue;
    }
    if (entry.reqId === undefined) continue;
    if (entry.msg === "incoming request") {
      const path = (entry.req?.url ?? "").replace(/\?.*$/, "").split("/").slice(0, 3).join("/");
      routes.set(entry.reqId, `${entry.req?.method} ${path}`);
    } else if (entry.msg === "request completed" && entry.responseTime !== undefined) {
      const route = routes.get(entry.reqId) ?? "?";
      const total = totals.get(route) ?? { count: 0, ms: 0 };
      total.count++;
      total.ms += entry.responseTime;
      totals.set(route, total);
    }
  }
  const all = [...totals.values()].reduce((a, t) => ({ count: a.count + t.count, ms: a.ms + t.ms }), {
    count: 0,
    ms: 0,
  });
  const each = [...totals].map(([route, t]) => `${route} ${t.count} x ${(t.ms / t.count).toFixed(1)} ms`).join(", ");
  return `${all.count} requests, ${(all.ms / 1000).toFixed(1)} s in espm summed${each ? `: ${each}` : ""}`;
}

/** A provider that does nothing, as cheap as a dynamic resource can be: the engine's own cost. */
const nothing: pulumi.dynamic.ResourceProvider = {
  async create() {
    return { id: "nothing", outs: {} };
  },
};

class Nothing extends pulumi.dynamic.Resource {
  constructor(name: string) {
    super(nothing, name, {}, undefined, "bench", "Nothing");
  }
}

function program(mode: Exclude<Mode, "yaml">, count: number): automation.PulumiFn {
  return async () => {
    for (let i = 0; i < count; i++) {
      if (mode === "baseline") {
        new Nothing(`a-${i}`);
        new Nothing(`b-${i}`);
        continue;
      }
      const registration = new PuppetNodeRegistration(`node-${i}`, {
        name: `fleet-${mode}-${i}.example.test`,
        groups: ["base"],
      });
      if (mode === "instance")
        new PuppetEnrollment(`node-${i}`, { certname: registration.nodeName, includeCaBundle: false });
      else
        new PuppetCertificate(`node-${i}`, {
          certname: registration.nodeName,
          includeCrl: false,
          includeCaBundle: false,
        });
    }
  };
}

async function seconds(work: () => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/**
 * Times each operation; with `cpu`, also what each kind of process burned in it (reading /proc
 * every 100 ms costs the program a little CPU, so only when asked).
 */
function operationTimer(cpu: boolean) {
  const spent: Partial<Record<Operation, string>> = {};
  return {
    async time(op: Operation, work: () => Promise<unknown>): Promise<number> {
      if (!cpu) return seconds(work);
      const { result, cpu: burned } = await cpuDuring(() => seconds(work));
      spent[op] = formatCpu(burned);
      return result;
    },
    cpu: () => (cpu ? (spent as Record<Operation, string>) : undefined),
  };
}

/** Each operation's median over the runs, with its fastest and slowest; the breakdowns of the last run. */
function medianTimings(all: Timings[]): Timings {
  const sorted = (op: Operation) => all.map((t) => t[op]).sort((a, b) => a - b);
  const median = (op: Operation) => {
    const times = sorted(op);
    const mid = Math.floor(times.length / 2);
    return times.length % 2 ? times[mid]! : (times[mid - 1]! + times[mid]!) / 2;
  };
  const range = (op: Operation): [number, number] => [sorted(op)[0]!, sorted(op).at(-1)!];
  return {
    ...all.at(-1)!,
    up: median("up"),
    preview: median("preview"),
    destroy: median("destroy"),
    range: { up: range("up"), preview: range("preview"), destroy: range("destroy") },
  };
}

/** The instance mode's program in Pulumi YAML. */
function yamlProgram(count: number): string {
  const resources = Array.from({ length: count }, (_, i) =>
    [
      `  node${i}:`,
      `    type: espm:index:NodeRegistration`,
      `    properties: { name: fleet-yaml-${i}.example.test, groups: [base] }`,
      `  enrollment${i}:`,
      `    type: espm:index:Enrollment`,
      `    properties: { certname: "\${node${i}.nodeName}", includeCaBundle: false }`,
    ].join("\n"),
  );
  return `name: espm-bench-fleet-yaml\nruntime: yaml\nresources:\n${resources.join("\n")}\n`;
}

/** The YAML program's up, unchanged preview and destroy, from the command line. */
async function yamlFleet(world: World, count: number, cpu: boolean): Promise<Timings> {
  const dir = engineDir("bench-fleet-yaml");
  try {
    const cli = await PulumiCli.create({
      dir,
      program: yamlProgram(count),
      stack: "bench",
      pluginTarball: await pluginTarball(),
    });
    await cli.config({ "espm:url": world.espm.url, "espm:certificate": world.setup.certificate });
    await cli.config({ "espm:psk": world.setup.psk }, true);
    const timer = operationTimer(cpu);
    const up = await timer.time("up", () => cli.ok("up", "--yes", "--skip-preview"));
    let output = "";
    const preview = await timer.time("preview", async () => {
      output = await cli.ok("preview");
    });
    if (/\d+ to (create|update|delete|replace)/.test(output) || !/unchanged/.test(output))
      throw new Error(`yaml: the preview after up was not unchanged:\n${output}`);
    const destroy = await timer.time("destroy", () => cli.ok("destroy", "--yes", "--skip-preview"));
    return { up, preview, destroy, cpu: timer.cpu() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One stack's up, unchanged preview and destroy; fails when the preview is not unchanged. */
async function fleet(world: World, mode: Exclude<Mode, "yaml">, count: number, cpu: boolean): Promise<Timings> {
  const dir = engineDir(`bench-fleet-${mode}`);
  try {
    const stack = await engineStack({
      dir,
      projectName: `espm-bench-fleet-${mode}`,
      stackName: "bench",
      program: program(mode, count),
      config: mode === "baseline" ? {} : world.engineConfig(),
    });
    const log = world.espm.logLines;
    const marks = [log.length];
    const timer = operationTimer(cpu);
    const up = await timer.time("up", () => stack.up());
    marks.push(log.length);
    let changes: Record<string, number> = {};
    const preview = await timer.time("preview", async () => {
      changes = (await stack.preview()).changeSummary;
    });
    marks.push(log.length);
    if (Object.keys(changes).some((kind) => kind !== "same"))
      throw new Error(`${mode}: the preview after up was not unchanged: ${JSON.stringify(changes)}`);
    const destroy = await timer.time("destroy", () => stack.destroy());
    marks.push(log.length);
    const share = (i: number) => espmShare(log.slice(marks[i], marks[i + 1]));
    return {
      up,
      preview,
      destroy,
      espm: { up: share(0), preview: share(1), destroy: share(2) },
      cpu: timer.cpu(),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      count: { type: "string", default: "100" },
      modes: { type: "string", default: "baseline,instance,provider,yaml" },
      breakdown: { type: "boolean", default: false },
      runs: { type: "string", default: "1" },
      jvm: { type: "string", default: "fast" },
    },
  });
  const modes = new Set(values.modes.split(","));
  if (!modes.has("baseline")) throw new Error("--modes must include baseline: every ratio is against it");
  const count = Number(values.count);
  if (!Number.isInteger(count) || count < 1) throw new Error(`--count must be a positive integer, not ${values.count}`);
  const jvm = values.jvm;
  if (jvm !== "fast" && jvm !== "production") throw new Error(`--jvm must be fast or production, not ${jvm}`);
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, not ${values.runs}`);
  if (!pulumiBin()) throw new Error("no Pulumi CLI: run scripts/build-pulumi.sh (or set ESPM_PULUMI_BIN)");
  const world = jvm === "production" ? await World.start({ jvm }) : await sharedWorld();
  try {
    // Each round runs every mode once, so that the machine's drifts fall on all of them alike.
    const rounds = new Map<Mode, Timings[]>();
    const record = (mode: Mode, timings: Timings) => rounds.set(mode, [...(rounds.get(mode) ?? []), timings]);
    if (modes.has("yaml") && !yamlHostBin())
      console.log("(no YAML language host: scripts/build-pulumi-yaml.sh builds it; the YAML program is skipped)");
    for (let round = 0; round < runs; round++) {
      for (const mode of ["baseline", "instance", "provider"] as const)
        if (modes.has(mode)) record(mode, await fleet(world, mode, count, values.breakdown));
      if (modes.has("yaml") && yamlHostBin()) record("yaml", await yamlFleet(world, count, values.breakdown));
    }
    const results = new Map<Mode, Timings>([...rounds].map(([mode, all]) => [mode, medianTimings(all)]));
    const base = results.get("baseline")!;
    const goals: Record<Exclude<Mode, "yaml">, Record<Operation, number>> = {
      baseline: { up: 1, preview: 1, destroy: 1 },
      instance: { up: 1.5, preview: 1.2, destroy: 1.5 },
      provider: { up: 2, preview: 1.2, destroy: 2 },
    };
    const what: Record<Mode, string> = {
      baseline: `${2 * count} do-nothing dynamic resources`,
      instance: `${count} registrations + ${count} enrollments`,
      provider: `${count} registrations + ${count} certificates`,
      yaml: `the instance mode in YAML, through the plugin`,
    };
    const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
    const of = runs > 1 ? `, medians of ${runs} runs [fastest to slowest] (the breakdown: the last run's)` : "";
    const server = jvm === "production" ? "Puppet Server with Debian's JVM settings" : "the lab's fast-start JVM";
    console.log(`a fleet through the real engine (up, unchanged preview, destroy), ${count} nodes, ${server}${of}:`);
    for (const [mode, t] of results) {
      const cell = (op: Operation) => {
        const spread = runs > 1 && t.range ? ` [${t.range[op].map((v) => v.toFixed(1)).join(" to ")}]` : "";
        const time = `${op} ${t[op].toFixed(1)} s${spread}`;
        if (mode === "baseline") return time;
        if (mode === "yaml")
          return `${time} (${ratio(t[op], base[op])}; ${ratio(t[op], results.get("instance")![op])} TypeScript's)`;
        return `${time} (${ratio(t[op], base[op])}, goal ${goals[mode][op]}x)`;
      };
      console.log(`  ${mode.padEnd(9)} ${what[mode]}: ${cell("up")}, ${cell("preview")}, ${cell("destroy")}`);
      if (values.breakdown)
        for (const op of ["up", "preview", "destroy"] as const) {
          const parts = [t.cpu?.[op], t.espm?.[op]].filter(Boolean);
          console.log(`            ${op}: ${parts.join("; ")}`);
        }
    }
  } finally {
    if (jvm === "production") await world.stop();
    else await stopSharedWorld();
  }
}

// Pulumi reports a provider it cannot serialize only as an unhandled rejection: fail with it.
process.on("unhandledRejection", (reason) => {
  throw reason;
});
// A Ctrl-C stops the lab's servers and removes the scratch directories.
cleanUpOnInterrupt();

main().catch((err: unknown) => {
  console.error(`bench/fleet: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
});
