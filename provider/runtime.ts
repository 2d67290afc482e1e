/**
 * The one module that serialized providers `require` (as `pulumi-espm/dist/provider/runtime.js`).
 *
 * Pulumi stores each dynamic provider's code in state and runs refresh and destroy with it, so the
 * code it stores is only thin calls into this module: the lifecycles themselves can change between
 * releases and existing stacks use the installed version. Moving or renaming what this module
 * exports would break `pulumi destroy` of existing stacks: it is a public contract.
 */
import { sep } from "node:path";

export { stackConnection } from "./connection";
export { registrationLifecycle as registration } from "./registration";
export { certificateLifecycle as certificate } from "./certificate";
export { awsSettings, imageLifecycle as image } from "./image";
export { firstRunLifecycle as firstRun } from "./first-run";

/**
 * Where serialized providers load the runtime module from, decided once when the program loads
 * this package. Installed from npm (the usual case) it is the package path,
 * `pulumi-espm/dist/provider/runtime.js`, which the dynamic-provider host resolves from the
 * project's node_modules. From a checkout of this repository (espm's own tests and demo) it is the
 * absolute path of this file: the host's working directory is the project's, which need not be
 * the checkout.
 *
 * Loading by name at call time, rather than capturing the module, keeps the code Pulumi stores in
 * state to a few lines: Pulumi would otherwise serialize a local module by value, classes and all,
 * and it cannot serialize class fields.
 */
export const RUNTIME_MODULE = runtimeModuleSpecifier(__filename);

export function runtimeModuleSpecifier(file: string): string {
  const marker = `${sep}node_modules${sep}`;
  const at = file.lastIndexOf(marker);
  return at >= 0 ? file.slice(at + marker.length).split(sep).join("/") : file;
}

/** The runtime module, loaded by the provider code Pulumi stored (see RUNTIME_MODULE). */
export function espmRuntime(): typeof import("./runtime") {
  // A plain require by a captured name, resolved where it runs (in the dynamic-provider host), never serialized.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded by name on purpose, see above
  return require(RUNTIME_MODULE) as typeof import("./runtime");
}
