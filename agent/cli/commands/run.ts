/** `espm` or `espm run`: the agent, in the foreground. */
import { parseArgs } from "node:util";
import { configPath } from "../../config/file";
import { fail, parsedOr, printUsage, SHARED_OPTIONS } from "../common";

export const USAGE = `usage: espm [run] [-c CONFIG]             run the espm agent in the foreground`;

export async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parsedOr(USAGE, () =>
    parseArgs({ args: argv, allowPositionals: true, options: { ...SHARED_OPTIONS } }),
  );
  if (values.help) return printUsage(USAGE);
  const config = configPath(values.config);
  if (positionals.length) fail(`the agent takes no arguments\n${USAGE}`);
  const { runAgent } = await import("../../daemon");
  const { puppetServerBackends } = await import("../../puppetserver");
  await runAgent(config, puppetServerBackends);
}
