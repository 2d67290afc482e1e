/**
 * What the Puppet server offers, for Pulumi programs: espm's groups and an environment's classes
 * (with their parameters' types and whether each has a default), through the stack's `espm:*`
 * config or a connection of the program's own, so a program can build its registrations from them.
 */
import * as pulumi from "@pulumi/pulumi";
import type { ClassesResponse, Group } from "espm-sdk/protocol";
import { stackConnection, withClient, type EspmConnection } from "./connection";

/** The stack's config as the program sees it (secrets included, without Pulumi's warning about reading them). */
const programConfig = { get: (key: string) => pulumi.runtime.getConfig(key) };

/** espm's groups (groups.yaml), with the classes and parameters each sets. */
export function getGroups(args: { connection?: EspmConnection } = {}): pulumi.Output<Group[]> {
  return pulumi.output(
    withClient(args.connection, stackConnection(programConfig), async (client) => (await client.groups()).groups),
  );
}

/** The classes of an environment (espm's default when none is given), as Puppet Server knows them. */
export function getClasses(
  args: { environment?: string; connection?: EspmConnection } = {},
): pulumi.Output<ClassesResponse> {
  return pulumi.output(
    withClient(args.connection, stackConnection(programConfig), (client) => client.classes(args.environment)),
  );
}
