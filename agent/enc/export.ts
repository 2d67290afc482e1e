/**
 * What `espm enc` reads: one JSON file per live node espm created, and a validated snapshot of the
 * groups (`.groups.json`, a name no node can have), each replaced atomically (write a temporary
 * file, then rename) after every change. `espm enc` runs as Puppet Server's user, which must never
 * get write access to the store; reading these files needs none, never meets a half-written one,
 * and never meets a broken groups.yaml: the daemon publishes only a groups file that validated.
 *
 * Files are 0640 (parameters can hold secrets) and, when espm.ini names `export_group`, belong to
 * that group (espm's own, with Puppet Server's user in it), so that only Puppet Server's user can
 * read them besides espm's. espm's user is never in Puppet Server's group: that group reads the CA's keys.
 */
import {
  chownSync,
  chmodSync,
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import type { Group, Node } from "espm-sdk/protocol";
import type { PuppetServerNames } from "../ca/certname-policy";
import type { Store, StoreOps } from "../store/store";

const SUFFIX = ".json";
const GROUPS_SNAPSHOT = ".groups.json";
const SERVER_NAMES_SNAPSHOT = ".server-names.json";
/** Written by a clean stop, taken (and removed) by the next start: see EncExport.seal. */
const CLEAN_STOP = ".clean-stop.json";

/** On a compile master with a PostgreSQL store: the copy `espm enc-follow` keeps, under enc_export. */
export const FOLLOWED_DIR = "followed";
/** Beside it: when the copy was last known current (enc/follow.ts). */
export const FOLLOWER_HEARTBEAT = ".follower.json";
/** How long after its heartbeat `espm enc` takes the follower's copy for the database's answer. */
export const FOLLOWER_FRESH_MS = 5000;

export interface FollowerHeartbeat {
  /** The store's URL the copy is of. */
  url: string;
  /** Every commit before this time (ms since the epoch, the compile master's clock) is in the copy. */
  at: number;
  pid: number;
}

/**
 * The follower's copy of the store at `url` under `dir` and its age in ms, or undefined when there
 * is none, or it is of another store.
 */
export function followedCopy(dir: string, url: string): { dir: string; ageMs: number } | undefined {
  let heartbeat: FollowerHeartbeat | undefined;
  try {
    heartbeat = readJson<FollowerHeartbeat>(join(dir, FOLLOWER_HEARTBEAT));
  } catch {
    return undefined;
  }
  if (heartbeat?.url !== url || typeof heartbeat.at !== "number") return undefined;
  return { dir: join(dir, FOLLOWED_DIR), ageMs: Date.now() - heartbeat.at };
}

function exportPath(dir: string, name: string): string {
  // Names are validated before anything is stored ([a-z0-9._-], no ".."), so they are safe file names.
  return join(dir, `${name}${SUFFIX}`);
}

/** The gid of a group named in /etc/group, or an error naming the group. */
export function groupId(name: string, groupFile = "/etc/group"): number {
  for (const line of readFileSync(groupFile, "utf8").split("\n")) {
    const [group, , gid] = line.split(":");
    if (group === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new Error(`the group ${name} (export_group in espm.ini) does not exist in ${groupFile}`);
}

/** What `espm enc` reads, kept current by the daemon: files (EncExport) or the PostgreSQL store. */
export interface EncPublication {
  writeNode(node: Node): void;
  removeNode(name: string): void;
  writeGroups(groups: Map<string, Group>): void;
  /** Puppet Server's names as espm learned them: `espm enc` never classifies one of them. */
  writeServerNames(names: PuppetServerNames): void;
  /**
   * A transaction that wrote a node's file did not commit: the file may not be what the store
   * holds, so the next review rebuilds the export from every row.
   */
  distrust(): void;
}

/**
 * What a clean stop left: the export held exactly the live nodes of the store at `nodesVersion`
 * but those in `outside` (the names the certname policy refused then).
 */
interface CleanStop {
  nodesVersion: string;
  outside: string[];
}

export class EncExport implements EncPublication {
  private readonly gid: number | undefined;
  /** Whether a clean-stop record stands in the directory: every change to the export removes it first. */
  private sealed = false;
  /**
   * What the export is known to hold: every live node of the store but these names (those the
   * certname policy refused at the last review); undefined when that is not known, as at start.
   */
  private outside: string[] | undefined;

  constructor(
    readonly dir: string,
    group?: string,
  ) {
    this.gid = group === undefined ? undefined : groupId(group);
  }

  writeNode(node: Node): void {
    this.unseal();
    writeAtomically(exportPath(this.dir, node.name), JSON.stringify(node), this.gid);
  }

  removeNode(name: string): void {
    this.unseal();
    rmSync(exportPath(this.dir, name), { force: true });
  }

  /** Publishes groups that validated; `espm enc` merges them into every node's classification. */
  writeGroups(groups: Map<string, Group>): void {
    writeAtomically(join(this.dir, GROUPS_SNAPSHOT), JSON.stringify([...groups.values()]), this.gid);
  }

  writeServerNames(names: PuppetServerNames): void {
    writeAtomically(join(this.dir, SERVER_NAMES_SNAPSHOT), JSON.stringify(names), this.gid);
  }

  /** The directory, readable by the export group alone. */
  prepare(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o750 });
    chmodSync(this.dir, 0o750);
    if (this.gid !== undefined) chownSync(this.dir, -1, this.gid);
  }

  distrust(): void {
    this.outside = undefined;
  }

  /**
   * Makes the export hold every live node but those in `outside` (the names the certname policy
   * refuses now), reading `tx` inside the review's transaction. Where what the export holds is
   * known, only the files of names whose refusal changed are touched; otherwise (at start without
   * a clean stop's record, after a failed commit) it is rebuilt from every live row, so a crash
   * between commit and export heals.
   */
  async review(tx: Pick<StoreOps, "liveNodes" | "liveNode">, outside: string[]): Promise<{ rebuilt: boolean }> {
    const now = new Set(outside);
    const rebuilt = this.outside === undefined;
    if (rebuilt) {
      this.sync((await tx.liveNodes()).filter((node) => !now.has(node.name)));
    } else {
      const before = new Set(this.outside);
      for (const name of outside) if (!before.has(name)) this.removeNode(name);
      for (const name of before) {
        const node = now.has(name) ? undefined : await tx.liveNode(name);
        if (node) this.writeNode(node);
      }
    }
    this.outside = outside;
    return { rebuilt };
  }

  /**
   * Takes the last clean stop's record (it vouches for one start alone) and trusts it if it still
   * holds: the store's nodes table unchanged since (`nodesVersion`, moved by any write to it, espm's
   * or anyone's) and the directory holding a file for each live node the policy then allowed.
   * Otherwise (a crash, a store restored or written behind espm's back, a file removed or added)
   * the first review rebuilds the export from every row.
   */
  async resume(store: Pick<Store, "nodesVersion" | "liveNodeNames">): Promise<void> {
    const stop = this.takeCleanStop();
    if (!stop || !store.nodesVersion || stop.nodesVersion !== (await store.nodesVersion())) return;
    const outside = new Set(stop.outside);
    const expected = (await store.liveNodeNames()).filter((name) => !outside.has(name));
    const files = this.nodeFiles();
    if (files.size === expected.length && expected.every((name) => files.has(name))) this.outside = stop.outside;
  }

  /**
   * Records, at a clean stop (every request done), what the export holds, when that is known. Any
   * later change to the export removes the record first, and a crash leaves none.
   */
  async seal(store: Pick<Store, "nodesVersion">): Promise<void> {
    if (this.outside === undefined || !store.nodesVersion) return;
    const stop: CleanStop = { nodesVersion: await store.nodesVersion(), outside: this.outside };
    writeAtomically(join(this.dir, CLEAN_STOP), JSON.stringify(stop));
    this.sealed = true;
  }

  /**
   * Makes the export hold exactly these nodes (the store's live nodes that the certname policy
   * allows now).
   */
  sync(nodes: Node[]): void {
    this.unseal();
    this.prepare();
    const keep = new Set([...nodes.map((n) => `${n.name}${SUFFIX}`), GROUPS_SNAPSHOT, SERVER_NAMES_SNAPSHOT]);
    for (const file of readdirSync(this.dir)) {
      if (!keep.has(file)) rmSync(join(this.dir, file), { force: true });
    }
    // Only what differs is written: a restart of a current export only reads it (10,000 nodes: see
    // docs/performance.md), and a crash between commit and export still heals.
    for (const node of nodes) {
      const target = exportPath(this.dir, node.name);
      const text = JSON.stringify(node);
      if (!this.holds(target, text)) writeAtomically(target, text, this.gid);
    }
  }

  /** The node files the directory holds, by node name. */
  private nodeFiles(): Set<string> {
    const names = new Set<string>();
    for (const file of readdirSync(this.dir))
      if (file.endsWith(SUFFIX) && !file.startsWith(".")) names.add(file.slice(0, -SUFFIX.length));
    return names;
  }

  /** The record of the last clean stop, removed as it is read. */
  private takeCleanStop(): CleanStop | undefined {
    const path = join(this.dir, CLEAN_STOP);
    let stop: CleanStop | undefined;
    try {
      stop = readJson<CleanStop>(path);
    } catch {
      stop = undefined;
    }
    rmSync(path, { force: true });
    const valid = typeof stop?.nodesVersion === "string" && Array.isArray(stop.outside);
    return valid ? stop : undefined;
  }

  private unseal(): void {
    if (!this.sealed) return;
    rmSync(join(this.dir, CLEAN_STOP), { force: true });
    this.sealed = false;
  }

  /** Whether `target` is already `text`, readable by the export group. */
  private holds(target: string, text: string): boolean {
    let fd: number;
    try {
      fd = openSync(target, "r");
    } catch {
      return false;
    }
    try {
      const stat = fstatSync(fd);
      if ((stat.mode & 0o777) !== 0o640 || (this.gid !== undefined && stat.gid !== this.gid)) return false;
      return stat.size === Buffer.byteLength(text) && readFileSync(fd, "utf8") === text;
    } finally {
      closeSync(fd);
    }
  }
}

/**
 * Writes `text` to `target` so that a reader sees the old file or the new one, never half of
 * either: mode 0640 whatever the umask, in group `gid` when given.
 */
export function writeAtomically(target: string, text: string, gid?: number): void {
  const temporary = `${target}.${process.pid}.tmp`;
  writeFileSync(temporary, text, { mode: 0o640 });
  // Whatever the umask: the export group must read it.
  chmodSync(temporary, 0o640);
  if (gid !== undefined) chownSync(temporary, -1, gid);
  renameSync(temporary, target);
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** The exported node, or undefined when espm did not create it (or it was deleted). */
export function readNodeExport(dir: string, name: string): Node | undefined {
  return readJson<Node>(exportPath(dir, name));
}

/** Puppet Server's names as the daemon last learned them; undefined when it never published them. */
export function readServerNames(dir: string): PuppetServerNames | undefined {
  return readJson<PuppetServerNames>(join(dir, SERVER_NAMES_SNAPSHOT));
}

/** The groups the daemon last validated; none when it has never published any. */
export function readGroupsSnapshot(dir: string): Map<string, Group> {
  const groups = readJson<Group[]>(join(dir, GROUPS_SNAPSHOT)) ?? [];
  return new Map(groups.map((g) => [g.name, g]));
}
