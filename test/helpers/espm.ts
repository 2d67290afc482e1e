/** The lab's espm (scripts/lab/espm.ts), an installed copy of it, and the groups the tests classify with. */
import { spawn } from "node:child_process";
import { cpSync, existsSync, readFileSync, realpathSync } from "node:fs";
import { join, sep } from "node:path";
import { ROOT } from "../../scripts/lab/espm";

export * from "../../scripts/lab/espm";

/**
 * A package as npm would install it from its tarball: its manifest and what its `files` name (a
 * workspace's package), or the whole directory (a package from the registry).
 */
function copyPackage(from: string, to: string): void {
  const workspace = !realpathSync(from).includes(`${sep}node_modules${sep}`);
  const { files = [] } = JSON.parse(readFileSync(join(from, "package.json"), "utf8")) as { files?: string[] };
  const parts = workspace ? ["package.json", ...files.filter((f) => !f.startsWith("!"))] : ["."];
  for (const part of parts) {
    if (existsSync(join(from, part))) cpSync(join(from, part), join(to, part), { recursive: true, dereference: true });
  }
}

/**
 * The agent and the packages `only` names (default: every one it depends on, with theirs), copied
 * from this checkout's workspace and node_modules into `dir`, as `npm install -g espm-agent` would
 * leave them: a directory every user can read, where the checkout may sit under one they cannot enter.
 */
function installAgentInto(dir: string, only?: string[]): string {
  const pkg = join(dir, "espm-agent");
  copyPackage(join(ROOT, "agent"), pkg);
  const wanted = (manifest: string) =>
    Object.keys((JSON.parse(readFileSync(manifest, "utf8")) as { dependencies?: object }).dependencies ?? {});
  const pending = only ?? wanted(join(ROOT, "agent/package.json"));
  const copied = new Set<string>();
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
    // A package npm did not hoist travels inside the one that needs it.
    if (copied.has(name) || !existsSync(join(ROOT, "node_modules", name))) continue;
    copied.add(name);
    copyPackage(join(ROOT, "node_modules", name), join(pkg, "node_modules", name));
    if (!only) pending.push(...wanted(join(ROOT, "node_modules", name, "package.json")));
  }
  return pkg;
}

/** What `espm enc` and `espm autosign` load, installed (see installAgentInto): the agent, its contract, zod, yaml and ini. */
export function installedCopy(dir: string): string {
  return join(installAgentInto(dir, ["espm-sdk", "zod", "yaml", "ini"]), "dist/agent/cli/espm.js");
}

/** The whole agent installed (see installAgentInto), for espm run as its own user, as the operator guide has it. */
export function installedAgent(dir: string): { espm: string; setup: string } {
  const pkg = installAgentInto(dir);
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
