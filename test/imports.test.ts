/**
 * The packages import one way: no cycles, each package imports only what its manifest declares, and
 * the agent and the Pulumi library meet only in espm-sdk.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { ROOT } from "./helpers/espm";

/** Every .ts file under `dir`. */
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return entry === "dist" || entry === "node_modules" ? [] : sources(path);
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

const ROOMS = ["agent", "sdk", "provider", "plugin"];
const sourcesSet = new Set(ROOMS.flatMap((room) => sources(join(ROOT, room))));

describe("imports", () => {
  it("have no cycles among agent/, sdk/, provider/ and plugin/", () => {
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

  it("name only packages their manifest declares, and the agent and the library meet only in espm-sdk", () => {
    const undeclared: string[] = [];
    for (const room of ROOMS) {
      const manifest = JSON.parse(readFileSync(join(ROOT, room, "package.json"), "utf8")) as Record<
        "dependencies" | "peerDependencies" | "devDependencies",
        Record<string, string> | undefined
      >;
      const runtime = new Set(Object.keys({ ...manifest.dependencies, ...manifest.peerDependencies }));
      const types = new Set([...runtime, ...Object.keys(manifest.devDependencies ?? {})]);
      for (const file of sources(join(ROOT, room))) {
        for (const { name, typeOnly } of packageImports(file)) {
          if (!(typeOnly ? types : runtime).has(name)) undeclared.push(`${relative(ROOT, file)} -> ${name}`);
        }
      }
    }
    assert.deepEqual(undeclared, []);
    const dependsOn = (room: string) =>
      Object.keys(
        (JSON.parse(readFileSync(join(ROOT, room, "package.json"), "utf8")) as { dependencies?: object })
          .dependencies ?? {},
      );
    assert.ok(!dependsOn("provider").includes("espm-agent") && !dependsOn("agent").includes("pulumi-espm"));
    assert.deepEqual(
      dependsOn("sdk").filter((name) => name.includes("espm")),
      [],
    );
  });

  it("leave the input schemas and the HTTP client out of a program, and the CSR builder out of a provider host until a create needs them", () => {
    // In a fresh process, as a program and a dynamic-provider host load them: what they pull in.
    const loaded = (specifier: string) =>
      execFileSync(
        process.execPath,
        ["-e", `require(${JSON.stringify(specifier)}); console.log(Object.keys(require.cache).join("\\n"))`],
        { cwd: join(ROOT, "provider"), encoding: "utf8" },
      )
        .split("\n")
        .map((path) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path)?.[1])
        .filter((name): name is string => name !== undefined);
    // A program only declares resources: their classes live apart from their lifecycles.
    const program = new Set(loaded("pulumi-espm"));
    assert.ok(program.has("@pulumi/pulumi"), "the program's own load is what this looks at");
    for (const name of ["zod", "undici", "@peculiar/asn1-csr", "@peculiar/asn1-x509"])
      assert.ok(!program.has(name), `a program that declares espm's resources loads ${name}`);
    const host = new Set(loaded("pulumi-espm/dist/provider/runtime.js"));
    assert.ok(host.has("zod"), "the runtime module checks inputs with the lifecycles' schemas");
    for (const name of ["@peculiar/asn1-csr", "@peculiar/asn1-x509"])
      assert.ok(!host.has(name), `the runtime module loads ${name} before any certificate is made`);
  });
});

/** The packages (not Node's own modules) a file imports, by package name, and whether only for types. */
function packageImports(file: string): { name: string; typeOnly: boolean }[] {
  const text = readFileSync(file, "utf8");
  const found: { name: string; typeOnly: boolean }[] = [];
  const specifiers =
    /^(import|export)\s+(type\s+)?(?:[^;]*?\s+from\s+)?"([^".][^"]*)";|(?:import|require)\("([^".][^"]*)"\)/gm;
  for (const match of text.matchAll(specifiers)) {
    const specifier = match[3] ?? match[4]!;
    if (specifier.startsWith("node:")) continue;
    const parts = specifier.split("/");
    const name = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
    const names = match[1] ? /\{([^}]*)\}/.exec(match[0])?.[1] : undefined;
    const typeOnly =
      match[2] !== undefined ||
      (names !== undefined && names.split(",").every((n) => n.trim() === "" || n.trim().startsWith("type ")));
    found.push({ name, typeOnly });
  }
  return found;
}
