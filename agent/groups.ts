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
import type { Group } from "../sdk/protocol";

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
  error(details: object, message: string): void;
}

/**
 * The groups the daemon serves and publishes: loaded from groups.yaml at start, then again within
 * seconds of every change (and on SIGHUP). Only a file that validates replaces them; a broken or
 * deleted file keeps the last good groups, and the log says why. Every accepted version is published
 * to the export, which is all `espm enc` reads.
 */
export class GroupsSource {
  private current: Map<string, Group>;
  private log: GroupsLog | undefined;
  /** Said once a log is attached: the start-up kept the last published groups. */
  private startupNote: { details: object; message: string } | undefined;

  constructor(
    readonly path: string,
    private readonly publish: (groups: Map<string, Group>) => void,
    /** The groups last published, kept at start-up when the file is gone. */
    previous?: Map<string, Group>,
  ) {
    if (!existsSync(path) && previous && previous.size > 0) {
      this.current = previous;
      this.startupNote = {
        details: { file: path, groups: previous.size },
        message: "kept the last published groups: the groups file is gone",
      };
    } else {
      this.current = loadGroups(path);
      publish(this.current);
    }
  }

  get groups(): Map<string, Group> {
    return this.current;
  }

  /** Where reloads report; also says what start-up kept, if anything. */
  attach(log: GroupsLog): void {
    this.log = log;
    if (this.startupNote) log.error(this.startupNote.details, this.startupNote.message);
  }

  /** Loads the file again; keeps the current groups if it is missing or invalid. */
  reload(reason: string): void {
    if (!existsSync(this.path)) {
      this.log?.error({ file: this.path, reason }, "kept the last good groups: the groups file is gone");
      return;
    }
    try {
      this.current = loadGroups(this.path);
    } catch (err) {
      this.log?.error(
        { file: this.path, reason, err: (err as Error).message },
        "kept the last good groups: the groups file is not valid",
      );
      return;
    }
    this.publish(this.current);
    this.log?.info({ file: this.path, reason, groups: this.current.size }, "published groups");
  }

  /** Polls the file's metadata (which survives editors that replace the file by rename). */
  watch(intervalMs = 1000): void {
    watchFile(this.path, { interval: intervalMs, persistent: false }, (now, before) => {
      if (now.mtimeMs !== before.mtimeMs || now.size !== before.size || now.ino !== before.ino) this.reload("changed");
    });
  }

  close(): void {
    unwatchFile(this.path);
  }
}
