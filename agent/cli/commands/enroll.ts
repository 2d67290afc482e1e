/** `espm enroll`: espm's own key and client certificate from the Puppet CA. */
import { parseArgs } from "node:util";
import { configPath } from "../../config/file";
import { fail, parsedOr, printUsage, SHARED_OPTIONS } from "../common";

export const USAGE = `usage: espm enroll [-c CONFIG] [--wait SECONDS]
  make espm's key, submit its certificate request to the Puppet CA, and once signed there
  (puppetserver ca sign --certname espm) fetch the certificate`;

export async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parsedOr(USAGE, () =>
    parseArgs({ args: argv, allowPositionals: true, options: { ...SHARED_OPTIONS, wait: { type: "string" } } }),
  );
  if (values.help) return printUsage(USAGE);
  const config = configPath(values.config);
  if (positionals.length) fail(`enroll takes no arguments\n${USAGE}`);
  const wait = Number(values.wait ?? 0);
  if (!Number.isInteger(wait) || wait < 0) fail(`--wait takes whole seconds, not ${values.wait}`);
  const { enroll } = await import("../../enrollment/enroll");
  const result = await enroll(config, wait, (line) => process.stdout.write(`espm enroll: ${line}\n`));
  process.stdout.write(`${result.message}\n`);
}
