/**
 * The operator's groups.yaml: named bundles of classes (with parameters) and node parameters.
 * A node names groups; `espm enc` merges their current values on every call, so editing a group
 * takes effect on each member's next Puppet run.
 *
 *   groups:
 *     web:
 *       description: Web servers
 *       classes:
 *         nginx: { port: 80 }
 *       parameters:
 *         role: web
 */
import { existsSync, readFileSync, unwatchFile, watchFile } from "node:fs";
import { parse } from "yaml";
import { z } from "zod";
import type { Group } from "espm-sdk/protocol";

export class GroupsError extends Error {
  override name = "GroupsError";
}

function groupsFileSchema() {
  const parameters = z.record(z.string(), z.json()).default({});
  return z.object({
    groups: z
      .record(
        z.string().regex(/^[A-Za-z0-9_.-]{1,200}$/, "group names are letters, digits, '_', '.' or '-'"),
        z
          .object({
            description: z.string().optional(),
            environment: z
              .string()
              .regex(/^[a-z0-9_]{1,64}$/)
              .optional(),
            classes: z.record(z.string(), z.record(z.string(), z.json()).nullable().default({})).default({}),
            parameters,
          })
          .nullable()
          .default({ classes: {}, parameters: {} }),
      )
      .default({}),
  });
}

/** Reads groups.yaml. A missing file means no groups; a malformed one is an error naming the file and place. */
export function loadGroups(path: string): Map<string, Group> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return new Map();
    throw new GroupsError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let raw: unknown;
  try {
    raw = parse(text) ?? {};
  } catch (err) {
    throw new GroupsError(`${path} is not valid YAML: ${(err as Error).message.split("\n")[0]}`);
  }
  const result = groupsFileSchema().safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join(".") || "(top)"}: ${i.message}`);
    throw new GroupsError(`${path} is not a valid groups file: ${problems.join("; ")}`);
  }
  const groups = new Map<string, Group>();
  for (const [name, group] of Object.entries(result.data.groups)) {
    const classes: Group["classes"] = {};
    for (const [cls, params] of Object.entries(group?.classes ?? {})) classes[cls] = params ?? {};
    groups.set(name, {
      name,
      description: group?.description,
      environment: group?.environment,
      classes,
      parameters: group?.parameters ?? {},
    });
  }
  return groups;
}

export interface GroupsLog {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
  error(details: object, message: string): void;
}

/**
 * Checks groups against the Puppet server before they are published: the problems, one line each
 * ([] when there are none), or undefined when the server cannot be asked now.
 */
export type GroupsCheck = (groups: Map<string, Group>) => Promise<string[] | undefined>;

/**
 * The groups the daemon serves and publishes: loaded from groups.yaml at start, then again within
 * seconds of every change (and on SIGHUP). Only a file that validates replaces them (its YAML and
 * shape, and, with a check, its classes and parameters against the Puppet server); a broken or
 * deleted file keeps the last good groups, and the log and health say why. Every accepted version
 * is published to the export, which is all `espm enc` reads.
 */
export class GroupsSource {
  private current: Map<string, Group>;
  private log: GroupsLog | undefined;
  /** Said once a log is attached: the start-up kept the last published groups. */
  private startupNote: { details: object; message: string } | undefined;
  /** Loaded at start, waiting for the check (see settle). */
  private unchecked: Map<string, Group> | undefined;
  /** Why the file's current content is not what is published, while it is not. */
  private heldBack: string | undefined;
  /** Reloads, one after another. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly publish: (groups: Map<string, Group>) => void,
    /** The groups last published, kept at start-up when the file is gone or does not pass the check. */
    previous?: Map<string, Group>,
    private readonly check?: GroupsCheck,
  ) {
    if (!existsSync(path) && previous && previous.size > 0) {
      this.current = previous;
      this.startupNote = {
        details: { file: path, groups: previous.size },
        message: "kept the last published groups: the groups file is gone",
      };
    } else if (check) {
      this.unchecked = loadGroups(path);
      this.current = previous && previous.size > 0 ? previous : new Map();
    } else {
      this.current = loadGroups(path);
      publish(this.current);
    }
  }

  get groups(): Map<string, Group> {
    return this.current;
  }

  /** Why groups.yaml as it is now is held back (shown in health), or undefined when it is published. */
  get problem(): string | undefined {
    return this.heldBack;
  }

  /** Where reloads report; also says what start-up kept, if anything. */
  attach(log: GroupsLog): void {
    this.log = log;
    if (this.startupNote) log.error(this.startupNote.details, this.startupNote.message);
  }

  /** Start-up, with a check: checks the groups loaded at start, and publishes them if they pass. */
  async settle(): Promise<void> {
    const loaded = this.unchecked;
    this.unchecked = undefined;
    if (loaded) await this.enqueue(() => this.accept(loaded, "start"));
  }

  /** Loads the file again; keeps the current groups if it is missing or invalid. */
  reload(reason: string): Promise<void> {
    return this.enqueue(async () => {
      if (!existsSync(this.path)) {
        this.log?.error({ file: this.path, reason }, "kept the last good groups: the groups file is gone");
        return;
      }
      let loaded: Map<string, Group>;
      try {
        loaded = loadGroups(this.path);
      } catch (err) {
        this.heldBack = (err as Error).message;
        this.log?.error(
          { file: this.path, reason, err: this.heldBack },
          "kept the last good groups: the groups file is not valid",
        );
        return;
      }
      await this.accept(loaded, reason);
    });
  }

  private enqueue(work: () => Promise<void>): Promise<void> {
    this.queue = this.queue.then(work, work);
    return this.queue;
  }

  /** Publishes groups that pass the check; holds back those that do not. */
  private async accept(groups: Map<string, Group>, reason: string): Promise<void> {
    const problems = this.check ? await this.check(groups).catch(() => undefined) : [];
    if (problems?.length) {
      this.heldBack = `${this.path} does not match the Puppet server: ${problems.join("; ")}`;
      this.log?.error(
        { file: this.path, reason, problems },
        "kept the last good groups: the groups file names classes or parameters the Puppet server does not have",
      );
      return;
    }
    if (problems === undefined)
      this.log?.warn(
        { file: this.path, reason },
        "published groups without checking their classes: the Puppet server could not be asked",
      );
    this.current = groups;
    this.heldBack = undefined;
    this.publish(groups);
    this.log?.info({ file: this.path, reason, groups: groups.size }, "published groups");
  }

  /** Polls the file's metadata (which survives editors that replace the file by rename). */
  watch(intervalMs = 1000): void {
    watchFile(this.path, { interval: intervalMs, persistent: false }, (now, before) => {
      if (now.mtimeMs !== before.mtimeMs || now.size !== before.size || now.ino !== before.ino)
        void this.reload("changed");
    });
  }

  close(): void {
    unwatchFile(this.path);
  }
}
