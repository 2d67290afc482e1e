/** scripts/build-pulumi.sh: two builds at once never share a work directory. */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT, scratchDir } from "./helpers/espm";

function runScript(
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn("sh", [join(ROOT, "scripts/build-pulumi.sh")], { env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("exit", (code) => resolve({ code, stdout, stderr, ms: Date.now() - started }));
  });
}

describe("scripts/build-pulumi.sh", function () {
  this.timeout(60_000);

  it("waits for a build of the same version that holds the lock, then reuses what it built", async () => {
    const version = `v${(JSON.parse(readFileSync(join(ROOT, "node_modules/@pulumi/pulumi/package.json"), "utf8")) as { version: string }).version}`;
    const cache = scratchDir("espm-pulumi-cache");
    mkdirSync(cache, { recursive: true });
    // Another build holds the lock for 3 s and, just before it lets go, finishes its bin directory.
    const bin = join(cache, version, "bin");
    const holder = spawn("flock", [
      join(cache, `${version}.lock`),
      "sh",
      "-c",
      `sleep 2.5; mkdir -p "${bin}"; printf '#!/bin/sh\\necho ${version}\\n' > "${bin}/pulumi"; printf '#!/bin/sh\\n' > "${bin}/pulumi-resource-pulumi-nodejs"; chmod 755 "${bin}"/*`,
    ]);
    const holderDone = new Promise((r) => holder.once("exit", r));
    await new Promise((r) => setTimeout(r, 300));
    const waited = await runScript({ ESPM_PULUMI_CACHE: cache });
    await holderDone;
    assert.equal(waited.code, 0, waited.stderr);
    assert.equal(waited.stdout.trim(), bin);
    assert.match(waited.stderr, /another build of pulumi v[\d.]+ is running; waiting for it/);
    assert.match(waited.stderr, /reusing .* \(built while this one waited\)/);
    assert.ok(waited.ms >= 2000, `returned after ${waited.ms} ms, before the other build let go`);

    const again = await runScript({ ESPM_PULUMI_CACHE: cache });
    assert.equal(again.code, 0);
    assert.match(again.stderr, /^build-pulumi: reusing /);
    rmSync(cache, { recursive: true, force: true });
  });
});
