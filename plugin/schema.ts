/**
 * The Pulumi package schema of `espm`, made from the contracts the code validates with: each
 * resource's zod input schema (its lifecycle's), the outputs and functions declared beside them
 * (resources.ts, functions.ts) and the provider's configuration (config.ts). zod turns each into
 * JSON Schema; this turns JSON Schema into Pulumi's types: strings, numbers, integers, booleans,
 * arrays, maps, objects (named types) and `Any` for free JSON. `schema.json` beside the package is
 * this, written by `npm run schema` for the SDK generators and reviewers; a test fails when it is stale.
 */
import { z } from "zod";
import { providerConfigSchema, CONFIG_DOCS, CONFIG_SECRETS } from "./config";
import { FUNCTIONS } from "./functions";
import { inputKeys, RESOURCES, type ResourceKind } from "./resources";

/** A JSON Schema node, as zod writes them (the subset it writes). */
interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  additionalProperties?: JsonSchema | boolean;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
}

export interface TypeSpec {
  type?: "string" | "integer" | "number" | "boolean" | "array" | "object";
  items?: TypeSpec;
  additionalProperties?: TypeSpec;
  $ref?: string;
}

export interface PropertySpec extends TypeSpec {
  description: string;
  secret?: boolean;
  willReplaceOnChanges?: boolean;
}

interface ObjectTypeSpec {
  type: "object";
  description?: string;
  properties: Record<string, PropertySpec>;
  required?: string[];
}

export const PACKAGE = "espm";
const ANY: TypeSpec = { $ref: "pulumi.json#/Any" };

/** Named object types, gathered while converting, by token. */
class Types {
  readonly specs: Record<string, ObjectTypeSpec> = {};

  /** A reference to the object type `name`, defined from `json` (once; a second definition must agree). */
  define(name: string, json: JsonSchema, defs: Record<string, JsonSchema>): TypeSpec {
    const token = `${PACKAGE}:index:${name}`;
    const properties = Object.fromEntries(
      Object.entries(json.properties ?? {}).map(([key, value]) => [
        key,
        { ...this.convert(value, `${name}${pascal(key)}`, defs), description: describe(key, value) },
      ]),
    );
    // An object type serves inputs and outputs: one with defaults is required in the output view
    // only, so what both views require is what the type requires.
    const earlier = this.specs[token];
    if (earlier && JSON.stringify(earlier.properties) !== JSON.stringify(properties))
      throw new Error(`two different object types would be named ${token}`);
    const required = (json.required ?? []).filter((key) => !earlier || (earlier.required ?? []).includes(key));
    this.specs[token] = { type: "object", properties, ...(required.length ? { required } : {}) };
    return { $ref: `#/types/${token}` };
  }

  /** Pulumi's type for a JSON Schema node; `name` names the object types found inside. */
  convert(json: JsonSchema, name: string, defs: Record<string, JsonSchema>): TypeSpec {
    if (json.$ref) {
      // A schema the contract names (zod's `.meta({ id })`) gives its type that name.
      const id = json.$ref.replace(/^#\/\$defs\//, "");
      const def = defs[id];
      if (!def) throw new Error(`unresolved ${json.$ref}`);
      return this.convert(def, id.startsWith("__") ? name : id, defs);
    }
    const alternatives = json.anyOf ?? json.oneOf;
    if (alternatives) {
      // An optional or nullable value keeps its one real type; a true union (free JSON) is Any.
      const real = alternatives.filter((alt) => alt.type !== "null");
      return real.length === 1 ? this.convert(real[0]!, name, defs) : ANY;
    }
    switch (json.type) {
      case "string":
      case "integer":
      case "number":
      case "boolean":
        return { type: json.type };
      case "array":
        return { type: "array", items: json.items ? this.convert(json.items, `${name}Item`, defs) : ANY };
      case "object":
        if (json.properties && Object.keys(json.properties).length > 0) return this.define(name, json, defs);
        if (json.additionalProperties && typeof json.additionalProperties === "object")
          return {
            type: "object",
            additionalProperties: this.convert(json.additionalProperties, `${name}Value`, defs),
          };
        return ANY;
      default:
        if (json.const !== undefined || json.enum !== undefined) return { type: "string" };
        return ANY;
    }
  }
}

function pascal(key: string): string {
  return key.charAt(0).toUpperCase() + key.slice(1);
}

/** A property's description: the sentence given for it, with its default when it has one. */
function describe(key: string, json: JsonSchema, docs: Record<string, string> = {}): string {
  const sentence = docs[key] ?? "";
  const values = json.enum ? ` One of: ${json.enum.map((v) => JSON.stringify(v)).join(", ")}.` : "";
  const fallback = json.default === undefined ? "" : ` Default: ${JSON.stringify(json.default)}.`;
  return `${sentence}${values}${fallback}`.trim();
}

function jsonSchema(
  schema: z.ZodType,
  io: "input" | "output",
): JsonSchema & { properties: Record<string, JsonSchema> } {
  const json = z.toJSONSchema(schema, { io, unrepresentable: "any", reused: "inline" }) as JsonSchema;
  return { ...json, properties: json.properties ?? {} };
}

/** Properties from an object's JSON Schema, each described from `docs` (which must have every one). */
function properties(
  json: JsonSchema & { properties: Record<string, JsonSchema> },
  keys: readonly string[],
  docs: Record<string, string>,
  types: Types,
  prefix: string,
  extra: (key: string) => Partial<PropertySpec> = () => ({}),
): Record<string, PropertySpec> {
  return Object.fromEntries(
    keys.map((key) => {
      const property = json.properties[key];
      if (!property) throw new Error(`${prefix}: no ${key} in the contract`);
      if (!docs[key]) throw new Error(`${prefix}: no description for ${key}`);
      return [
        key,
        {
          ...types.convert(property, `${prefix}${pascal(key)}`, json.$defs ?? {}),
          description: describe(key, property, docs),
          ...extra(key),
        },
      ];
    }),
  );
}

function resourceSpec(resource: ResourceKind, types: Types) {
  const name = resource.token.split(":")[2]!;
  const inputs = inputKeys(resource);
  const inputJson = jsonSchema(resource.lifecycle.inputSchema(), "input");
  const outputJson = jsonSchema(z.object(resource.outputs), "output");
  const stateJson = jsonSchema(resource.lifecycle.inputSchema(), "output");
  const replaces = (key: string) => (resource.lifecycle.replacing.includes(key) ? { willReplaceOnChanges: true } : {});
  const secret = (key: string) => (resource.secrets.includes(key) ? { secret: true } : {});
  const inputProperties = properties(inputJson, inputs, resource.docs, types, name, replaces);
  const outputProperties = {
    ...properties(stateJson, inputs, resource.docs, types, name),
    ...properties(outputJson, Object.keys(resource.outputs), resource.docs, types, name, secret),
  };
  // In state, an input is always there when it is required or has a default (check fills it in).
  const required = [
    ...(stateJson.required ?? []).filter((key) => inputs.includes(key)),
    ...(outputJson.required ?? []),
  ];
  return {
    description: resource.description,
    inputProperties,
    requiredInputs: (inputJson.required ?? []).filter((key) => inputs.includes(key)),
    properties: outputProperties,
    required: [...new Set(required)].sort(),
  };
}

function functionSpec(fn: (typeof FUNCTIONS)[number], types: Types) {
  const name = pascal(fn.token.split(":")[2]!);
  const inputJson = jsonSchema(fn.inputs, "input");
  const outputJson = jsonSchema(fn.outputs, "output");
  const inputKeys = Object.keys(inputJson.properties);
  const outputKeys = Object.keys(outputJson.properties);
  const secret = () => (fn.secret ? { secret: true } : {});
  return {
    description: fn.description,
    inputs: {
      properties: properties(inputJson, inputKeys, fn.docs.arguments, types, `${name}Args`),
      ...(inputJson.required?.length ? { required: inputJson.required } : {}),
    },
    outputs: {
      properties: properties(outputJson, outputKeys, fn.docs.result, types, `${name}Result`, secret),
      required: outputJson.required ?? [],
    },
  };
}

/** espm's package schema for `version`. */
export function packageSchema(version: string) {
  const types = new Types();
  const configJson = jsonSchema(providerConfigSchema(), "input");
  const configKeys = Object.keys(configJson.properties);
  const config = properties(configJson, configKeys, CONFIG_DOCS, types, "Provider", (key) =>
    CONFIG_SECRETS.includes(key) ? { secret: true } : {},
  );
  const resources = Object.fromEntries(RESOURCES.map((r) => [r.token, resourceSpec(r, types)]));
  const functions = Object.fromEntries(FUNCTIONS.map((f) => [f.token, functionSpec(f, types)]));
  return {
    name: PACKAGE,
    displayName: "espm",
    version,
    description:
      "Puppet first-boot provisioning: register nodes with the Puppet server's classifier, enroll them or have their certificates signed through espm, and boot EC2 instances into Puppet.",
    keywords: ["pulumi", "puppet", "category/infrastructure", "kind/native"],
    license: "Apache-2.0",
    publisher: "espm",
    config: { variables: config },
    provider: {
      description: "The espm server a program talks to: its URL, its PSK (secret) and the pin of its TLS certificate.",
      inputProperties: config,
    },
    resources,
    functions,
    types: types.specs,
    language: {
      nodejs: { packageName: "@espm/pulumi-espm" },
      python: { packageName: "pulumi_espm", pyproject: { enabled: true }, respectSchemaVersion: true },
      go: { importBasePath: "espm.invalid/pulumi-espm/sdk/go/espm", generateResourceContainerTypes: true },
      csharp: { rootNamespace: "Espm", packageReferences: { Pulumi: "3.*" } },
    },
  };
}

export type PackageSchema = ReturnType<typeof packageSchema>;
