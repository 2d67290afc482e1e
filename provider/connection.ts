/**
 * How a provider reaches espm: the environment variables ESPM_URL, ESPM_PSK and ESPM_CERTIFICATE or
 * ESPM_FINGERPRINT, read at every operation, else the stack's `espm:*` config as the engine hands it
 * over. On `up` and `preview` that is the current config; on `refresh` and `destroy` (without
 * --run-program) it is the config recorded at the last `up`, Pulumi's rule for every provider: so
 * after a PSK rotation the environment variables are the way that works without an `up`, as AWS_*
 * are for Pulumi's AWS provider. A resource may override all of this with its own `connection`
 * input (a program that talks to several espm servers), which the resource class marks secret.
 *
 * Nothing here logs or repeats the PSK: errors name config keys, never values.
 */
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import type { EspmClient } from "espm-sdk/client";
import { EspmError } from "espm-sdk/errors";

export interface EspmConnection {
  /** espm's base URL, e.g. https://puppet.example.com:8443 */
  url: string;
  psk: string;
  /** espm's certificate (PEM) to pin; or give `fingerprint`. */
  certificate?: string;
  /** SHA-256 fingerprint of espm's certificate: hex, colons optional, any case. */
  fingerprint?: string;
}

/** What the dynamic-provider host hands `configure`: the stack's config, keys like `espm:url`. */
export interface StackConfig {
  get(key: string): string | undefined;
}

export type PartialConnection = Partial<EspmConnection>;

/** The environment variables that win over the stack's `espm:*` config, by the setting they give. */
export const CONNECTION_ENV = {
  url: "ESPM_URL",
  psk: "ESPM_PSK",
  certificate: "ESPM_CERTIFICATE",
  fingerprint: "ESPM_FINGERPRINT",
} as const;

/**
 * The connection named by the environment (CONNECTION_ENV) and the stack's `espm:*` config, the
 * environment first; keys set in neither stay undefined. A pin from the environment replaces both
 * of the config's, so a certificate recorded at the last `up` never outvotes a new fingerprint.
 */
export function stackConnection(config: StackConfig, env: NodeJS.ProcessEnv = process.env): PartialConnection {
  const fromEnv = (key: keyof typeof CONNECTION_ENV) => env[CONNECTION_ENV[key]] || undefined;
  const envPin = fromEnv("certificate") !== undefined || fromEnv("fingerprint") !== undefined;
  return {
    url: fromEnv("url") ?? config.get("espm:url"),
    psk: fromEnv("psk") ?? config.get("espm:psk"),
    certificate: envPin ? fromEnv("certificate") : config.get("espm:certificate"),
    fingerprint: envPin ? fromEnv("fingerprint") : config.get("espm:fingerprint"),
  };
}

/**
 * What to do when espm refuses the stack's PSK or cannot be reached with the stack's settings:
 * during refresh and destroy those are the ones recorded at the last `up`, not the current config.
 */
export const RECORDED_SETTINGS_HINT =
  "If this is a refresh or destroy: Pulumi runs them with the espm settings recorded at the last `pulumi up`, " +
  "not the stack's current config. Run `pulumi up` first, or `pulumi refresh --run-program` / `pulumi destroy --run-program`, " +
  "or set ESPM_URL, ESPM_PSK and ESPM_CERTIFICATE (or ESPM_FINGERPRINT) in the environment, which win over recorded settings";

/**
 * The process's clients, one per espm connection (URL, PSK and pin), kept for the life of the
 * process: every operation of every resource on that connection reuses its pooled TLS connections
 * instead of a handshake each. Keyed by a hash, so no PSK sits in a map key. Closed when the
 * process has nothing left to do (undici leaves idle sockets unreferenced, so they do not hold it).
 */
const clients = new Map<string, EspmClient>();

function closeClients(): void {
  const open = [...clients.values()];
  clients.clear();
  for (const client of open) void client.close().catch(() => undefined);
}

/**
 * The client for the resource's own connection when it has one, else for the stack's. Throws a
 * message naming the missing config keys.
 */
async function clientFor(own: EspmConnection | undefined, stack: PartialConnection | undefined): Promise<EspmClient> {
  const chosen = own ?? stack ?? {};
  const missing: string[] = [];
  if (!chosen.url) missing.push("espm:url");
  if (!chosen.psk) missing.push("espm:psk (as a secret)");
  if (!chosen.certificate && !chosen.fingerprint) missing.push("espm:certificate or espm:fingerprint");
  if (missing.length || !chosen.url || !chosen.psk) {
    throw new Error(
      `espm connection not configured: set ${missing.join(", ")} in the stack config ` +
        "(`pulumi config set espm:url https://HOST:8443`, `pulumi config set --secret espm:psk`) or the environment " +
        "(ESPM_URL, ESPM_PSK, ESPM_CERTIFICATE or ESPM_FINGERPRINT), or give the resource a `connection`",
    );
  }
  const key = createHash("sha256")
    .update(JSON.stringify([chosen.url, chosen.psk, chosen.certificate ?? "", chosen.fingerprint ?? ""]))
    .digest("hex");
  const made = clients.get(key);
  if (made) return made;
  // The client (undici's pool, 30 ms to load, espm-sdk/http) loads where espm is called, the
  // provider host, not in the program, which only declares resources.
  const { EspmClient } = await import("espm-sdk/client");
  let client = clients.get(key); // made by another operation while the module loaded
  if (!client) {
    client = new EspmClient({
      url: chosen.url,
      psk: chosen.psk,
      certificate: chosen.certificate,
      fingerprint: chosen.fingerprint,
    });
    // The first client since the last close arms the close (closeClients empties the map).
    if (clients.size === 0) process.once("beforeExit", closeClients);
    clients.set(key, client);
  }
  return client;
}

/**
 * Runs `use` with the process's client for the resource's own connection or the stack's. A refusal
 * of the stack's PSK, an espm that cannot be reached or a pin that does not match says what to do
 * when the settings are those recorded at the last `up` (see RECORDED_SETTINGS_HINT).
 */
export async function withClient<T>(
  own: EspmConnection | undefined,
  stack: PartialConnection | undefined,
  use: (client: EspmClient) => Promise<T>,
): Promise<T> {
  try {
    return await use(await clientFor(own, stack));
  } catch (err) {
    const stale = err instanceof EspmError && ["unauthorized", "unreachable", "tls_pin_mismatch"].includes(err.code);
    if (stale && own === undefined && !err.message.includes(RECORDED_SETTINGS_HINT))
      err.message = `${err.message.replace(/\.$/, "")}. ${RECORDED_SETTINGS_HINT}`;
    throw err;
  }
}

/** A resource's own `connection` input, wrapped as a secret so that state keeps the PSK encrypted. */
export function secretConnection(
  connection: pulumi.Input<EspmConnection> | undefined,
): pulumi.Output<EspmConnection> | undefined {
  return connection === undefined ? undefined : pulumi.secret(connection);
}

/** Resource options that keep `connection`, and the named outputs, secret in state and outputs. */
export function keepingSecret(
  opts: pulumi.CustomResourceOptions | undefined,
  ...outputs: string[]
): pulumi.CustomResourceOptions {
  return { ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), ...outputs, "connection"] };
}
