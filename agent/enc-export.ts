/**
 * The classification export that `espm enc` reads: one JSON file per live node espm created,
 * replaced atomically (write a temporary file, then rename) after every change. `espm enc` runs
 * as Puppet Server's user, which must never get write access to the store; reading these files
 * needs none, and never meets a half-written one.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Node } from "../sdk/protocol";

const SUFFIX = ".json";

function exportPath(dir: string, name: string): string {
  // Names are validated before anything is stored ([a-z0-9._-], no ".."), so they are safe file names.
  return join(dir, `${name}${SUFFIX}`);
}

export function writeNodeExport(dir: string, node: Node): void {
  const target = exportPath(dir, node.name);
  const temporary = `${target}.${process.pid}.tmp`;
  writeFileSync(temporary, JSON.stringify(node), { mode: 0o644 });
  renameSync(temporary, target);
}

export function removeNodeExport(dir: string, name: string): void {
  rmSync(exportPath(dir, name), { force: true });
}

/** Makes the export match the store exactly: run at start-up, so a crash between commit and export heals. */
export function syncExport(dir: string, nodes: Node[]): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const live = new Set(nodes.map((n) => `${n.name}${SUFFIX}`));
  for (const file of readdirSync(dir)) {
    if (!live.has(file)) rmSync(join(dir, file), { force: true });
  }
  for (const node of nodes) writeNodeExport(dir, node);
}

/** The exported node, or undefined when espm did not create it (or it was deleted). */
export function readNodeExport(dir: string, name: string): Node | undefined {
  try {
    return JSON.parse(readFileSync(exportPath(dir, name), "utf8")) as Node;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}
