/**
 * How a provider reaches espm. The URL, PSK and pinned certificate come from the current stack's
 * config at every operation (`espm:url`, `espm:psk`, `espm:certificate` or `espm:fingerprint`),
 * never from state, so rotating the PSK never breaks a later refresh or destroy. A resource may
 * override them with its own `connection` input, which the resource class marks secret.
 *
 * Nothing here logs or repeats the PSK: errors name config keys, never values.
 */
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { EspmClient } from "../sdk/client";
import { normalizeFingerprint } from "../sdk/x509";

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

/** The connection named by the stack's `espm:*` config; keys not set stay undefined. */
export function stackConnection(config: StackConfig): PartialConnection {
  return {
    url: config.get("espm:url"),
    psk: config.get("espm:psk"),
    certificate: config.get("espm:certificate"),
    fingerprint: config.get("espm:fingerprint"),
  };
}

/** The schema of a resource's `connection` input. */
export function connectionSchema() {
  return z
    .strictObject({
      url: z.string().regex(/^https:\/\/[^\s/]+(\/.*)?$/, "must be an https:// URL"),
      psk: z.string().min(16, "must be the PSK espm-setup printed"),
      certificate: z
        .string()
        .includes("-----BEGIN CERTIFICATE-----", { message: "must be a PEM certificate" })
        .optional(),
      fingerprint: z
        .string()
        .refine(
          (value) => normalizeFingerprint(value) !== undefined,
          "must be a SHA-256 fingerprint: 64 hex digits, colons optional",
        )
        .optional(),
    })
    .refine((value) => value.certificate !== undefined || value.fingerprint !== undefined, {
      message: "give certificate or fingerprint to pin espm's TLS certificate",
      path: ["certificate"],
    });
}

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
function clientFor(own: EspmConnection | undefined, stack: PartialConnection | undefined): EspmClient {
  const chosen = own ?? stack ?? {};
  const missing: string[] = [];
  if (!chosen.url) missing.push("espm:url");
  if (!chosen.psk) missing.push("espm:psk (as a secret)");
  if (!chosen.certificate && !chosen.fingerprint) missing.push("espm:certificate or espm:fingerprint");
  if (missing.length || !chosen.url || !chosen.psk) {
    throw new Error(
      `espm connection not configured: set ${missing.join(", ")} in the stack config ` +
        "(`pulumi config set espm:url https://HOST:8443`, `pulumi config set --secret espm:psk`), or give the resource a `connection`",
    );
  }
  const key = createHash("sha256")
    .update(JSON.stringify([chosen.url, chosen.psk, chosen.certificate ?? "", chosen.fingerprint ?? ""]))
    .digest("hex");
  let client = clients.get(key);
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

/** Runs `use` with the process's client for the resource's own connection or the stack's. */
export async function withClient<T>(
  own: EspmConnection | undefined,
  stack: PartialConnection | undefined,
  use: (client: EspmClient) => Promise<T>,
): Promise<T> {
  return use(clientFor(own, stack));
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
