/**
 * pulumi-resource-espm: the process the Pulumi engine starts for the `espm` package. It serves the
 * provider on a loopback port, prints the port, and lives until the engine closes it.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { EspmProvider, serve } from "./server";

const { version } = JSON.parse(readFileSync(join(__dirname, "../../package.json"), "utf8")) as { version: string };

serve(new EspmProvider(version)).catch((error: unknown) => {
  console.error(`pulumi-resource-espm: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
