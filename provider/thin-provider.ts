/**
 * The provider object each resource class hands Pulumi, which Pulumi serializes into state and runs
 * `refresh` and `destroy` with, long after: every method is one call into the named lifecycle of the
 * stable runtime module (`pulumi-espm/dist/provider/runtime.js`), loaded by name where it runs.
 *
 * Loading by name at call time, rather than capturing the lifecycles, keeps the code Pulumi stores
 * to a few lines: Pulumi would otherwise serialize a local module by value, classes and all, and it
 * cannot serialize class fields. The runtime module's path is captured as a plain string, so the
 * stored code holds exactly one `require`, of that module.
 */
import { sep } from "node:path";
import type * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import type { StackConfig } from "./connection";
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

/** The provider for the named resource: thin calls into the runtime module, loaded where it runs. */
export function thinProvider(name: LifecycleName): ThinProvider {
  // A local string, so Pulumi's serializer stores its value, not a reference to this module.
  const runtimeModule = RUNTIME_MODULE;
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded by name on purpose, see above; require's result is untyped
  const runtime = (): EspmRuntime => require(runtimeModule) as EspmRuntime;
  const lifecycle = (): Lifecycle<object> => runtime()[name];
  return {
    async configure(request) {
      this.settings = runtime().stackSettings(request.config);
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
