/**
 * A registration's classification checked against the Puppet server's truth, in `check`, so that
 * `pulumi preview` shows a mistyped group, a class the environment lacks, or a parameter Puppet
 * would refuse, before anything launches. espm's groups and the environment's classes are fetched
 * once per provider process (per espm and environment), shared by concurrent checks, and
 * revalidated with their ETag after a minute.
 *
 * It degrades honestly: a classification that did not change in this stack is never failed (a
 * Puppet code change must not block unrelated `up`s), only noted; when espm cannot be asked, one
 * line says so and the check passes (`up` checks again); a type it cannot read passes; a required
 * parameter nobody sets is a note, since Hiera may supply it. Notes go to stdout, the one channel a
 * dynamic provider has to the engine.
 */
import { AnswerCache, type Cached } from "espm-sdk/cache";
import type * as pulumi from "@pulumi/pulumi";
import { isDeepStrictEqual } from "node:util";
import {
  nodeEnvironment,
  type ClassesResponse,
  type Group,
  type GroupsResponse,
  type PuppetClass,
} from "espm-sdk/protocol";
import { withClient, type EspmConnection, type PartialConnection } from "./connection";
import { messageOf, progress } from "./lifecycle";
import { parsePuppetType, typeProblem } from "espm-sdk/puppet-types";

export interface ClassificationInputs {
  name: string;
  environment?: string;
  groups: string[];
  classes: Record<string, Record<string, unknown>>;
}

/** After this long, a cached answer is revalidated with its ETag. */
const REVALIDATE_MS = 60_000;

/** espm's groups and classes by URL (and environment), revalidated with their ETags; one request in flight per key. */
const groupsCache = new AnswerCache<string, GroupsResponse>({ ttlMs: REVALIDATE_MS });
const classesCache = new AnswerCache<string, ClassesResponse>({ ttlMs: REVALIDATE_MS });

/** A fetch for AnswerCache from a conditional GET that answers undefined when the copy is current. */
const revalidating =
  <V>(ask: (etag?: string) => Promise<Cached<V> | undefined>) =>
  async (_key: string, previous: Cached<V> | undefined): Promise<Cached<V>> => {
    const fresh = await ask(previous?.etag);
    if (fresh) return fresh;
    if (!previous) throw new Error("espm answered Not Modified to a request that named no ETag");
    return previous;
  };

/** espm could not be asked: said once per process, not once per resource. */
let saidUnreachable = false;

function listed(names: string[]): string {
  return names.length ? names.join(", ") : "none";
}

/**
 * The failures `check` reports (new or changed classifications only), after printing the notes.
 * `changed` is false when the classification is the one already in state.
 */
export async function classificationFailures(
  inputs: ClassificationInputs,
  own: EspmConnection | undefined,
  stack: PartialConnection | undefined,
  changed: boolean,
): Promise<pulumi.dynamic.CheckFailure[]> {
  let groups: Map<string, Group>;
  let environment: string;
  let classes: Map<string, PuppetClass>;
  try {
    const url = own?.url ?? stack?.url ?? "";
    const groupList = await groupsCache.get(
      url,
      revalidating((etag) => withClient(own, stack, (c) => c.groupsIfChanged(etag))),
    );
    groups = new Map(groupList.groups.map((g) => [g.name, g]));
    // Unset here means espm's default environment, which GET /v1/classes answers for.
    const wanted = nodeEnvironment(inputs, (g) => groups.get(g)?.environment);
    const classList = await classesCache.get(
      `${url} ${wanted ?? ""}`,
      revalidating((etag) => withClient(own, stack, (c) => c.classesIfChanged(wanted, etag))),
    );
    environment = classList.environment;
    classes = new Map(classList.classes.map((c) => [c.name, c]));
  } catch (error) {
    if (!saidUnreachable) {
      saidUnreachable = true;
      progress(
        `espm could not be asked to validate classifications (${messageOf(error)}); they were not checked now, and pulumi up checks them again`,
      );
    }
    return [];
  }

  const failures: pulumi.dynamic.CheckFailure[] = [];
  const fail = (property: string, reason: string) => failures.push({ property, reason });
  const supplied = new Map<string, Set<string>>();
  const supply = (cls: string, params: Record<string, unknown>) => {
    const set = supplied.get(cls) ?? new Set<string>();
    for (const p of Object.keys(params)) set.add(p);
    supplied.set(cls, set);
  };

  inputs.groups.forEach((name, i) => {
    const group = groups.get(name);
    if (!group) {
      fail(`groups[${i}]`, `espm has no group ${name}; its groups.yaml defines: ${listed([...groups.keys()])}`);
      return;
    }
    for (const [cls, params] of Object.entries(group.classes)) {
      supply(cls, params);
      const known = classes.get(cls);
      if (!known) {
        fail(`groups[${i}]`, `group ${name} sets class ${cls}, which environment ${environment} does not have`);
        continue;
      }
      for (const [param, value] of Object.entries(params)) {
        const declared = known.parameters.find((p) => p.name === param);
        const problem = declared && typeProblem(parsePuppetType(declared.type), value);
        if (problem)
          fail(
            `groups[${i}]`,
            `group ${name} sets ${cls}::${param}${problem.at} to ${JSON.stringify(problem.got)}; Puppet expects ${problem.expected}`,
          );
      }
    }
  });

  for (const [cls, params] of Object.entries(inputs.classes)) {
    supply(cls, params);
    const known = classes.get(cls);
    if (!known) {
      fail(`classes.${cls}`, `environment ${environment} has no class ${cls}`);
      continue;
    }
    for (const [param, value] of Object.entries(params)) {
      const declared = known.parameters.find((p) => p.name === param);
      if (!declared) {
        fail(
          `classes.${cls}.${param}`,
          `class ${cls} has no parameter ${param}; it has: ${listed(known.parameters.map((p) => p.name))}`,
        );
        continue;
      }
      const problem = typeProblem(parsePuppetType(declared.type), value);
      if (problem)
        fail(
          `classes.${cls}.${param}${problem.at}`,
          `Puppet expects ${problem.expected}, got ${JSON.stringify(problem.got)}`,
        );
    }
  }

  for (const [cls, given] of supplied) {
    for (const param of classes.get(cls)?.parameters ?? []) {
      if (!param.hasDefault && !given.has(param.name))
        progress(
          `${inputs.name}: class ${cls} requires ${param.name} (${param.type ?? "Any"}), which neither the node nor its groups set; Hiera must supply it, or the node's first Puppet run fails`,
        );
    }
  }

  if (changed) return failures;
  for (const { property, reason } of failures)
    progress(
      `${inputs.name}: ${property}: ${reason} (unchanged in this stack, so not failed: the Puppet code changed since)`,
    );
  return [];
}

/** Whether the classification differs from the one in state (a create has none). */
export function classificationChanged(olds: Partial<ClassificationInputs>, news: ClassificationInputs): boolean {
  if (olds.name === undefined) return true;
  return !isDeepStrictEqual(
    { environment: olds.environment, groups: olds.groups, classes: olds.classes },
    { environment: news.environment, groups: news.groups, classes: news.classes },
  );
}
