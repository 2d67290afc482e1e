/** The rooms of the tree import one way: no cycles, and the agent and the provider meet only in sdk/. */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { ROOT } from "./helpers/espm";

/** Every .ts file under `dir`. */
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return sources(path);
    return entry.endsWith(".ts") && !entry.endsWith(".d.ts") ? [path] : [];
  });
}

/** The files a file imports at run time (type-only imports vanish when compiled). */
function runtimeImports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const imports: string[] = [];
  for (const match of text.matchAll(/^(?:import|export)\s+(type\s+)?(?:[^;]*?\s+from\s+)?"(\.[^"]+)";/gm)) {
    if (match[1]) continue;
    const clause = match[0];
    // `import { type A, type B } from "./x"` is type-only too.
    const names = /\{([^}]*)\}/.exec(clause)?.[1];
    if (names && names.split(",").every((n) => n.trim() === "" || n.trim().startsWith("type "))) continue;
    const target = resolve(dirname(file), match[2]!);
    imports.push(target.endsWith(".ts") ? target : `${target}.ts`);
  }
  return imports.map((target) => (sourcesSet.has(target) ? target : target.replace(/\.ts$/, "/index.ts")));
}

const ROOMS = ["agent", "sdk", "provider"];
const sourcesSet = new Set(ROOMS.flatMap((room) => sources(join(ROOT, room))));

describe("imports", () => {
  it("have no cycles among agent/, sdk/ and provider/", () => {
    const graph = new Map([...sourcesSet].map((file) => [file, runtimeImports(file).filter((t) => sourcesSet.has(t))]));
    const cycles: string[] = [];
    const state = new Map<string, "open" | "done">();
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === "done") return;
      if (state.get(file) === "open") {
        cycles.push([...path.slice(path.indexOf(file)), file].map((f) => relative(ROOT, f)).join(" -> "));
        return;
      }
      state.set(file, "open");
      for (const next of graph.get(file) ?? []) visit(next, [...path, file]);
      state.set(file, "done");
    };
    for (const file of graph.keys()) visit(file, []);
    assert.deepEqual(cycles, []);
  });

  it("keep the agent and the provider apart: each reaches the other only through sdk/", () => {
    const crossings: string[] = [];
    for (const file of sourcesSet) {
      const room = relative(ROOT, file).split("/")[0];
      for (const target of runtimeImports(file)) {
        const into = relative(ROOT, target).split("/")[0];
        const allowed = into === room || into === "sdk" || (room === "sdk" && into === "sdk");
        if (!allowed || (room === "sdk" && into !== "sdk"))
          crossings.push(`${relative(ROOT, file)} -> ${relative(ROOT, target)}`);
      }
    }
    assert.deepEqual(crossings, []);
  });
});
