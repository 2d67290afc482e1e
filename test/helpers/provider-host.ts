/**
 * A fresh Node process that does what Pulumi's two halves do with a dynamic provider, for tests:
 *
 *   node provider-host.js serialize MODULE   prints {registration, certificate, image}: the provider
 *                                            code each resource stores (storedProvider of MODULE,
 *                                            pulumi-espm/thin-provider resolved from the working
 *                                            directory)
 *   node provider-host.js call               reads {text, config, steps} on stdin, loads the text as
 *                                            the dynamic-provider host does (require-from-string, from
 *                                            the working directory), configures it and runs the steps
 *
 * Secrets travel on stdin, never in argv.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

/** require() as a module in the working directory would have it: how Pulumi's two halves resolve. */
const fromProject = createRequire(join(process.cwd(), "index.js"));

interface Step {
  method: "check" | "create" | "read" | "delete";
  id?: string;
  props?: Record<string, unknown>;
}

async function serialize(specifier: string): Promise<void> {
  const modulePath = fromProject.resolve(specifier);
  const espm = fromProject(modulePath) as typeof import("pulumi-espm/thin-provider");
  const out: Record<string, string> = {};
  for (const name of ["registration", "certificate", "image"] as const) out[name] = espm.storedProvider(name);
  process.stdout.write(JSON.stringify(out));
}

async function call(): Promise<void> {
  const request = JSON.parse(readFileSync(0, "utf8")) as {
    text: string;
    config: Record<string, string>;
    steps: Step[];
  };
  const requireFromString = fromProject("require-from-string") as (code: string) => {
    handler: () => import("@pulumi/pulumi").dynamic.ResourceProvider;
  };
  const provider = requireFromString(request.text).handler();
  await provider.configure?.({
    config: { get: (key: string) => request.config[key], require: (key: string) => request.config[key]! },
  });
  const results: unknown[] = [];
  for (const step of request.steps) {
    try {
      if (step.method === "check") results.push(await provider.check!({}, step.props!));
      else if (step.method === "create") results.push(await provider.create(step.props!));
      else if (step.method === "read") results.push(await provider.read!(step.id!, step.props!));
      else results.push((await provider.delete!(step.id!, step.props!)) ?? "deleted");
    } catch (err) {
      results.push({ error: (err as Error).message });
    }
  }
  process.stdout.write(`\n${JSON.stringify(results)}\n`);
}

const [command, argument] = process.argv.slice(2);
(command === "serialize" ? serialize(argument!) : call()).catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
