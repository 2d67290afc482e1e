/**
 * pulumi-espm must share the program's one copy of @pulumi/pulumi. When a project pins a version
 * outside pulumi-espm's peer range, an older npm (or `--legacy-peer-deps`) can nest a second copy
 * inside pulumi-espm; resources made through it register with that copy's runtime, never reach
 * the engine, and `pulumi up` reports success with nothing done. So the library refuses to load
 * beside a second copy, saying how to fix it.
 */
import { realpathSync } from "node:fs";
import { dirname } from "node:path";

function resolvePulumi(paths?: string[]): string | undefined {
  try {
    return realpathSync(dirname(require.resolve("@pulumi/pulumi/package.json", paths ? { paths } : undefined)));
  } catch {
    return undefined;
  }
}

/**
 * Where the program's own @pulumi/pulumi is found from: the directory of the process's main module.
 * Under `pulumi up` that is the program's copy's own runner (the language host starts
 * node_modules/@pulumi/pulumi/cmd/run of the project); under the Automation API it is the user's
 * script. Never the working directory, which can be anywhere (`pulumi -C`, a script run from /).
 */
export function programDirectory(): string {
  const main = require.main?.filename;
  return main ? dirname(main) : process.cwd();
}

/** Why this copy of pulumi-espm cannot work in a program run from `programDir`, or undefined when it can. */
export function secondPulumiProblem(programDir: string = programDirectory()): string | undefined {
  const ours = resolvePulumi();
  const programs = resolvePulumi([programDir]);
  if (!ours || !programs || ours === programs) return undefined;
  return (
    `pulumi-espm found two copies of @pulumi/pulumi: the program's (${programs}) and its own (${ours}). ` +
    "Resources made through pulumi-espm would register with the second copy and never reach the engine. " +
    "Give the project an @pulumi/pulumi within pulumi-espm's peer range (npm ls @pulumi/pulumi shows both) and reinstall, so that there is one copy."
  );
}

/** Throws at load time beside a second copy of @pulumi/pulumi. */
export function requireOnePulumi(): void {
  const problem = secondPulumiProblem();
  if (problem) throw new Error(problem);
}
