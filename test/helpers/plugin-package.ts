/** espm's provider plugin as users get it: the tarball scripts/pack-plugin.sh makes, once per test run. */
import { join } from "node:path";
import { ROOT, run } from "./espm";

let made: Promise<string> | undefined;

export function pluginTarball(): Promise<string> {
  made ??= run("sh", [join(ROOT, "scripts/pack-plugin.sh")], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 }).then(
    ({ stdout }) => stdout.trim().split("\n").pop()!,
  );
  return made;
}
