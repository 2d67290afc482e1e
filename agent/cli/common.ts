/** What every espm command shares: how it fails, its shared options, and its usage on a mistake. */
export function fail(message: string, code = 2): never {
  process.stderr.write(`espm: ${message}\n`);
  process.exit(code);
}

/** `-c/--config` and `-h/--help`, which every command but autosign takes besides its own. */
export const SHARED_OPTIONS = {
  config: { type: "string", short: "c" },
  help: { type: "boolean", short: "h" },
} as const;

/** The command's parsed options, or its usage with what was wrong (exit 2). */
export function parsedOr<T>(usage: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    fail(`${(err as Error).message}\n${usage}`);
  }
}

/** `--help`: the command's usage on stdout, exit 0. */
export function printUsage(usage: string): void {
  process.stdout.write(`${usage}\n`);
}
