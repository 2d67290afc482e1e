/** pulumi-espm refuses to load beside a second copy of @pulumi/pulumi, which would make `pulumi up` a silent no-op. */
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { secondPulumiProblem } from "../provider/one-pulumi";
import { ROOT, scratchDir } from "./helpers/espm";

describe("one copy of @pulumi/pulumi", () => {
  it("is content with the program's own copy", () => {
    assert.equal(secondPulumiProblem(ROOT), undefined);
  });

  it("names both copies and the fix when the program has another", () => {
    const project = scratchDir("espm-two-pulumis");
    const other = join(project, "node_modules/@pulumi/pulumi");
    mkdirSync(other, { recursive: true });
    writeFileSync(
      join(other, "package.json"),
      JSON.stringify({ name: "@pulumi/pulumi", version: "3.200.0", main: "index.js" }),
    );
    writeFileSync(join(other, "index.js"), "");
    const problem = secondPulumiProblem(project);
    assert.ok(problem, "a second copy is found");
    assert.ok(problem.includes(other), problem);
    assert.ok(problem.includes(join(ROOT, "node_modules/@pulumi/pulumi")), problem);
    assert.match(problem, /never reach the engine.*peer range.*reinstall/);
    rmSync(project, { recursive: true, force: true });
  });
});
