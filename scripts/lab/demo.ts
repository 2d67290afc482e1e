/**
 * The main job: a local Puppet Server with a demo module, and espm configured against it with its
 * embedded store, in the foreground. Where the Pulumi CLI can be had (built from Go modules by
 * scripts/build-pulumi.sh), it then runs `pulumi up` on a local demo stack of espm's resources
 * against them and moto's EC2, and boots the node from the stack's output (see demo-stack.ts).
 * Otherwise it prints the stack config that points a Pulumi stack at espm. Ctrl-C (or SIGTERM), at
 * any moment, destroys the demo stack and stops everything that started, leaving nothing running.
 *
 * The node boots in the recommended instance key mode (its own key, signed through espm's autosign
 * policy); --provider-key shows the provider key mode instead.
 *
 *   sudo npm run demo [-- --dir /var/tmp/espm-demo --port 8443 --puppet-port 8140 --provider-key --no-pulumi]
 */
import { execFileSync, spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { buildPulumi, DEMO_CERTNAMES, runDemoStack } from "./demo-stack";
import { puppetServerArgs } from "./espm";
import { commandLine, isRunning, portOwner } from "./ports";
import { startPuppetServer } from "./puppetserver";

const ROOT = resolve(__dirname, "../../..");

/** A Ctrl-C (SIGINT) or SIGTERM while the demo starts or runs. */
class Interrupted extends Error {
  constructor(readonly signal: string) {
    super(`stopped by ${signal}`);
  }
}

/**
 * Ctrl-C in a terminal reaches the whole foreground process group. The services the demo starts
 * run in process groups of their own (detached), so they keep running until the demo has destroyed
 * its stack through them, and then stops them itself, newest first.
 */
function onInterrupt(): AbortController {
  const controller = new AbortController();
  const handle = (signal: string) => {
    if (controller.signal.aborted) {
      console.log(`demo: ${signal} again: already stopping, please wait`);
      return;
    }
    console.log(`\ndemo: ${signal}: stopping what the demo started...`);
    controller.abort(new Interrupted(signal));
  };
  process.on("SIGINT", () => handle("SIGINT"));
  process.on("SIGTERM", () => handle("SIGTERM"));
  return controller;
}

/** `work`, or the interruption, whichever comes first. */
function interruptible<T>(signal: AbortSignal, work: Promise<T>): Promise<T> {
  return Promise.race([
    work,
    new Promise<never>((_, reject) => {
      if (signal.aborted) reject(signal.reason as Error);
      signal.addEventListener("abort", () => reject(signal.reason as Error), { once: true });
    }),
  ]);
}

/** Refuses to start over a service that is already there, naming the process. */
function checkNothingLeftOver(dir: string, ports: Array<[string, number]>): void {
  // A demo still running in this directory is named as running, not as a leftover to kill.
  const demoPid = Number(existsSync(join(dir, DEMO_PID)) ? readFileSync(join(dir, DEMO_PID), "utf8").trim() : 0);
  if (demoPid > 0 && demoPid !== process.pid && isRunning(demoPid) && commandLine(demoPid, Infinity).includes("demo"))
    throw new Error(
      `a demo is running in ${dir} (pid ${demoPid}); stop it with Ctrl-C in its terminal (or kill -INT ${demoPid}), or run this one with another --dir, --port and --puppet-port`,
    );
  const pidFile = join(dir, "puppetserver/run/server.pid");
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    if (pid > 0 && isRunning(pid) && commandLine(pid, Infinity).includes(dir)) {
      throw new Error(
        `a Puppet Server from an earlier demo in ${dir} is still running (pid ${pid}: ${commandLine(pid)}); stop it with kill ${pid} and run the demo again`,
      );
    }
  }
  for (const [what, port] of ports) {
    const owner = portOwner(port);
    if (owner)
      throw new Error(
        `port ${port} (${what}) is taken by pid ${owner.pid}: ${owner.command}; stop it, or choose another port with --${what === "espm" ? "port" : "puppet-port"}`,
      );
  }
}

/** The running demo's pid, in its directory. */
const DEMO_PID = "demo.pid";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dir: { type: "string", default: "/var/tmp/espm-demo" },
      port: { type: "string", default: "8443" },
      "puppet-port": { type: "string", default: "8140" },
      "provider-key": { type: "boolean", default: false },
      "no-pulumi": { type: "boolean", default: false },
    },
  });
  if (process.getuid?.() !== 0)
    throw new Error("run the demo as root (it installs Debian packages and runs Puppet Server)");
  const { signal } = onInterrupt();
  const dir = resolve(values.dir);
  checkNothingLeftOver(dir, [
    ["puppet-port", Number(values["puppet-port"])],
    ["espm", Number(values.port)],
  ]);
  execFileSync(join(ROOT, "scripts/install-deps.sh"), { stdio: "inherit" });
  signal.throwIfAborted();

  rmSync(dir, { recursive: true, force: true });
  const configDir = join(dir, "espm/etc");
  mkdirSync(join(configDir, "certs"), { recursive: true });
  writeFileSync(join(dir, DEMO_PID), `${process.pid}\n`);
  const ini = join(configDir, "espm.ini");
  const espmBin = join(ROOT, "agent/dist/agent/cli/espm.js");

  const stops: Array<{ what: string; stop: () => Promise<void> }> = [];
  let failedStops = 0;
  try {
    console.log(`Starting Puppet Server in ${dir}/puppetserver (about 30 s)...`);
    const lab = await startPuppetServer({
      dir: join(dir, "puppetserver"),
      port: Number(values["puppet-port"]),
      enc: `${process.execPath} ${espmBin} enc -c ${ini}`,
      // espm's autosign policy, as the operator guide sets it: the wrapper is written below, once espm is set up.
      autosign: join(configDir, "espm-autosign"),
      modules: [join(ROOT, "scripts/lab/modules/espm_demo")],
      certnames: { patterns: [DEMO_CERTNAMES], allowAny: false, deny: [] },
      signal,
    });
    stops.unshift({ what: "Puppet Server", stop: lab.stop });
    const setup = execFileSync(process.execPath, [
      join(ROOT, "agent/dist/agent/cli/espm-setup.js"),
      "-d",
      configDir,
      "--state-dir",
      configDir,
      "-p",
      values.port,
      "--host",
      "127.0.0.1",
      "--host",
      "localhost",
      "--listen",
      "127.0.0.1",
      ...puppetServerArgs(lab),
      "--certname-pattern",
      DEMO_CERTNAMES,
    ]).toString();
    execFileSync(process.execPath, [espmBin, "puppet-config", "-c", ini], { stdio: "ignore" });
    writeFileSync(
      join(configDir, "groups.yaml"),
      "groups:\n  demo:\n    description: Nodes of the espm demo\n    classes:\n      espm_demo:\n        message: Configured by Puppet through espm\n    parameters:\n      role: demo\n",
    );

    const espm = spawn(process.execPath, [espmBin, "-c", ini], {
      stdio: ["ignore", "pipe", "inherit"],
      detached: true,
    });
    stops.unshift({
      what: "espm",
      stop: () =>
        new Promise((done) =>
          espm.exitCode !== null ? done() : (espm.once("exit", () => done()), espm.kill("SIGTERM")),
        ),
    });
    await interruptible(
      signal,
      new Promise<void>((ready, failed) => {
        espm.stdout.on("data", (d: Buffer) => d.toString().includes('"espm ready"') && ready());
        espm.once("exit", (code) => failed(new Error(`espm exited with ${code}`)));
      }),
    );
    espm.stdout.pipe(createWriteStream(join(dir, "espm.log")));

    console.log(`\nPuppet Server: ${lab.url} (CA and config in ${lab.dir}; puppet.conf ${lab.confFile})`);
    console.log(`espm: https://127.0.0.1:${values.port} (config ${ini}, log ${join(dir, "espm.log")})\n`);
    console.log(setup);

    const pulumi = values["no-pulumi"] ? { why: "--no-pulumi" } : buildPulumi(ROOT);
    signal.throwIfAborted();
    if (pulumi.bin) {
      const demo = await interruptible(
        signal,
        runDemoStack(pulumi.bin, {
          root: ROOT,
          dir,
          espmUrl: `https://127.0.0.1:${values.port}`,
          psk: readFileSync(join(configDir, "psk"), "utf8").trim(),
          certificate: readFileSync(join(configDir, "certs/espm.crt"), "utf8"),
          masterPort: lab.port,
          keyMode: values["provider-key"] ? "provider" : "instance",
          onStop: (what, stop) => stops.unshift({ what, stop }),
        }),
      );
      console.log(demo.summary);
    } else {
      console.log(`No pulumi up in this demo: ${pulumi.why}. Point your own stack at espm with the lines above.`);
    }
    console.log("\nPress Ctrl-C to stop.");
    await interruptible(signal, new Promise<never>(() => {}));
  } catch (err) {
    // After a Ctrl-C, whatever failed (a child that got the terminal's SIGINT too) is the interruption.
    if (!signal.aborted) throw err;
  } finally {
    // A run the interruption cut short may still be settling: each stop waits for what it stops.
    for (const { what, stop } of stops) {
      try {
        await stop();
      } catch (err) {
        failedStops++;
        console.error(`demo: could not stop ${what}: ${(err as Error).message}`);
      }
    }
    if (failedStops === 0) console.log("Stopped everything the demo started.");
    else console.error(`demo: ${failedStops} of ${stops.length} could not be stopped cleanly; see above`);
  }
  if (failedStops > 0) process.exitCode = 1;
}

main().then(
  // Exit even if a client library still holds a handle: everything the demo started is stopped.
  () => process.exit(),
  (err: Error) => {
    console.error(`demo: ${err.message}`);
    process.exit(1);
  },
);
