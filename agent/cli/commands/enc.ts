/** `espm enc CERTNAME`: a node's classification as YAML, for Puppet Server's exec node terminus. */
import { parseArgs } from "node:util";
import { configPath } from "../../config/file";
import { fail, parsedOr, printUsage, SHARED_OPTIONS } from "../common";

export const USAGE = `usage: espm enc [-c CONFIG] CERTNAME     print the ENC YAML for CERTNAME`;

export async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parsedOr(USAGE, () =>
    parseArgs({ args: argv, allowPositionals: true, options: { ...SHARED_OPTIONS } }),
  );
  if (values.help) return printUsage(USAGE);
  const config = configPath(values.config);
  if (positionals.length !== 1) fail(`enc takes exactly one CERTNAME\n${USAGE}`);
  const { classify } = await import("../../enc/enc");
  const result = await classify(config, positionals[0]!);
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  process.exitCode = result.exitCode;
}
