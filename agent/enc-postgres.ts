/**
 * What `espm enc` reads when the store is PostgreSQL (a compile master anywhere): the node and the
 * published groups, in one query, with the read-only role espm.ini names. Every answer is kept in
 * a local cache (the `enc_export` directory, written by Puppet Server's user), so that while the
 * database cannot be reached, compiles go on with the node's last answer.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "pg";
import type { Group, Node } from "../sdk/protocol";
import { toNode, type NodeRow } from "./store";
import { connectionConfig, readPassword } from "./store-postgres";

/** How long a compile waits for PostgreSQL before it serves the cached answer. */
const CONNECT_TIMEOUT_MS = 3000;

export interface StoreAnswer {
  node: Node | undefined;
  groups: Map<string, Group>;
  /** Set when the answer came from the cache: why the database was not asked. */
  cached?: string;
}

interface Cached {
  node: Node;
  groups: Group[];
}

/**
 * The node (if espm created it) and the groups, from PostgreSQL, or from the cache when PostgreSQL
 * cannot answer. Throws when neither can: a compile must not go on without the node's classes.
 */
export async function readFromStore(
  settings: { url: string; passwordFile?: string },
  cacheDir: string,
  certname: string,
): Promise<StoreAnswer> {
  const cacheFile = join(cacheDir, `${certname}.json`);
  let answer: { node: Node | undefined; groups: Group[] };
  try {
    answer = await query(settings, certname);
  } catch (err) {
    const why = (err as Error).message;
    let cached: Cached;
    try {
      cached = JSON.parse(readFileSync(cacheFile, "utf8")) as Cached;
    } catch {
      throw new Error(
        `PostgreSQL cannot be read (${why}), and there is no earlier answer for ${certname} in ${cacheDir}`,
      );
    }
    return { node: cached.node, groups: new Map(cached.groups.map((g) => [g.name, g])), cached: why };
  }
  try {
    if (answer.node) {
      mkdirSync(cacheDir, { recursive: true, mode: 0o750 });
      const temporary = `${cacheFile}.${process.pid}.tmp`;
      writeFileSync(temporary, JSON.stringify({ node: answer.node, groups: answer.groups }), { mode: 0o640 });
      renameSync(temporary, cacheFile);
    } else {
      // Deleted (or never espm's): no stale answer may outlive it.
      rmSync(cacheFile, { force: true });
    }
  } catch {
    // The cache is a convenience: a compile never fails for it.
  }
  return { node: answer.node, groups: new Map(answer.groups.map((g) => [g.name, g])) };
}

async function query(
  settings: { url: string; passwordFile?: string },
  certname: string,
): Promise<{ node: Node | undefined; groups: Group[] }> {
  const client = new Client({
    ...connectionConfig(settings.url, readPassword(settings.passwordFile)),
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: CONNECT_TIMEOUT_MS,
  });
  client.on("error", () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{ node: NodeRow | null; groups: string | null }>(
      `SELECT (SELECT row_to_json(n) FROM nodes n WHERE n.name = $1 AND n.deleted_at IS NULL) AS node,
              (SELECT groups FROM groups_snapshot WHERE id = 1) AS groups`,
      [certname],
    );
    const row = rows[0];
    return {
      node: row?.node ? toNode(row.node) : undefined,
      groups: row?.groups ? (JSON.parse(row.groups) as Group[]) : [],
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}
