// Read once from package.json so that health and the CLI report the version that is installed.
import { readFileSync } from "node:fs";
import { join } from "node:path";

function packageVersion(): string {
  for (const up of ["..", "../.."]) {
    try {
      return (JSON.parse(readFileSync(join(__dirname, up, "package.json"), "utf8")) as { version: string }).version;
    } catch {
      // the source (agent/version.ts) and the build (agent/dist/agent/version.js) sit at different depths
    }
  }
  return "unknown";
}

export const VERSION = packageVersion();
