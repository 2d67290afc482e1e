/**
 * Prints espm's package schema, as the plugin serves it, for `schema.json` (`npm run schema`) and
 * Pulumi's SDK generators.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { packageSchema } from "./schema";

const { version } = JSON.parse(readFileSync(join(__dirname, "../../package.json"), "utf8")) as { version: string };
process.stdout.write(`${JSON.stringify(packageSchema(version), null, 2)}\n`);
