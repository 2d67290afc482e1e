/**
 * The README and docs/ as a reader follows them: every relative link leads to a file, and every
 * path of this repository a command block names (a script, an example, a test) exists.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { ROOT } from "./helpers/espm";

const PAGES = ["README.md", ...readdirSync(join(ROOT, "docs")).map((f) => `docs/${f}`)];

describe("the README and docs/", () => {
  it("keeps the README short: what it is, the two commands, a first program, how to run it, links", () => {
    const lines = readFileSync(join(ROOT, "README.md"), "utf8").split("\n").length;
    assert.ok(lines <= 160, `README.md has ${lines} lines`);
  });

  it("has both commands (and CI) install the system packages, the compiler among them, before npm ci", () => {
    for (const script of ["scripts/test.sh", "scripts/demo.sh", ".ci/run"]) {
      const lines = readFileSync(join(ROOT, script), "utf8").split("\n");
      const deps = lines.findIndex((l) => /^\s*scripts\/install-deps\.sh/.test(l));
      const ci = lines.findIndex((l) => /^(?:\[[^\]]*\] \|\| )?npm ci\b/.test(l.trim()));
      assert.ok(
        deps >= 0 && ci >= 0 && deps < ci,
        `${script}: install-deps.sh (line ${deps + 1}) before npm ci (line ${ci + 1})`,
      );
    }
    assert.match(readFileSync(join(ROOT, "scripts/install-deps.sh"), "utf8"), /missing="\$missing g\+\+"/);
  });

  for (const page of PAGES)
    it(`${page}: every relative link and every repository path in a command block resolves`, () => {
      const text = readFileSync(join(ROOT, page), "utf8");
      const broken: string[] = [];
      for (const [, target] of text.matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue; // https:, mailto:
        if (!existsSync(join(ROOT, dirname(page), target!))) broken.push(`link ${target}`);
      }
      for (const [, block] of text.matchAll(/```(?:sh|bash|console)\n([\s\S]*?)```/g)) {
        for (const [, path] of block!.matchAll(
          /(?:^|[\s"'(=])((?:scripts|examples|bench|test|docs)\/[\w./-]*[\w/])/gm,
        )) {
          if (!existsSync(join(ROOT, path!))) broken.push(`path ${path}`);
        }
      }
      assert.deepEqual(broken, []);
    });
});
