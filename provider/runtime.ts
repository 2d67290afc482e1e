/**
 * The one module that serialized providers `require` (as `pulumi-espm/dist/provider/runtime.js`).
 *
 * Pulumi stores each dynamic provider's code in state and runs refresh and destroy with it, so the
 * code it stores is only thin calls into this module: the lifecycles themselves can change between
 * releases and existing stacks use the installed version. Moving or renaming what this module
 * exports would break `pulumi destroy` of existing stacks: it is a public contract.
 */
import { sep } from "node:path";
import type * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "./connection";
import type { StackSettings } from "./settings";

export { stackSettings } from "./settings";
export { registrationLifecycle as registration } from "./registration";
export { certificateLifecycle as certificate } from "./certificate";
export { imageLifecycle as image } from "./image";
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

/** The resources whose lifecycles this module exports, by export name. */
export type LifecycleName = "registration" | "certificate" | "image" | "firstRun";

/** The shape every lifecycle here has: check → diff → create → read → update → delete, each given the stack's settings. */
interface Lifecycle {
  check(olds: object, news: Record<string, unknown>, settings?: StackSettings): Promise<pulumi.dynamic.CheckResult>;
  diff(id: string, olds: object, news: object): Promise<pulumi.dynamic.DiffResult>;
  create(inputs: object, settings?: StackSettings): Promise<pulumi.dynamic.CreateResult>;
  read(id: string, props: object, settings?: StackSettings): Promise<pulumi.dynamic.ReadResult>;
  update(id: string, olds: object, news: object, settings?: StackSettings): Promise<pulumi.dynamic.UpdateResult>;
  delete(id: string, props: object, settings?: StackSettings): Promise<void>;
}

export interface ThinProvider extends pulumi.dynamic.ResourceProvider {
  /** The stack's settings, from `configure`; the host calls it before anything else. */
  settings?: StackSettings;
}

/**
 * The provider object a resource class hands Pulumi, which Pulumi serializes into state: every
 * method is one call into the named lifecycle of the runtime module, loaded where it runs.
 */
export function thinProvider(name: LifecycleName): ThinProvider {
  const lifecycle = () => espmRuntime()[name] as unknown as Lifecycle;
  return {
    async configure(request) {
      this.settings = espmRuntime().stackSettings(request.config as StackConfig);
    },
    check(olds, news) {
      return lifecycle().check(olds, news, this.settings);
    },
    diff(id, olds, news) {
      return lifecycle().diff(id, olds, news);
    },
    create(inputs) {
      return lifecycle().create(inputs, this.settings);
    },
    read(id, props) {
      return lifecycle().read(id, props, this.settings);
    },
    update(id, olds, news) {
      return lifecycle().update(id, olds, news, this.settings);
    },
    delete(id, props) {
      return lifecycle().delete(id, props, this.settings);
    },
  };
}
