/**
 * The provider code each resource stores in state, which the engine's dynamic-provider host runs
 * `refresh` and `destroy` with, long after: one line that asks the stable runtime module
 * (`pulumi-espm/dist/provider/runtime.js`), loaded by name where it runs, for the resource's
 * provider, whose every method is one call into the named lifecycle.
 *
 * Loading by name where it runs, rather than storing the lifecycles, keeps the stored code to that
 * line, and lets the installed version's lifecycles serve existing stacks. The engine keeps this
 * code twice in each resource's state (inputs and outputs) and the file backend rewrites the whole
 * state after every step, so its size is paid for every resource at every step of every `up`.
 */
import { sep } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import type { StackConfig } from "./connection";
import { PROVIDER_KEY } from "./lifecycle";
import type { StackSettings } from "./settings";

/**
 * The shape every resource's lifecycle has: check → diff → create → read → update → delete, each
 * given the stack's settings, over the resource's own state type. Method syntax, so that a
 * lifecycle of any state is a `Lifecycle<object>` to the thin provider.
 */
export interface Lifecycle<State extends object> {
  /** The inputs' contract: what `check` validates with, and what the provider plugin's schema is made from. */
  inputSchema(): z.ZodObject;
  /** The inputs whose change replaces the resource (besides a replacement its state calls for). */
  readonly replacing: readonly string[];
  check(
    olds: Partial<State>,
    news: Record<string, unknown>,
    settings?: StackSettings,
  ): Promise<pulumi.dynamic.CheckResult>;
  diff(id: string, olds: State, news: State): Promise<pulumi.dynamic.DiffResult>;
  create(inputs: State, settings?: StackSettings): Promise<pulumi.dynamic.CreateResult<State>>;
  read(id: string, props: State, settings?: StackSettings): Promise<pulumi.dynamic.ReadResult<State>>;
  update(id: string, olds: State, news: State, settings?: StackSettings): Promise<pulumi.dynamic.UpdateResult<State>>;
  delete(id: string, props: State, settings?: StackSettings): Promise<void>;
}

/** The resources whose lifecycles the runtime module exports, by export name. */
export type LifecycleName = "registration" | "certificate" | "image" | "firstRun" | "enrollment";

/** What the runtime module exports for the thin provider (see runtime.ts). */
export interface EspmRuntime extends Record<LifecycleName, Lifecycle<object>> {
  stackSettings(config: StackConfig): StackSettings;
}

/**
 * The runtime module's path as serialized providers load it, decided once when the program loads
 * this package. Installed from npm (the usual case) it is the package path,
 * `pulumi-espm/dist/provider/runtime.js`, which the dynamic-provider host resolves from the
 * project's node_modules. From a checkout of this repository (espm's own tests and demo) it is the
 * absolute path of the file: the host's working directory is the project's, which need not be the checkout.
 */
export const RUNTIME_MODULE = runtimeModuleSpecifier(`${__dirname}${sep}runtime.js`);

export function runtimeModuleSpecifier(file: string): string {
  const marker = `${sep}node_modules${sep}`;
  const at = file.lastIndexOf(marker);
  return at >= 0
    ? file
        .slice(at + marker.length)
        .split(sep)
        .join("/")
    : file;
}

/** The runtime module, loaded by name. */
export function espmRuntime(): EspmRuntime {
  return loadRuntime(RUNTIME_MODULE);
}

function loadRuntime(specifier: string): EspmRuntime {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded by name on purpose, see above; require's result is untyped
  return require(specifier) as EspmRuntime;
}

export interface ThinProvider extends pulumi.dynamic.ResourceProvider {
  /** The stack's settings, from `configure`; the host calls it before anything else. */
  settings?: StackSettings;
}

/**
 * The provider for the named resource: thin calls into the runtime module, loaded where it runs.
 * The runtime module has exported this function since the first release, and the stored code asks
 * it for the provider by it. Stacks stored by 0.1.0 hold Pulumi's serialization of an object of
 * this same shape instead, whose calls the runtime module still answers (previous-layout.test.ts).
 */
export function thinProvider(name: LifecycleName): ThinProvider {
  // Loaded by name when called, not imported: the lifecycle modules import this one.
  const lifecycle = (): Lifecycle<object> => espmRuntime()[name];
  return {
    async configure(request) {
      this.settings = espmRuntime().stackSettings(request.config);
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

/**
 * The provider code the named resource stores (`__provider`), for the runtime module at
 * `runtimeModule`: a module of one line, which the dynamic-provider host loads as it loads
 * Pulumi's own serialized closures (from text, in the project's directory) and whose `handler`
 * it calls for the provider. Pulumi's serialization of `thinProvider`'s object makes the same calls
 * in 3.1 KB; this is 100 bytes.
 */
export function storedProvider(name: LifecycleName, runtimeModule = RUNTIME_MODULE): string {
  return `exports.handler = () => require(${JSON.stringify(runtimeModule)}).thinProvider(${JSON.stringify(name)});\n`;
}

/**
 * A Pulumi dynamic resource of espm's, served by the engine's Node.js dynamic-provider host as
 * `pulumi.dynamic.Resource` is (type `pulumi-nodejs:dynamic/espm:<type>`), that stores
 * `storedProvider(lifecycle)` as its provider code instead of Pulumi's serialization of a provider
 * object. A fleet's `pulumi up` spent most of its engine time rewriting state that was two thirds
 * serialized provider code (docs/performance.md).
 *
 * Pulumi's SDK records a stack trace for every promise it makes for a resource, four per property,
 * for a message about leaked promises it shows only under PULUMI_DEBUG_PROMISE_LEAKS; with six to
 * ten properties on each of espm's resources, formatting those traces was a fifth of a fleet
 * program's CPU in every preview and up. The constructor turns traces off while Pulumi registers
 * the resource, as Pulumi's own `Resource.callsites` changes the limit around its capture (which
 * sets its own, so the engine still gets the resource's source position); an error raised inside
 * the registration keeps its message, which names the resource, without frames.
 */
export abstract class EspmDynamicResource extends pulumi.CustomResource {
  protected constructor(
    lifecycle: LifecycleName,
    type: string,
    name: string,
    props: pulumi.Inputs,
    opts?: pulumi.CustomResourceOptions,
  ) {
    if (PROVIDER_KEY in props) throw new Error(`a dynamic resource must not define the ${PROVIDER_KEY} key`);
    const limit = Error.stackTraceLimit;
    if (!process.env.PULUMI_DEBUG_PROMISE_LEAKS) Error.stackTraceLimit = 0;
    try {
      super(`pulumi-nodejs:dynamic/espm:${type}`, name, { ...props, [PROVIDER_KEY]: storedProvider(lifecycle) }, opts);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
}
