/** `espm check-auth-conf FILE`: an auth.conf read by Puppet Server's own parser, before a reload. */
import { parseArgs } from "node:util";
import { fail, parsedOr, printUsage, SHARED_OPTIONS } from "../common";

export const USAGE = `usage: espm check-auth-conf FILE [--java JAVA] [--puppetserver-jar JAR]
  read FILE the way Puppet Server reads auth.conf on a reload (its own parser and rule checks,
  from its jar: default /usr/share/puppetserver/puppetserver.jar); exit 1 with Puppet Server's
  complaint if it would refuse it`;

export async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parsedOr(USAGE, () =>
    parseArgs({
      args: argv,
      allowPositionals: true,
      options: { ...SHARED_OPTIONS, java: { type: "string" }, "puppetserver-jar": { type: "string" } },
    }),
  );
  if (values.help) return printUsage(USAGE);
  if (positionals.length !== 1) fail(`check-auth-conf takes exactly one FILE\n${USAGE}`);
  const { checkAuthConf } = await import("../../puppetserver/config");
  await checkAuthConf(positionals[0]!, { java: values.java, jar: values["puppetserver-jar"] });
  process.stdout.write(`${positionals[0]}: Puppet Server would take it\n`);
}
