/** The lab's espm (scripts/lab/espm.ts), an installed copy of it, and the groups the tests classify with. */
import { spawn } from "node:child_process";
import { cpSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../../scripts/lab/espm";

export * from "../../scripts/lab/espm";

/**
 * A copy of what `espm enc` and `espm autosign` load, in a directory every user can read, as an installed package would
 * be: the checkout itself may sit under a directory other users cannot enter.
 */
export function installedCopy(dir: string): string {
  const pkg = join(dir, "pkg");
  for (const part of [
    "package.json",
    "dist/agent",
    "dist/sdk",
    "node_modules/zod",
    "node_modules/yaml",
    "node_modules/ini",
  ]) {
    cpSync(join(ROOT, part), join(pkg, part), { recursive: true });
  }
  return join(pkg, "dist/agent/cli/espm.js");
}

/**
 * The whole agent as `npm install -g` would leave it, in a directory every user can read: its
 * built code and the packages agent/package.json depends on (with theirs), copied from this
 * checkout's node_modules. For espm run as its own user, as the operator guide has it.
 */
export function installedAgent(dir: string): { espm: string; setup: string } {
  const pkg = join(dir, "espm-agent");
  for (const part of ["package.json", "dist/agent", "dist/sdk"])
    cpSync(join(ROOT, part), join(pkg, part), { recursive: true });
  const wanted = (manifest: string) =>
    Object.keys((JSON.parse(readFileSync(manifest, "utf8")) as { dependencies?: object }).dependencies ?? {});
  const pending = wanted(join(ROOT, "agent/package.json"));
  const copied = new Set<string>();
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
    // A package npm did not hoist travels inside the one that needs it.
    if (copied.has(name) || !existsSync(join(ROOT, "node_modules", name))) continue;
    copied.add(name);
    cpSync(join(ROOT, "node_modules", name), join(pkg, "node_modules", name), { recursive: true });
    pending.push(...wanted(join(ROOT, "node_modules", name, "package.json")));
  }
  return { espm: join(pkg, "dist/agent/cli/espm.js"), setup: join(pkg, "dist/agent/cli/espm-setup.js") };
}

/**
 * Runs argv as `user` (with the user's own groups, as a login would give them) with `input` on
 * stdin: how Puppet Server's user, espm's user or a stranger would run it. Never throws on exit.
 */
export function runAs(
  user: string,
  argv: string[],
  input = "",
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn("runuser", ["-u", user, "--", ...argv], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdin.on("error", () => {}); // a command that never reads its input (cat FILE)
    child.once("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input);
  });
}

export const GROUPS_YAML = `groups:
  web:
    description: Web servers
    classes:
      motd:
        message: from the web group
      ntp: {}
    parameters:
      role: web
      tier: front
  base:
    classes:
      ssh: { port: 22 }
`;
