/** The lab's espm (scripts/lab/espm.ts), an installed copy of it, and the groups the tests classify with. */
import { cpSync } from "node:fs";
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
