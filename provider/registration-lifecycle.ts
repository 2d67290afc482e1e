/**
 * PuppetNodeRegistration's lifecycle: what the dynamic-provider host (through the runtime module) and
 * the provider plugin run for it. The program loads only the resource class (./registration), which
 * declares the resource, and so none of this: not its input schema (zod), not espm's client.
 */
import type * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import type { EspmClient } from "espm-sdk/client";
import { EspmError } from "espm-sdk/errors";
import { schemas, suffixedName, type Node } from "espm-sdk/protocol";
import { connectionSchema } from "./connection-schema";
import { withClient } from "./connection";
import { classificationChanged, classificationFailures } from "./classification-check";
import {
  changedProperties,
  checkWith,
  containsUnknown,
  defined,
  initFailed,
  inputSchemaOnce,
  messageOf,
  nothingWasDone,
  removedAtEspm,
} from "./lifecycle";
import { type Lifecycle } from "./thin-provider";
import type { StackSettings } from "./settings";
import type { RegistrationState } from "./registration";

/** Inputs whose change the engine shows; `connection` is deliberately outside the diff. */
const DIFFED = ["name", "environment", "groups", "classes", "parameters", "onConflict"] as const;
/** Conflict suffixes tried before giving up; each is a fresh millisecond timestamp. */
const SUFFIX_ATTEMPTS = 5;

const inputSchema = inputSchemaOnce(() =>
  schemas.classification.extend({
    name: schemas.name,
    onConflict: z.enum(["suffix", "fail"]).default("suffix"),
    connection: connectionSchema().optional(),
  }),
);

function classification(state: Pick<RegistrationState, "environment" | "groups" | "classes" | "parameters">) {
  return { environment: state.environment, groups: state.groups, classes: state.classes, parameters: state.parameters };
}

function stateFrom(inputs: RegistrationState, node: Node): RegistrationState {
  return defined({ ...inputs, nodeName: node.name, nodeEnvironment: node.environment, createdAt: node.createdAt });
}

export const registrationLifecycle = {
  inputSchema,
  replacing: ["name"],

  async check(
    olds: Partial<RegistrationState>,
    news: Record<string, unknown>,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.CheckResult> {
    const result = checkWith(inputSchema(), news);
    const empty = (value: unknown) =>
      value === undefined || value === null || (typeof value === "object" && Object.keys(value).length === 0);
    if (empty(news.groups) && empty(news.classes)) {
      result.failures.push({
        property: "groups",
        reason: "give at least one group or one class: a node with neither is classified with nothing",
      });
    }
    if (result.failures.length) return { failures: result.failures };
    // Against espm's groups and Puppet Server's classes, when every value is known (not at a
    // preview where they come from other resources' outputs) and the stack has not turned it off.
    const inputs = result.inputs as unknown as RegistrationState; // what inputSchema() made of `news`
    const known = !["name", "environment", "groups", "classes"].some((key) =>
      containsUnknown(inputs[key as keyof RegistrationState]),
    );
    if (known && settings?.validateClassification !== false) {
      const failures = await classificationFailures(
        inputs,
        inputs.connection,
        settings?.espm,
        classificationChanged(olds, inputs),
      );
      if (failures.length) return { failures };
    }
    return { inputs: result.inputs };
  },

  async diff(_id: string, olds: RegistrationState, news: RegistrationState): Promise<pulumi.dynamic.DiffResult> {
    const changes = changedProperties({ ...olds }, { ...news }, DIFFED);
    return { changes: changes.length > 0, replaces: changes.filter((key) => key === "name") };
  },

  async create(
    inputs: RegistrationState,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.CreateResult<RegistrationState>> {
    return withClient(inputs.connection, settings?.espm, async (client) => {
      let name = inputs.name;
      for (let attempt = 1; ; attempt++) {
        try {
          const node = await client.registerNode({ name, ...classification(inputs) });
          return { id: node.name, outs: stateFrom(inputs, node) };
        } catch (error) {
          const taken = error instanceof EspmError && error.code === "conflict";
          if (taken && inputs.onConflict === "suffix" && attempt < SUFFIX_ATTEMPTS) {
            name = suffixedName(inputs.name, Date.now());
            continue;
          }
          if (nothingWasDone(error)) throw new Error(`registering node ${name} with espm failed: ${messageOf(error)}`);
          throw await cleanUpAfter(error, name, inputs, client);
        }
      }
    });
  },

  async read(
    id: string,
    state: RegistrationState,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.ReadResult<RegistrationState>> {
    return withClient(state.connection, settings?.espm, async (client) => {
      const node = await client.getNode(id);
      // Gone behind Pulumi's back: an empty id tells the engine, and refresh drops it from state.
      if (!node) return { id: "", props: {} as RegistrationState };
      // An import (`pulumi import`, or the `import` resource option) reads with no state at all:
      // the node is adopted as registered under its own name, with the default conflict policy.
      return {
        id,
        props: defined({
          ...state,
          name: state.name ?? node.name,
          onConflict: state.onConflict ?? "suffix",
          environment: state.environment === undefined ? undefined : node.environment,
          groups: node.groups,
          classes: node.classes,
          parameters: node.parameters,
          nodeName: node.name,
          nodeEnvironment: node.environment,
          createdAt: state.createdAt ?? node.createdAt,
        }),
      };
    });
  },

  /**
   * Also finishes a create recorded half-made (init-failed): the engine turns such a resource into
   * an update on the next `up`, whose node may not exist; it is registered then, under its id.
   */
  async update(
    id: string,
    olds: RegistrationState,
    news: RegistrationState,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.UpdateResult<RegistrationState>> {
    return withClient(news.connection ?? olds.connection, settings?.espm, async (client) => {
      try {
        const existing = await client.getNode(id);
        const node = existing
          ? await client.updateNode(id, classification(news))
          : await client.registerNode({ name: id, ...classification(news) });
        return {
          outs: defined({
            ...stateFrom(news, node),
            name: olds.name ?? news.name,
            nodeName: id,
            createdAt: node.createdAt,
          }),
        };
      } catch (error) {
        throw new Error(`updating node ${id} in espm failed: ${messageOf(error)}`);
      }
    });
  },

  async delete(id: string, state: RegistrationState, settings: StackSettings | undefined): Promise<void> {
    await withClient(state.connection, settings?.espm, (client) =>
      // espm answers 204 for its own node already deleted, and 404 for a name it never created
      // (a create recorded half-made that never landed): either way nothing of ours is left.
      removedAtEspm(() => client.deleteNode(id), `deleting node ${id} from espm failed`),
    );
  },
} satisfies Lifecycle<RegistrationState>;

/**
 * The answer to a create that may have acted (no answer, a 5xx, a reply that did not parse): remove
 * the node if espm made it, and if even that cannot be done, record it in state so nothing is orphaned.
 */
async function cleanUpAfter(
  error: unknown,
  name: string,
  inputs: RegistrationState,
  client: EspmClient,
): Promise<Error> {
  try {
    await client.deleteNode(name);
    return new Error(`registering node ${name} with espm failed, and nothing was left behind: ${messageOf(error)}`);
  } catch {
    return initFailed(
      `registering node ${name} with espm failed and it may exist; it is kept in state so the next up finishes it and destroy removes it: ${messageOf(error)}`,
      name,
      inputs,
      { nodeName: name },
    );
  }
}
