/**
 * The demo as a person runs it: in a real pseudo-terminal (Python's pty module), stopped with
 * Ctrl-C typed into that terminal, which the terminal delivers to the whole foreground process
 * group. Whenever the Ctrl-C comes, the demo must destroy what it made and stop everything it
 * started, and say so only when that is true.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { commandLine, portOwner } from "../scripts/lab/ports";
import { freePort, ROOT, run, scratchDir } from "./helpers/espm";
import { pulumiBin } from "./helpers/engine";

interface Terminal {
  child: ChildProcess;
  output(): string;
  /** Types into the terminal, as a person at the keyboard would. */
  type(text: string): void;
  exited: Promise<number | null>;
}

/** Runs the demo in a fresh pseudo-terminal (argv only: no shell string). */
function demoInTerminal(args: string[]): Terminal {
  const argv = [
    "-c",
    "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)",
    process.execPath,
    join(ROOT, "dist/scripts/lab/demo.js"),
    ...args,
  ];
  const child = spawn("python3", argv, {
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, ESPM_PULUMI_BIN: pulumiBin() ?? "" },
  });
  let text = "";
  child.stdout.on("data", (d: Buffer) => (text += d.toString()));
  child.stderr.on("data", (d: Buffer) => (text += d.toString()));
  return {
    child,
    output: () => text,
    type: (input) => child.stdin.write(input),
    exited: new Promise((resolve) => child.once("exit", (code) => resolve(code))),
  };
}

async function waitFor(terminal: Terminal, pattern: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(terminal.output())) {
    if (terminal.child.exitCode !== null)
      assert.fail(`the demo exited before ${pattern}:\n${terminal.output().slice(-3000)}`);
    if (Date.now() > deadline)
      assert.fail(`no ${pattern} within ${timeoutMs / 1000} s:\n${terminal.output().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Processes whose command line mentions `text`, other than the test's own. */
function processesMentioning(text: string): string[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid)
    .map((pid) => `${pid}: ${commandLine(Number(pid), Infinity)}`)
    .filter((line) => line.includes(text) && !line.includes("pty.spawn"));
}

const CTRL_C = "\x03";

describe("the demo, stopped with Ctrl-C in a terminal", function () {
  this.timeout(900_000);
  const terminals: Terminal[] = [];
  const open = (args: string[]) => {
    const terminal = demoInTerminal(args);
    terminals.push(terminal);
    return terminal;
  };

  // A test that fails half-way must not leave a demo running: Ctrl-C it, and kill it if that is not enough.
  afterEach(async function () {
    this.timeout(120_000);
    for (const terminal of terminals.splice(0)) {
      if (terminal.child.exitCode !== null || terminal.child.signalCode !== null) continue;
      terminal.type(CTRL_C);
      const stopped = await Promise.race([
        terminal.exited.then(() => true),
        new Promise((r) => setTimeout(() => r(false), 90_000)),
      ]);
      if (!stopped) terminal.child.kill("SIGKILL");
    }
  });

  it("stops Puppet Server when Ctrl-C comes during start-up, and leaves nothing running", async () => {
    const dir = scratchDir("espm-demo-startup");
    const [port, puppetPort] = [await freePort(), await freePort()];
    const terminal = open(["--dir", dir, "--port", String(port), "--puppet-port", String(puppetPort), "--no-pulumi"]);
    await waitFor(terminal, /Starting Puppet Server/, 300_000);
    // Ctrl-C once the JVM is up and starting (not yet ready: it takes about 25 s).
    for (let waited = 0; !processesMentioning(dir).some((p) => p.includes("puppetserver.jar")); waited += 200) {
      assert.ok(waited < 60_000, "Puppet Server's JVM started");
      await new Promise((r) => setTimeout(r, 200));
    }
    await new Promise((r) => setTimeout(r, 2000));
    terminal.type(CTRL_C);
    const code = await terminal.exited;
    assert.equal(code, 0, terminal.output());
    assert.match(terminal.output(), /SIGINT: stopping what the demo started/);
    assert.match(terminal.output(), /Stopped everything the demo started\./);
    assert.deepEqual(processesMentioning(dir), [], "no Puppet Server left behind");
    assert.equal(portOwner(puppetPort), undefined);
  });

  it("destroys the stack through espm and then stops every service when Ctrl-C comes after provisioning", async function () {
    if (!pulumiBin()) this.skip();
    const dir = scratchDir("espm-demo-full");
    const [port, puppetPort] = [await freePort(), await freePort()];
    const motoBefore = new Set(processesMentioning("moto_server"));
    const terminal = open(["--dir", dir, "--port", String(port), "--puppet-port", String(puppetPort)]);
    await waitFor(terminal, /Press Ctrl-C to stop\./, 600_000);
    // The recommended instance key mode: the node's own key, signed through espm's autosign policy
    // the moment the node asked (not by the sweep, after waits).
    const firstBoot = /first boot in \d+ s: bootstrap exit 0/.exec(terminal.output());
    assert.ok(firstBoot, terminal.output().slice(-3000));
    console.log(`      the demo's ${firstBoot[0]}`);
    assert.match(terminal.output(), /signed it through espm's autosign policy when the node asked, with no wait/);
    terminal.type(CTRL_C);
    const code = await terminal.exited;
    const output = terminal.output();
    assert.equal(code, 0, output.slice(-3000));
    assert.match(output, /Destroying \(demo\)/);
    assert.match(output, /- 4 deleted|4 deleted/);
    assert.doesNotMatch(output, /ECONNREFUSED|could not stop/);
    assert.match(output, /Stopped everything the demo started\./);
    assert.deepEqual(processesMentioning(dir), [], "no Puppet Server or espm left behind");
    assert.deepEqual(
      processesMentioning("moto_server").filter((p) => !motoBefore.has(p)),
      [],
      "no moto left behind",
    );
    assert.equal(portOwner(port), undefined);
    assert.equal(portOwner(puppetPort), undefined);
  });

  it("names the process holding a port instead of failing later", async () => {
    const dir = scratchDir("espm-demo-taken");
    const blocker = createServer();
    await new Promise<void>((ready) => blocker.listen(0, "127.0.0.1", ready));
    const taken = (blocker.address() as { port: number }).port;
    try {
      const terminal = open([
        "--dir",
        dir,
        "--port",
        String(await freePort()),
        "--puppet-port",
        String(taken),
        "--no-pulumi",
      ]);
      const code = await terminal.exited;
      assert.equal(code, 1);
      assert.match(
        terminal.output(),
        new RegExp(`port ${taken} \\(puppet-port\\) is taken by pid ${process.pid}: .*node`),
      );
    } finally {
      blocker.close();
    }
  });

  it("says a taken port, and a demo already running, before it installs or builds anything (npm run demo)", async () => {
    const dir = scratchDir("espm-demo-early");
    const blocker = createServer();
    await new Promise<void>((ready) => blocker.listen(0, "127.0.0.1", ready));
    const taken = (blocker.address() as { port: number }).port;
    const demoSh = (...args: string[]) =>
      run("sh", [join(ROOT, "scripts/demo.sh"), "--dir", dir, ...args]).then(
        () => assert.fail("demo.sh went on"),
        (err: { code: number; stdout: string; stderr: string }) => ({ ...err, output: `${err.stdout}${err.stderr}` }),
      );
    // A demo running in the directory (its pid file names a live process whose command line says demo).
    const running = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)", "demo"], { stdio: "ignore" });
    try {
      const port = await demoSh("--port", String(taken));
      assert.equal(port.code, 1);
      assert.match(port.output, new RegExp(`demo: port ${taken} is taken .*choose another with --port`));
      assert.doesNotMatch(port.output, /install-deps|tsc/, "nothing installed or built first");
      writeFileSync(join(dir, "demo.pid"), `${running.pid}\n`);
      const demo = await demoSh("--port", String(await freePort()));
      assert.equal(demo.code, 1);
      assert.match(demo.output, new RegExp(`a demo is running in ${dir} \\(pid ${running.pid}\\)`));
      assert.doesNotMatch(demo.output, /kill/, "not told to kill a running demo's Puppet Server");
    } finally {
      running.kill();
      blocker.close();
    }
  });
});
