/**
 * `espm autosign -- CERTNAME < CSR`: Puppet Server's policy-based autosigning. Puppet Server reads
 * exit 0 as "sign", so this command takes `-c CONFIG`, `--` and one certname, and nothing else:
 * `--help`, `--version`, a second name or a name that looks like an option is a refusal (exit 1),
 * never a zero exit. It parses its own arguments for that reason, without parseArgs.
 */
import { configPath } from "../../config/file";
import { fail } from "../common";

export const USAGE = `usage: espm autosign [-c CONFIG] -- CERTNAME < CSR
  Puppet Server's policy-based autosigning: exit 0 signs, anything else refuses with the reason on
  stderr (run it through the wrapper espm puppet-config writes); any other form, --help included,
  exits 1`;

function autosignArguments(argv: string[]): { config?: string; certname: string } {
  const refuse = (why: string): never =>
    fail(`autosign refuses: ${why}; usage: espm autosign [-c CONFIG] -- CERTNAME`, 1);
  let config: string | undefined;
  let i = 0;
  for (; i < argv.length && argv[i] !== "--"; i++) {
    const arg = argv[i]!;
    if ((arg === "-c" || arg === "--config") && i + 1 < argv.length && argv[i + 1] !== "--") config = argv[++i];
    else if (arg.startsWith("--config=")) config = arg.slice("--config=".length);
    else refuse(`unexpected ${JSON.stringify(arg.slice(0, 64))} before --`);
  }
  const names = argv.slice(i + 1);
  if (i === argv.length) refuse("no -- before the certname");
  if (names.length !== 1) refuse(`${names.length} arguments after --, not exactly one certname`);
  return { config, certname: names[0]! };
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

export async function main(argv: string[]): Promise<void> {
  const { config, certname } = autosignArguments(argv);
  const { autosign } = await import("../../autosign/autosign");
  const csr = await readStdin();
  const result = await autosign(configPath(config), certname, csr);
  // Puppet Server logs the policy's stderr as a WARN and its stdout at debug: a sign is no warning.
  (result.exitCode === 0 ? process.stdout : process.stderr).write(`espm autosign: ${result.message}\n`);
  process.exitCode = result.exitCode;
}
