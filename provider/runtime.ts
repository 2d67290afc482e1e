/**
 * The one module that serialized providers `require` (as `pulumi-espm/dist/provider/runtime.js`).
 *
 * Pulumi stores each dynamic provider's code in state and runs refresh and destroy with it, so the
 * code it stores is only thin calls into this module: the lifecycles themselves can change between
 * releases and existing stacks use the installed version. Moving or renaming what this module
 * exports would break `pulumi destroy` of existing stacks: it is a public contract.
 */
import { relative, resolve, sep } from "node:path";

export { stackConnection } from "./connection";
export { registrationLifecycle as registration } from "./registration";
export { certificateLifecycle as certificate } from "./certificate";
export { awsSettings, imageLifecycle as image } from "./image";
export { firstRunLifecycle as firstRun } from "./first-run";

/**
 * Where serialized providers load the runtime module from, decided once when the program loads
 * this package. Installed from npm (the usual case) it is the package path,
 * `pulumi-espm/dist/provider/runtime.js`, which the dynamic-provider host resolves from the
 * project's node_modules. From a checkout of this repository it is the path relative to the
 * project directory, where the host also runs.
 *
 * Loading by name at call time, rather than capturing the module, keeps the code Pulumi stores in
 * state to a few lines: Pulumi would otherwise serialize a local module by value, classes and all,
 * and it cannot serialize class fields.
 */
export const RUNTIME_MODULE = runtimeModuleSpecifier(__filename);

export function runtimeModuleSpecifier(file: string, projectDir = process.cwd()): string {
  const marker = `${sep}node_modules${sep}`;
  const at = file.lastIndexOf(marker);
  if (at >= 0) return file.slice(at + marker.length).split(sep).join("/");
  const path = relative(projectDir, file).split(sep).join("/");
  return path.startsWith(".") ? path : `./${path}`;
}

/** The runtime module, loaded by the provider code Pulumi stored (see RUNTIME_MODULE). */
export function espmRuntime(): typeof import("./runtime") {
  // A plain require by a captured name, resolved where it runs (in the dynamic-provider host, from
  // the project directory), never serialized. A checkout's path is relative to that directory.
  const specifier = RUNTIME_MODULE.startsWith(".") ? resolve(RUNTIME_MODULE) : RUNTIME_MODULE;
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded by name on purpose, see above
  return require(specifier) as typeof import("./runtime");
}
