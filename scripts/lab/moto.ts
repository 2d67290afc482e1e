/**
 * moto's EC2 server on a loopback port, for the demo (stock `moto_server`) and the tests (our
 * launcher, test/fixtures/moto/launcher.py, which takes moto_server's arguments).
 */
import { stopOnInterrupt } from "./interrupt";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "./ports";

/** The virtual environment scripts/install-deps.sh puts moto in when the system's python3 lacks it. */
const MOTO_VENV = process.env.ESPM_MOTO_VENV ?? "/var/cache/espm-moto";

/** A Python that can import moto: the system's python3, or the virtual environment's. */
export function motoPython(): string {
  try {
    execFileSync("python3", ["-c", "import moto.server"], { stdio: "ignore" });
    return "python3";
  } catch {
    return join(MOTO_VENV, "bin/python");
  }
}

/** moto_server from the system's Python, or from the virtual environment. */
export function motoServerCommand(): string {
  return existsSync(join(MOTO_VENV, "bin/moto_server")) ? join(MOTO_VENV, "bin/moto_server") : "moto_server";
}

export interface MotoServer {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts `command [...args] -H 127.0.0.1 -p PORT` and waits until /moto-api/ answers (at most 30 s). */
export async function startMotoServer(command: string, args: string[] = []): Promise<MotoServer> {
  const port = await freePort();
  // Its own process group: a Ctrl-C in the terminal goes to the program that started it, which stops it in order.
  const child = spawn(command, [...args, "-H", "127.0.0.1", "-p", String(port)], {
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  const release = stopOnInterrupt(child.pid, { group: true });
  child.once("exit", release);
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => child.once("exit", done));
    child.kill("SIGTERM");
    await exited;
  };
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${command} exited ${child.exitCode}: ${stderr}`);
    try {
      if ((await fetch(`${url}/moto-api/`)).ok) return { url, child, stop };
    } catch {
      // not listening yet
    }
    await sleep(200);
  }
  await stop();
  throw new Error(`${command} did not answer within 30 s: ${stderr}`);
}
