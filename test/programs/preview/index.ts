/**
 * Registrations from the stack's config, for the preview validation tests (test/preview.test.ts):
 * `preview:nodes` is a list of `{name, groups?, classes?}`; `preview:count` adds that many correct
 * nodes (the 100-registration preview). It also exports what the discovery functions return.
 */
import * as pulumi from "@pulumi/pulumi";
import { getClasses, getGroups, PuppetNodeRegistration } from "pulumi-espm";

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
interface NodeConfig {
  name: string;
  groups?: string[];
  classes?: Record<string, Record<string, Json>>;
}

export async function program() {
  const config = new pulumi.Config("preview");
  const nodes = config.getObject<NodeConfig[]>("nodes") ?? [];
  const count = config.getNumber("count") ?? 0;
  for (let i = 0; i < count; i++)
    nodes.push({ name: `bulk-${String(i).padStart(3, "0")}.engine.test`, classes: { espm_typed: { port: 1000 + i } } });
  for (const node of nodes) new PuppetNodeRegistration(node.name.split(".")[0]!, node);
  if (!config.getBoolean("discover")) return {};
  const groups = getGroups();
  const classes = getClasses({ environment: "production" });
  return {
    groupNames: groups.apply((gs) => gs.map((g) => g.name)),
    typedParameters: classes.apply((c) =>
      c.classes
        .find((k) => k.name === "espm_typed")
        ?.parameters.map((p) => `${p.name}: ${p.type}${p.hasDefault ? " (default)" : ""}`),
    ),
  };
}
