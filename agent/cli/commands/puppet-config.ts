/** `espm puppet-config`: the Puppet Server settings and auth.conf rules espm needs. */
import { parseArgs } from "node:util";
import { configPath } from "../../config/file";
import { fail, parsedOr, printUsage, SHARED_OPTIONS } from "../common";

export const USAGE = `usage: espm puppet-config [-c CONFIG] [--auth-conf FILE [--write NEWFILE]] [--autosign-wrapper PATH] [--bulk-sign]
  print the Puppet Server settings espm needs; with --auth-conf, also FILE with espm's rules added
  (to NEWFILE with --write, for review); with [autosign] in CONFIG, write the autosign wrapper
  (default: espm-autosign beside CONFIG); with --bulk-sign, also the rule that lets espm sign in
  batches on Puppet 8`;

export async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parsedOr(USAGE, () =>
    parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        ...SHARED_OPTIONS,
        "auth-conf": { type: "string" },
        write: { type: "string" },
        "autosign-wrapper": { type: "string" },
        "bulk-sign": { type: "boolean" },
      },
    }),
  );
  if (values.help) return printUsage(USAGE);
  const config = configPath(values.config);
  if (positionals.length) fail(`puppet-config takes no arguments\n${USAGE}`);
  if (values.write && !values["auth-conf"])
    fail("--write needs --auth-conf FILE: it writes FILE with espm's rules added");
  const { printPuppetConfig } = await import("../../puppetserver/config");
  process.stdout.write(
    printPuppetConfig(config, {
      authConf: values["auth-conf"],
      writeTo: values.write,
      autosignWrapper: values["autosign-wrapper"],
      bulkSign: values["bulk-sign"],
    }),
  );
}
