/**
 * `espm enc-follow`: on a compile master whose espm.ini names a PostgreSQL store, keeps the copy of
 * the store that `espm enc` reads current (enc/follow.ts). Runs as Puppet Server's user, as a
 * service, until SIGTERM or SIGINT.
 */
import { parseArgs } from "node:util";
import { configPath, encSettings } from "../../config/file";
import { fail, parsedOr, printUsage, SHARED_OPTIONS } from "../common";

export const USAGE = `usage: espm enc-follow [-c CONFIG]
  on a compile master with a PostgreSQL store: keep espm enc's local copy of the store current
  from the database's notifications (as Puppet Server's user, as a service)`;

export async function main(argv: string[]): Promise<void> {
  const { values } = parsedOr(USAGE, () => parseArgs({ args: argv, options: { ...SHARED_OPTIONS } }));
  if (values.help) return printUsage(USAGE);
  const config = configPath(values.config);
  const { store, encExport } = encSettings(config);
  if (!store) fail(`${config} names no PostgreSQL store ([store] url): on SQLite, espm enc reads espm's own export`);
  const { EncFollower } = await import("../../enc/follow");
  const follower = new EncFollower(store, encExport, (line) => process.stderr.write(`${line}\n`));
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => void follower.stop());
  await follower.run();
}
