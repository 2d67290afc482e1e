/**
 * Ctrl-C of `npm test` leaves nothing behind: SIGINT to a test run's process group while a suite's
 * Puppet Server (a detached JVM, in a process group of its own) and espm run stops them all and
 * removes their directories (scripts/lab/interrupt.ts, armed by the test hooks).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, run } from "./helpers/espm";

/** Processes whose command line names `dir`. */
async function processesIn(dir: string): Promise<string[]> {
  const { stdout } = await run("ps", ["-eo", "pid=,args="]);
  return stdout.split("\n").filter((line) => line.includes(dir) && !line.includes("ps -eo"));
}

describe("a test run interrupted with Ctrl-C", function () {
  this.timeout(300_000);

  it("leaves no process and no directory after SIGINT to its process group", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "espm-interrupted-"));
    const ready = join(tmp, "..", `${tmp.split("/").pop()}.ready`);
    try {
      const mocha = spawn(
        process.execPath,
        [
          join(ROOT, "node_modules/mocha/bin/mocha.js"),
          "--no-config",
          "--require",
          join(ROOT, "dist/test/helpers/hooks.js"),
          join(ROOT, "dist/test/programs/interrupted/suite.js"),
        ],
        { cwd: ROOT, env: { ...process.env, TMPDIR: tmp, ESPM_READY_FILE: ready }, detached: true, stdio: "ignore" },
      );
      const exited = new Promise<number | null>((done) => mocha.once("exit", (code) => done(code)));
      for (const deadline = Date.now() + 240_000; !existsSync(ready);) {
        assert.ok(Date.now() < deadline, "the suite's world started");
        await new Promise((r) => setTimeout(r, 500));
      }
      const labDir = readFileSync(ready, "utf8").trim();
      const running = await processesIn(tmp);
      assert.ok(
        running.some((p) => p.includes("puppetserver.jar")),
        `Puppet Server runs:\n${running.join("\n")}`,
      );
      assert.ok(
        running.some((p) => p.includes("espm.js")),
        `espm runs:\n${running.join("\n")}`,
      );
      // What a terminal's Ctrl-C does: SIGINT to the foreground process group.
      process.kill(-mocha.pid!, "SIGINT");
      assert.equal(await exited, 130);
      assert.deepEqual(await processesIn(tmp), [], "no process left");
      assert.equal(existsSync(labDir), false, "the world's directory is gone");
      assert.deepEqual(readdirSync(tmp), [], "nothing left in its TMPDIR");
    } finally {
      rmSync(ready, { force: true });
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
