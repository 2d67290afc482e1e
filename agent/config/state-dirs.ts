/**
 * espm's state directories (the SQLite store, the ENC export, the autosign socket): made at start
 * when espm may make them, and otherwise a message saying exactly what to create. The operator
 * guide makes the state directory; a first start by hand without it meets /var/lib, which only root
 * may write.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { userInfo } from "node:os";
import type { EspmConfig } from "./config";

/** The directories espm writes in, for this espm.ini. */
export function stateDirectories(config: EspmConfig): string[] {
  const dirs = [config.store.enc_export];
  if (config.store.database) dirs.push(dirname(config.store.database));
  if (config.autosign) dirs.push(dirname(config.autosign.socket));
  return [...new Set(dirs)];
}

export function ensureStateDirectories(config: EspmConfig): void {
  for (const dir of stateDirectories(config)) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o750 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EACCES" && code !== "EPERM" && code !== "EROFS") throw err;
      const { username, gid } = userInfo();
      throw new Error(
        `cannot create the state directory ${dir} as user ${username} (${code}): as root, create it for espm's user: ` +
          `install -d -o ${username} -g ${gid} -m 0750 ${dir} (scripts/operator-guide.sh makes it so)`,
      );
    }
  }
}
