/**
 * `espm enc-follow`: on a compile master with a PostgreSQL store, keeps a local copy of what `espm
 * enc` reads (the live nodes, the published groups, Puppet Server's names) current from the
 * database's notifications, so that a catalog compile reads files, as on a SQLite site, instead of
 * connecting to PostgreSQL for every compile (loading the driver and connecting were half of each
 * compile's wait for its classification).
 *
 * The store's triggers (migration 3 of store/postgres.ts) notify `espm_enc` on every change of a
 * node row, the groups and the names, whatever wrote it, when the transaction commits. The follower
 * LISTENs with `espm enc`'s read-only role, then copies everything (so nothing that changed before
 * it listened is missed), then applies each notification in order. Every HEARTBEAT_MS it proves the
 * connection with a query and, once every notification that came before the answer is applied,
 * writes the heartbeat: the time before it asked, before which every commit is in the copy.
 * `espm enc` trusts the copy as current only while the heartbeat is younger than FOLLOWER_FRESH_MS
 * (export.ts); after that it asks the database itself, and serves the copy only as it serves its
 * cache, while the database cannot be read and within enc_cache_max_age_seconds.
 */
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Client, type Notification } from "pg";
import { nameProblem } from "espm-sdk/names";
import type { Group } from "espm-sdk/protocol";
import type { PuppetServerNames } from "../ca/certname-policy";
import { toNode, type NodeRow } from "../store/store";
import { connectionConfig, describeUrl, readPassword } from "../store/postgres-connection";
import { EncExport, FOLLOWED_DIR, FOLLOWER_HEARTBEAT, writeAtomically, type FollowerHeartbeat } from "./export";

/** How often the follower proves its connection and writes the heartbeat. */
export const HEARTBEAT_MS = 1000;
/** The channel the store's triggers notify. */
const CHANNEL = "espm_enc";
const TIMEOUT_MS = 10_000;
const RECONNECT_MS = 1000;

export interface FollowSettings {
  url: string;
  passwordFile?: string;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class EncFollower {
  private stopped = false;
  private wake: () => void = () => undefined;
  private current: Client | undefined;
  private readonly copy: EncExport;

  /** `dir` is espm.ini's enc_export, `espm enc`'s own directory; the copy is its FOLLOWED_DIR. */
  constructor(
    private readonly settings: FollowSettings,
    private readonly dir: string,
    private readonly log: (line: string) => void,
  ) {
    this.copy = new EncExport(join(dir, FOLLOWED_DIR));
  }

  /** Follows until stop(), reconnecting after every failure. */
  async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.follow();
      } catch (err) {
        if (this.stopped) break;
        this.log(
          `espm enc-follow: ${describeUrl(this.settings.url)}: ${(err as Error).message}; reconnecting in ${RECONNECT_MS / 1000} s`,
        );
      }
      if (!this.stopped) await Promise.race([sleep(RECONNECT_MS), new Promise<void>((r) => (this.wake = r))]);
    }
    // Stopped on purpose: compiles ask the database from now on, not after FOLLOWER_FRESH_MS.
    rmSync(join(this.dir, FOLLOWER_HEARTBEAT), { force: true });
  }

  /** Ends the connection; run() then removes the heartbeat. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.current?.end().catch(() => undefined);
  }

  /** One connection's life: listen, copy everything, apply notifications and beat until it fails. */
  private async follow(): Promise<void> {
    const client = new Client({
      ...connectionConfig(this.settings.url, readPassword(this.settings.passwordFile)),
      connectionTimeoutMillis: TIMEOUT_MS,
      query_timeout: TIMEOUT_MS,
    });
    let fail: (err: Error) => void = () => undefined;
    const lost = new Promise<never>((_, reject) => (fail = reject));
    lost.catch(() => undefined);
    client.on("error", (err) => fail(err));
    client.on("end", () => fail(new Error("the connection ended")));
    // Notifications and heartbeats are applied one at a time, in the order they came.
    let queue = Promise.resolve();
    const enqueue = (work: () => Promise<void> | void): Promise<void> => {
      queue = queue.then(work).catch((err: unknown) => fail(err as Error));
      return queue;
    };
    client.on("notification", (n: Notification) => void enqueue(() => this.apply(client, n.payload ?? "")));
    this.current = client;
    try {
      await Promise.race([client.connect(), lost]);
      await Promise.race([client.query(`LISTEN ${CHANNEL}`), lost]);
      const started = Date.now();
      let count = 0;
      // Queued: a notification that comes while the copy is made is applied after it.
      await Promise.race([enqueue(async () => void (count = await this.resync(client))), lost]);
      this.log(
        `espm enc-follow: following ${describeUrl(this.settings.url)}: ${count} nodes copied to ${this.copy.dir} in ${Date.now() - started} ms`,
      );
      while (!this.stopped) {
        const asked = Date.now();
        await Promise.race([client.query("SELECT 1"), lost]);
        // Every notification that came before the answer is queued ahead of this.
        await Promise.race([enqueue(() => this.beat(asked)), lost]);
        await Promise.race([sleep(HEARTBEAT_MS), lost, new Promise<void>((r) => (this.wake = r))]);
      }
    } finally {
      this.current = undefined;
      await client.end().catch(() => undefined);
    }
  }

  /** Copies every live node, the groups and the names; drops what is no longer live. */
  private async resync(client: Client): Promise<number> {
    // One statement, one snapshot: the nodes, groups and names agree with each other.
    const { rows } = await client.query<{ nodes: NodeRow[] | null; groups: string | null; names: string | null }>(
      `SELECT (SELECT json_agg(row_to_json(n)) FROM nodes n WHERE n.deleted_at IS NULL) AS nodes,
              (SELECT groups FROM groups_snapshot WHERE id = 1) AS groups,
              (SELECT names FROM server_names_snapshot WHERE id = 1) AS names`,
    );
    const row = rows[0];
    const nodes = (row?.nodes ?? []).map(toNode);
    this.copy.sync(nodes);
    this.copy.writeGroups(new Map((row?.groups ? (JSON.parse(row.groups) as Group[]) : []).map((g) => [g.name, g])));
    if (row?.names) this.copy.writeServerNames(JSON.parse(row.names) as PuppetServerNames);
    // `espm enc`'s own cached answers of nodes no longer live go too (see enc/postgres.ts).
    const live = new Set(nodes.map((n) => `${n.name}.json`));
    for (const file of readdirSync(this.dir)) {
      if (file.endsWith(".json") && !file.startsWith(".") && !live.has(file))
        rmSync(join(this.dir, file), { force: true });
    }
    return nodes.length;
  }

  /** One notification: a node's row changed (`node NAME`), or the groups, or the names. */
  private async apply(client: Client, payload: string): Promise<void> {
    const [kind, name] = payload.split(" ");
    if (kind === "node" && name !== undefined && nameProblem(name) === undefined) {
      const { rows } = await client.query<{ node: NodeRow | null }>(
        "SELECT row_to_json(n) AS node FROM nodes n WHERE n.name = $1 AND n.deleted_at IS NULL",
        [name],
      );
      const row = rows[0]?.node;
      if (row) return this.copy.writeNode(toNode(row));
      this.copy.removeNode(name);
      // No cached answer of `espm enc` may outlive the node either.
      rmSync(join(this.dir, `${name}.json`), { force: true });
    } else if (kind === "groups") {
      const { rows } = await client.query<{ groups: string }>("SELECT groups FROM groups_snapshot WHERE id = 1");
      const groups = rows[0] ? (JSON.parse(rows[0].groups) as Group[]) : [];
      this.copy.writeGroups(new Map(groups.map((g) => [g.name, g])));
    } else if (kind === "server-names") {
      const { rows } = await client.query<{ names: string }>("SELECT names FROM server_names_snapshot WHERE id = 1");
      if (rows[0]) this.copy.writeServerNames(JSON.parse(rows[0].names) as PuppetServerNames);
    } else {
      // A truncate, or a notification of a newer espm: copy everything again.
      await this.resync(client);
    }
  }

  /** Every commit before `asked` is in the copy. */
  private beat(asked: number): void {
    const heartbeat: FollowerHeartbeat = { url: this.settings.url, at: asked, pid: process.pid };
    mkdirSync(this.dir, { recursive: true, mode: 0o750 });
    writeAtomically(join(this.dir, FOLLOWER_HEARTBEAT), JSON.stringify(heartbeat));
  }
}
