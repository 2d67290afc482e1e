/**
 * How a node's groups and its own values merge into what Puppet receives. Without zod or yaml, so
 * that `espm enc`, which runs for every catalog compile, loads only what it needs.
 */
import type { Group, Node } from "espm-sdk/protocol";

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
export function mergeClassification(
  node: Pick<Node, "environment" | "groups" | "classes" | "parameters">,
  groups: Map<string, Group>,
): EncClassification {
  const classes: EncClassification["classes"] = {};
  const parameters: EncClassification["parameters"] = {};
  const layers = [...node.groups.map((g) => groups.get(g)).filter((g): g is Group => g !== undefined), node];
  for (const layer of layers) {
    for (const [cls, params] of Object.entries(layer.classes)) classes[cls] = { ...classes[cls], ...params };
    Object.assign(parameters, layer.parameters);
  }
  return { environment: node.environment, classes, parameters };
}
