#!/usr/bin/env node
/**
 * espm: the agent and its operator commands, one module each under commands/, each parsing its own
 * options. This file only finds the command and loads it, so `espm enc` and `espm autosign`, run by
 * Puppet Server for every compile and every CSR, load nothing the other commands need.
 */
import { fail } from "./common";
import * as autosign from "./commands/autosign";
import * as checkAuthConf from "./commands/check-auth-conf";
import * as enc from "./commands/enc";
import * as encFollow from "./commands/enc-follow";
import * as enroll from "./commands/enroll";
import * as puppetConfig from "./commands/puppet-config";
import * as run from "./commands/run";

interface Command {
  USAGE: string;
  main(argv: string[]): Promise<void>;
}

const COMMANDS: Readonly<Record<string, Command>> = {
  run,
  enc,
  "enc-follow": encFollow,
  "puppet-config": puppetConfig,
  "check-auth-conf": checkAuthConf,
  enroll,
  autosign,
};

const USAGE = `usage:
${Object.values(COMMANDS)
  .map((c) => c.USAGE.replace(/^usage: /, "  ").replace(/\n {2}/g, "\n      "))
  .join("\n")}
CONFIG defaults to $ESPM_CONFIG, else /opt/espm/etc/espm.ini.`;

/** Where the command word is: the first argument that is not an option or the config's value. */
function commandIndex(argv: string[]): number {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--") return -1;
    if (argv[i] === "-c" || argv[i] === "--config") i++;
    else if (!argv[i]!.startsWith("-")) return i;
  }
  return -1;
}

async function main(argv: string[]): Promise<void> {
  const at = commandIndex(argv);
  if (at < 0) {
    if (argv.includes("--help") || argv.includes("-h")) return void process.stdout.write(`${USAGE}\n`);
    if (argv.includes("--version")) return void process.stdout.write(`${(await import("../version")).VERSION}\n`);
    return run.main(argv);
  }
  const command = COMMANDS[argv[at]!];
  if (!command) fail(`unknown command ${argv[at]}\n${USAGE}`);
  await command.main([...argv.slice(0, at), ...argv.slice(at + 1)]);
}

main(process.argv.slice(2)).catch((err: Error) => fail(err.message, 1));
