/**
 * What `espm enc` reads when the store is PostgreSQL (a compile master anywhere): the node, the
 * published groups and Puppet Server's names, in one query, with the read-only role espm.ini names.
 * Every answer is kept in a local cache (the `enc_export` directory, written by Puppet Server's
 * user), so that while the database cannot be reached, compiles go on with the node's last answer.
 *
 * The cache's trust is bounded: an answer older than `enc_cache_max_age_seconds` is never served,
 * and every query also returns the names deleted within that age, whose cached answers go at once,
 * so a node deleted while the database was reachable is never served from the cache afterwards.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "pg";
import { nameProblem } from "espm-sdk/names";
import type { Group, Node } from "espm-sdk/protocol";
import type { PuppetServerNames } from "../ca/certname-policy";
import { toNode, type NodeRow } from "../store/store";
import { readGroupsSnapshot, readNodeExport, readServerNames } from "./export";
import { connectionConfig, readPassword } from "../store/postgres-connection";

/** How long a compile waits for PostgreSQL before it serves the cached answer. */
const CONNECT_TIMEOUT_MS = 3000;
/** Clocks of espm's hosts and the compile master may differ this much. */
const CLOCK_SLACK_MS = 60_000;

export interface StoreAnswer {
  node: Node | undefined;
  groups: Map<string, Group>;
  serverNames?: PuppetServerNames;
  /** Set when the answer came from the cache: why the database was not asked. */
  cached?: string;
  /** Then, where from: the cache directory, or the follower's copy and its age. */
  from?: string;
}

interface Cached {
  node: Node;
  groups: Group[];
  serverNames?: PuppetServerNames;
  /** When this compile master wrote it (its own clock). */
  cachedAt: string;
}

interface Answer {
  node: Node | undefined;
  groups: Group[];
  serverNames?: PuppetServerNames;
  deleted: string[];
}

/**
 * The node (if espm created it), the groups and Puppet Server's names, from PostgreSQL, or from
 * the cache when PostgreSQL cannot answer and the cached answer is young enough. Throws when
 * neither can: a compile must not go on without the node's classes.
 */
export async function readFromStore(
  settings: { url: string; passwordFile?: string; maxCacheAgeSeconds: number },
  cacheDir: string,
  certname: string,
  copy?: { dir: string; ageMs: number },
): Promise<StoreAnswer> {
  const maxAgeMs = settings.maxCacheAgeSeconds * 1000;
  const cacheFile = join(cacheDir, `${certname}.json`);
  let answer: Answer;
  try {
    answer = await query(settings, certname, new Date(Date.now() - maxAgeMs - CLOCK_SLACK_MS).toISOString());
  } catch (err) {
    const why = (err as Error).message;
    // The follower's copy (enc/follow.ts), as the cache is trusted: only within the same age.
    const followed = copy && copy.ageMs >= 0 && copy.ageMs <= maxAgeMs ? readNodeExport(copy.dir, certname) : undefined;
    if (copy && followed)
      return {
        node: followed,
        groups: readGroupsSnapshot(copy.dir),
        serverNames: readServerNames(copy.dir),
        cached: why,
        from: `espm enc-follow's copy of ${Math.round(copy.ageMs / 1000)} s ago in ${copy.dir}`,
      };
    let cached: Cached;
    try {
      cached = JSON.parse(readFileSync(cacheFile, "utf8")) as Cached;
    } catch {
      throw new Error(
        `PostgreSQL cannot be read (${why}), and there is no earlier answer for ${certname} in ${cacheDir}`,
      );
    }
    const age = Date.now() - Date.parse(cached.cachedAt);
    if (!(age <= maxAgeMs))
      throw new Error(
        `PostgreSQL cannot be read (${why}), and the last answer for ${certname} in ${cacheDir} is ${Number.isFinite(age) ? `${Math.round(age / 1000)} s` : "of unknown age"} old, older than enc_cache_max_age_seconds (${settings.maxCacheAgeSeconds})`,
      );
    return {
      node: cached.node,
      groups: new Map(cached.groups.map((g) => [g.name, g])),
      serverNames: cached.serverNames,
      cached: why,
      from: cacheDir,
    };
  }
  try {
    // Deleted (or never espm's): no stale answer may outlive it.
    for (const name of answer.deleted) {
      if (name !== certname && nameProblem(name) === undefined) rmSync(join(cacheDir, `${name}.json`), { force: true });
    }
    if (answer.node) {
      mkdirSync(cacheDir, { recursive: true, mode: 0o750 });
      const temporary = `${cacheFile}.${process.pid}.tmp`;
      const entry: Cached = {
        node: answer.node,
        groups: answer.groups,
        serverNames: answer.serverNames,
        cachedAt: new Date().toISOString(),
      };
      writeFileSync(temporary, JSON.stringify(entry), { mode: 0o640 });
      renameSync(temporary, cacheFile);
    } else {
      rmSync(cacheFile, { force: true });
    }
  } catch {
    // The cache is a convenience: a compile never fails for it.
  }
  return {
    node: answer.node,
    groups: new Map(answer.groups.map((g) => [g.name, g])),
    serverNames: answer.serverNames,
  };
}

async function query(
  settings: { url: string; passwordFile?: string },
  certname: string,
  deletedSince: string,
): Promise<Answer> {
  const client = new Client({
    ...connectionConfig(settings.url, readPassword(settings.passwordFile)),
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: CONNECT_TIMEOUT_MS,
  });
  client.on("error", () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{
      node: NodeRow | null;
      groups: string | null;
      server_names: string | null;
      deleted: string[] | null;
    }>(
      `SELECT (SELECT row_to_json(n) FROM nodes n WHERE n.name = $1 AND n.deleted_at IS NULL) AS node,
              (SELECT groups FROM groups_snapshot WHERE id = 1) AS groups,
              (SELECT names FROM server_names_snapshot WHERE id = 1) AS server_names,
              (SELECT array_agg(DISTINCT d.name) FROM nodes d WHERE d.deleted_at >= $2) AS deleted`,
      [certname, deletedSince],
    );
    const row = rows[0];
    return {
      node: row?.node ? toNode(row.node) : undefined,
      groups: row?.groups ? (JSON.parse(row.groups) as Group[]) : [],
      serverNames: row?.server_names ? (JSON.parse(row.server_names) as PuppetServerNames) : undefined,
      deleted: row?.deleted ?? [],
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}
