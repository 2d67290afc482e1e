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
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { z } from "zod";
import type { Group, Node } from "../sdk/protocol";

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
            environment: z.string().regex(/^[a-z0-9_]{1,64}$/).optional(),
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

export interface EncClassification {
  environment: string;
  classes: Record<string, Record<string, unknown>>;
  parameters: Record<string, unknown>;
}

/**
 * A node's classification as Puppet sees it: its groups' classes and parameters in the order the
 * node lists them, later groups over earlier ones, and the node's own values over all groups.
 * A group that no longer exists in groups.yaml contributes nothing.
 */
export function mergeClassification(node: Pick<Node, "environment" | "groups" | "classes" | "parameters">, groups: Map<string, Group>): EncClassification {
  const classes: EncClassification["classes"] = {};
  const parameters: EncClassification["parameters"] = {};
  const layers = [...node.groups.map((g) => groups.get(g)).filter((g): g is Group => g !== undefined), node];
  for (const layer of layers) {
    for (const [cls, params] of Object.entries(layer.classes)) classes[cls] = { ...classes[cls], ...params };
    Object.assign(parameters, layer.parameters);
  }
  return { environment: node.environment, classes, parameters };
}
