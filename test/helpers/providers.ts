/** Providers as the dynamic-provider host holds them: each its own copy, configured with a stack's config. */
import type { StackConfig } from "pulumi-espm/connection";
import type { ThinProvider } from "pulumi-espm/runtime";

/** A copy of `provider`, configured with `config` as the host does before any other call. */
export async function configuredProvider(
  provider: ThinProvider,
  config: StackConfig | Record<string, string | undefined>,
): Promise<ThinProvider> {
  const copy = { ...provider };
  const stack: StackConfig =
    typeof config.get === "function"
      ? (config as StackConfig)
      : { get: (key) => (config as Record<string, string | undefined>)[key] };
  // The host passes its own Config class; ours has the one method the providers use.
  await copy.configure!({ config: stack } as never);
  return copy;
}
