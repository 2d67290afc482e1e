/**
 * groups.yaml checked against the Puppet server before it is published: every class a group sets
 * must exist in the group's environment, every parameter must be one the class declares, and each
 * value must fit the parameter's Puppet type (the same type checks `pulumi preview` runs,
 * sdk/puppet-types.ts). A group with a misspelled class would otherwise fail the next Puppet run of
 * every one of its members.
 */
import type { Group, PuppetClass } from "espm-sdk/protocol";
import { parsePuppetType, typeProblem } from "espm-sdk/puppet-types";
import { BackendError, type ClassDiscovery } from "../puppetserver/contract";

/**
 * What is wrong with the groups, one line each ([] when nothing is), or undefined when Puppet
 * Server cannot be asked now (then the caller publishes unchecked, and says so).
 */
export async function groupsProblems(
  groups: Map<string, Group>,
  discovery: ClassDiscovery,
  defaultEnvironment: string,
): Promise<string[] | undefined> {
  const byEnvironment = new Map<string, Group[]>();
  for (const group of groups.values()) {
    const environment = group.environment ?? defaultEnvironment;
    byEnvironment.set(environment, [...(byEnvironment.get(environment) ?? []), group]);
  }
  const problems: string[] = [];
  for (const [environment, members] of byEnvironment) {
    if (members.every((g) => Object.keys(g.classes).length === 0)) continue;
    let classes: PuppetClass[];
    try {
      classes = await discovery.classes(environment);
    } catch (err) {
      // Unreachable is "cannot tell"; an answer that the environment is missing is a problem of the file.
      if (err instanceof BackendError && /has no environment named/.test(err.message)) {
        problems.push(`environment ${environment} (groups ${members.map((g) => g.name).join(", ")}): ${err.message}`);
        continue;
      }
      return undefined;
    }
    const known = new Map(classes.map((c) => [c.name, c]));
    for (const group of members) {
      for (const [name, parameters] of Object.entries(group.classes)) {
        const declared = known.get(name);
        if (!declared) {
          problems.push(`group ${group.name} sets class ${name}, which environment ${environment} does not have`);
          continue;
        }
        for (const [parameter, value] of Object.entries(parameters)) {
          const spec = declared.parameters.find((p) => p.name === parameter);
          if (!spec) {
            const has = declared.parameters.map((p) => p.name).join(", ") || "none";
            problems.push(
              `group ${group.name} sets ${name}::${parameter}, a parameter ${name} does not have (it has: ${has})`,
            );
            continue;
          }
          const problem = typeProblem(parsePuppetType(spec.type), value);
          if (problem)
            problems.push(
              `group ${group.name} sets ${name}::${parameter}${problem.at} to ${JSON.stringify(problem.got)}; Puppet expects ${problem.expected}`,
            );
        }
      }
    }
  }
  return problems;
}
