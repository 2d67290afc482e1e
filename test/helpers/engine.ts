/**
 * The real Pulumi engine for tests: the CLI built by scripts/build-pulumi.sh, driven through the
 * Automation API with an inline program, a local file backend and a passphrase secrets provider.
 * No Pulumi service and no cloud account.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { removeOnInterrupt } from "../../scripts/lab/interrupt";
import { join } from "node:path";
import * as automation from "@pulumi/pulumi/automation";
import { ROOT } from "./espm";

export const PASSPHRASE = "espm-engine-tests-passphrase";

/**
 * Every inline run's gRPC clients get their own subchannels. grpc-js shares subchannels process-wide
 * by address, and keeps a closed one up to 10 s; when a new `pulumi` process's engine happens to
 * listen on the port of one that just exited, the program's first call is handed the dead
 * subchannel ("14 UNAVAILABLE: No connection established. Last error: null"), the stack registers
 * no resources and the rejection surfaces in whichever test runs next. Seen once in CI's preview
 * suite after a failed preview; a test process runs hundreds of these. The object is the SDK's
 * (`@internal`), read each time it makes a client.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the SDK's .d.ts leaves @internal members out
const sdkSettings = require("@pulumi/pulumi/runtime/settings") as { grpcClientOptions: Record<string, unknown> };
sdkSettings.grpcClientOptions["grpc.use_local_subchannel_pool"] = 1;

/** The directory with `pulumi` and the dynamic-provider shim, or undefined when none was built. */
export function pulumiBin(): string | undefined {
  const version = (
    JSON.parse(readFileSync(join(ROOT, "node_modules/@pulumi/pulumi/package.json"), "utf8")) as { version: string }
  ).version;
  const candidates = [
    process.env.ESPM_PULUMI_BIN,
    join(process.env.ESPM_PULUMI_CACHE ?? "/var/cache/espm-pulumi", `v${version}`, "bin"),
  ];
  return candidates.find((dir): dir is string => !!dir && existsSync(join(dir, "pulumi")));
}

/** Skips the suite when no Pulumi CLI was built: .ci/run always builds it; a developer without Go can still run the rest. */
export function requirePulumi(suite: Mocha.Context, what = "the engine tests"): void {
  if (pulumiBin()) return;
  console.log(`    (no Pulumi CLI: run scripts/build-pulumi.sh; skipping ${what})`);
  suite.skip();
}

/** A scratch directory inside the checkout, so the engine's dynamic-provider host finds @pulumi/pulumi from its working directory. */
export function engineDir(prefix: string): string {
  mkdirSync(join(ROOT, ".tmp"), { recursive: true });
  return removeOnInterrupt(mkdtempSync(join(ROOT, `.tmp/${prefix}-`)));
}

export interface EngineStackOptions {
  /** Where state, the workspace and Pulumi's home go. */
  dir: string;
  projectName: string;
  stackName: string;
  program: automation.PulumiFn;
  /** Stack config; `secret: true` values are encrypted with the passphrase. */
  config: Record<string, automation.ConfigValue>;
}

export async function engineStack(options: EngineStackOptions): Promise<automation.Stack> {
  const bin = pulumiBin();
  if (!bin) throw new Error("no Pulumi CLI: run scripts/build-pulumi.sh (or set ESPM_PULUMI_BIN)");
  const state = join(options.dir, "state");
  const home = join(options.dir, "home");
  const work = join(options.dir, "work");
  for (const d of [state, home, work]) mkdirSync(d, { recursive: true });
  const pulumiCommand = await automation.PulumiCommand.get({ root: join(bin, "..") });
  const stack = await automation.LocalWorkspace.createOrSelectStack(
    { stackName: options.stackName, projectName: options.projectName, program: options.program },
    {
      workDir: work,
      pulumiHome: home,
      pulumiCommand,
      projectSettings: { name: options.projectName, runtime: "nodejs", backend: { url: `file://${state}` } },
      secretsProvider: "passphrase",
      envVars: {
        PULUMI_CONFIG_PASSPHRASE: PASSPHRASE,
        PULUMI_SKIP_UPDATE_CHECK: "true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
        // The engine finds pulumi-resource-pulumi-nodejs (dynamic providers) on PATH.
        PATH: `${bin}:${process.env.PATH ?? ""}`,
      },
    },
  );
  await stack.setAllConfig(options.config);
  return stack;
}
