#!/usr/bin/env node
/**
 * espm: the agent and its operator commands.
 *
 *   espm [-c espm.ini]                  run the agent in the foreground
 *   espm enc [-c espm.ini] CERTNAME     print a node's classification (Puppet's node_terminus = exec)
 *   espm puppet-config [-c espm.ini]    print the puppet.conf and auth.conf changes espm needs
 *   espm check-auth-conf FILE           read an auth.conf as Puppet Server will, before a reload
 *   espm enroll [-c espm.ini] [--wait S] get espm's client certificate from the Puppet CA
 *   espm autosign [-c espm.ini] -- CERTNAME  Puppet Server's autosign policy (CSR on stdin)
 */
import { parseArgs } from "node:util";
import { configPath } from "../config/file";

const USAGE = `usage:
  espm [-c CONFIG]                       run the espm agent in the foreground
  espm enc [-c CONFIG] CERTNAME          print the ENC YAML for CERTNAME
  espm puppet-config [-c CONFIG] [--auth-conf FILE [--write NEWFILE]] [--autosign-wrapper PATH]
                     [--bulk-sign]
                                         print the Puppet Server settings espm needs; with
                                         --auth-conf, also FILE with espm's rules added
                                         (to NEWFILE with --write, for review); with [autosign]
                                         in CONFIG, write the autosign wrapper (default:
                                         espm-autosign beside CONFIG); with --bulk-sign, also
                                         the rule that lets espm sign in batches on Puppet 8
  espm check-auth-conf FILE [--java JAVA] [--puppetserver-jar JAR]
                                         read FILE the way Puppet Server reads auth.conf on a
                                         reload (its own parser and rule checks, from its jar:
                                         default /usr/share/puppetserver/puppetserver.jar); exit 1
                                         with Puppet Server's complaint if it would refuse it
  espm enroll [-c CONFIG] [--wait SECONDS]
                                         make espm's key, submit its certificate request to the
                                         Puppet CA, and once signed there (puppetserver ca sign
                                         --certname espm) fetch the certificate
  espm autosign [-c CONFIG] -- CERTNAME < CSR
                                         Puppet Server's policy-based autosigning: exit 0 signs,
                                         anything else refuses with the reason on stderr (run it
                                         through the wrapper espm puppet-config writes); any other
                                         form, --help included, exits 1
CONFIG defaults to $ESPM_CONFIG, else /opt/espm/etc/espm.ini.`;

function fail(message: string, code = 2): never {
  process.stderr.write(`espm: ${message}\n`);
  process.exit(code);
}

/** stdin as text, at most 64 KB (a CSR is a few KB). */
async function readStdin(): Promise<string> {
  let text = "";
  for await (const chunk of process.stdin) {
    text += String(chunk);
    if (text.length > 64 * 1024) fail("the CSR on stdin is larger than 64 KB", 1);
  }
  return text;
}

/** The first word that is not an option or the config's value: the subcommand. */
function subcommand(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "-c" || argv[i] === "--config") i++;
    else if (!argv[i]!.startsWith("-")) return argv[i];
  }
  return undefined;
}

/**
 * `autosign [-c CONFIG] -- CERTNAME`, and nothing else. Puppet Server reads exit 0 as "sign", so
 * this command never takes the shared options: `--help`, `--version`, a second name or a name that
 * looks like an option is a refusal (exit 1), never a zero exit.
 */
function autosignArguments(argv: string[]): { config?: string; certname: string } {
  const refuse = (why: string): never =>
    fail(`autosign refuses: ${why}; usage: espm autosign [-c CONFIG] -- CERTNAME`, 1);
  let config: string | undefined;
  let i = 0;
  for (; i < argv.length && argv[i] !== "--"; i++) {
    const arg = argv[i]!;
    if (arg === "autosign") continue;
    if ((arg === "-c" || arg === "--config") && i + 1 < argv.length && argv[i + 1] !== "--") config = argv[++i];
    else if (arg.startsWith("--config=")) config = arg.slice("--config=".length);
    else refuse(`unexpected ${JSON.stringify(arg.slice(0, 64))} before --`);
  }
  const names = argv.slice(i + 1);
  if (i === argv.length) refuse("no -- before the certname");
  if (names.length !== 1) refuse(`${names.length} arguments after --, not exactly one certname`);
  return { config, certname: names[0]! };
}

async function main(argv: string[]): Promise<void> {
  if (subcommand(argv) === "autosign") {
    const { config, certname } = autosignArguments(argv);
    const { autosign } = await import("../autosign/autosign");
    const csr = await readStdin();
    const result = await autosign(configPath(config), certname, csr);
    // Puppet Server logs the policy's stderr as a WARN and its stdout at debug: a sign is no warning.
    (result.exitCode === 0 ? process.stdout : process.stderr).write(`espm autosign: ${result.message}\n`);
    process.exitCode = result.exitCode;
    return;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c" },
        "auth-conf": { type: "string" },
        write: { type: "string" },
        "autosign-wrapper": { type: "string" },
        "bulk-sign": { type: "boolean" },
        wait: { type: "string" },
        java: { type: "string" },
        "puppetserver-jar": { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean" },
      },
    });
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (values.version) {
    process.stdout.write(`${(await import("../version")).VERSION}\n`);
    return;
  }
  const config = configPath(values.config);
  const [command, ...rest] = positionals;

  switch (command) {
    case "enc": {
      if (rest.length !== 1) fail(`enc takes exactly one CERTNAME\n${USAGE}`);
      const { classify } = await import("../enc/enc");
      const result = await classify(config, rest[0]!);
      process.stdout.write(result.stdout);
      process.stderr.write(result.stderr);
      process.exitCode = result.exitCode;
      return;
    }
    case "enroll": {
      const wait = Number(values.wait ?? 0);
      if (!Number.isInteger(wait) || wait < 0) fail(`--wait takes whole seconds, not ${values.wait}`);
      const { enroll } = await import("../enrollment/enroll");
      const result = await enroll(config, wait, (line) => process.stdout.write(`espm enroll: ${line}\n`));
      process.stdout.write(`${result.message}\n`);
      return;
    }
    case "puppet-config": {
      const { printPuppetConfig } = await import("../puppetserver/config");
      if (values.write && !values["auth-conf"])
        fail("--write needs --auth-conf FILE: it writes FILE with espm's rules added");
      process.stdout.write(
        printPuppetConfig(config, {
          authConf: values["auth-conf"],
          writeTo: values.write,
          autosignWrapper: values["autosign-wrapper"],
          bulkSign: values["bulk-sign"],
        }),
      );
      return;
    }
    case "check-auth-conf": {
      if (rest.length !== 1) fail(`check-auth-conf takes exactly one FILE\n${USAGE}`);
      const { checkAuthConf } = await import("../puppetserver/config");
      await checkAuthConf(rest[0]!, { java: values.java, jar: values["puppetserver-jar"] });
      process.stdout.write(`${rest[0]}: Puppet Server would take it\n`);
      return;
    }
    case undefined:
    case "run": {
      const { runAgent } = await import("../daemon");
      const { puppetServerBackends } = await import("../puppetserver");
      await runAgent(config, puppetServerBackends);
      return;
    }
    default:
      fail(`unknown command ${command}\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err: Error) => fail(err.message, 1));
