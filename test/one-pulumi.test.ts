/** pulumi-espm refuses to load beside a second copy of @pulumi/pulumi, which would make `pulumi up` a silent no-op. */
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { secondPulumiProblem } from "pulumi-espm/one-pulumi";
import { ROOT, run, scratchDir } from "./helpers/espm";

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

  it("finds the program's copy from the program, wherever it is run from", async () => {
    const project = scratchDir("espm-two-pulumis-elsewhere");
    const other = join(project, "node_modules/@pulumi/pulumi");
    mkdirSync(other, { recursive: true });
    writeFileSync(join(other, "package.json"), JSON.stringify({ name: "@pulumi/pulumi", version: "3.200.0" }));
    // The program loads pulumi-espm (this checkout's) and asks the guard with no argument, as
    // requireOnePulumi does; it runs from / and from its own directory.
    const main = join(project, "main.js");
    writeFileSync(
      main,
      `process.stdout.write(require(${JSON.stringify(join(ROOT, "provider/dist/provider/one-pulumi.js"))}).secondPulumiProblem() ?? "none");`,
    );
    for (const cwd of ["/", project, ROOT]) {
      const { stdout } = await run(process.execPath, [main], { cwd });
      assert.ok(stdout.includes(other), `from ${cwd}: ${stdout}`);
    }
    rmSync(project, { recursive: true, force: true });
  });
});
