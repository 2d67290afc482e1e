/**
 * Property values as the engine sends and takes them over gRPC: JSON in a protobuf Struct, with
 * secrets wrapped in an object that carries Pulumi's signature key. The lifecycles work on plain
 * values, so secrets are unwrapped on the way in and the secret properties wrapped on the way out
 * (the engine keeps a wrapped value encrypted in state; it does so because `configure` says the
 * plugin accepts secrets).
 */
import { Struct } from "google-protobuf/google/protobuf/struct_pb";

/** Pulumi's signature key, and the value under it that marks a secret. */
const SIGNATURE_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIGNATURE = "1b47061264138c4ac30d75fd1eb44270";

export type Properties = Record<string, unknown>;

interface SecretValue {
  [SIGNATURE_KEY]: typeof SECRET_SIGNATURE;
  value: unknown;
}

function isSecret(value: unknown): value is SecretValue {
  return (
    value !== null &&
    typeof value === "object" &&
    (value as Record<string, unknown>)[SIGNATURE_KEY] === SECRET_SIGNATURE
  );
}

export function secret(value: unknown): SecretValue {
  return { [SIGNATURE_KEY]: SECRET_SIGNATURE, value };
}

/** The value with every secret inside it unwrapped. */
export function reveal(value: unknown): unknown {
  if (isSecret(value)) return reveal(value.value);
  if (Array.isArray(value)) return value.map(reveal);
  if (value !== null && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, reveal(v)]));
  return value;
}

/** The top-level properties whose values are, or hold, a secret. */
export function secretKeys(properties: Properties): string[] {
  const holds = (value: unknown): boolean =>
    isSecret(value) ||
    (Array.isArray(value)
      ? value.some(holds)
      : value !== null && typeof value === "object" && Object.values(value).some(holds));
  return Object.keys(properties).filter((key) => holds(properties[key]));
}

/** A request's Struct as plain properties, secrets unwrapped. */
export function fromStruct(struct: Struct | undefined): Properties {
  return (reveal(struct?.toJavaScript() ?? {}) ?? {}) as Properties;
}

/** The value without undefined anywhere inside it, which a Struct cannot hold. */
function defined(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(defined);
  if (value !== null && typeof value === "object")
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, defined(v)]),
    );
  return value;
}

/** Plain properties as a Struct for the engine, the named ones wrapped as secrets. */
export function toStruct(properties: Properties, secrets: Iterable<string> = []): Struct {
  const keep = new Set(secrets);
  const entries = Object.entries(defined(properties) as Properties).map(([key, value]) => [
    key,
    keep.has(key) ? secret(value) : value,
  ]);
  return Struct.fromJavaScript(Object.fromEntries(entries) as Parameters<typeof Struct.fromJavaScript>[0]);
}
