/**
 * The provider's configuration: which espm server (URL, PSK, pin) and, for RegisteredImage, where
 * EC2 is. A default provider takes it from the stack's `espm:*` config, the keys the dynamic
 * resources read; an explicit provider (`pulumi:providers:espm`) from its properties. Either way
 * the environment variables ESPM_URL, ESPM_PSK and ESPM_CERTIFICATE or ESPM_FINGERPRINT win, as
 * they do for the dynamic resources (see pulumi-espm's connection.ts).
 */
import { z } from "zod";
import { connectionSchema } from "pulumi-espm/connection-schema";
import { stackSettings, type StackSettings } from "pulumi-espm/settings";
import type { Properties } from "./values";

/** The configuration's contract. Every key is optional: the environment may give it instead. */
export function providerConfigSchema() {
  const connection = connectionSchema().shape;
  return z.strictObject({
    url: connection.url.optional(),
    psk: connection.psk.optional(),
    certificate: connection.certificate,
    fingerprint: connection.fingerprint,
    validateClassification: z.boolean().optional(),
    awsRegion: z.string().min(1).optional(),
    ec2Endpoint: z.url().optional(),
  });
}

export const CONFIG_SECRETS: readonly string[] = ["psk"];

export const CONFIG_DOCS: Record<string, string> = {
  url: "espm's base URL, e.g. https://puppet.example.com:8443 (or the environment's ESPM_URL).",
  psk: "The PSK espm-setup printed (secret; or the environment's ESPM_PSK).",
  certificate: "espm's TLS certificate (PEM) to pin; or give `fingerprint` (or the environment's ESPM_CERTIFICATE).",
  fingerprint:
    "SHA-256 fingerprint of espm's certificate: hex, colons optional (or the environment's ESPM_FINGERPRINT).",
  validateClassification:
    "Check groups, classes and class parameters against the Puppet server at preview (default true).",
  awsRegion: "RegisteredImage: the AWS region (default: the environment's AWS_REGION).",
  ec2Endpoint: "RegisteredImage: another EC2 API endpoint, such as moto's for tests.",
};

/** The stack config keys each setting is read from by the lifecycles (pulumi-espm's settings.ts). */
const STACK_KEYS: Record<string, string> = {
  url: "espm:url",
  psk: "espm:psk",
  certificate: "espm:certificate",
  fingerprint: "espm:fingerprint",
  validateClassification: "espm:validateClassification",
  awsRegion: "aws:region",
  ec2Endpoint: "espm:ec2Endpoint",
};

/**
 * The configuration as the engine hands it to `configure`: the provider's properties (`args`), else
 * the `variables` map of a default provider, keyed `espm:config:url`.
 */
export function configFrom(args: Properties, variables: Map<string, string>): Properties {
  if (Object.keys(args).length > 0) return normalized(args);
  const config: Properties = {};
  for (const key of Object.keys(STACK_KEYS)) {
    const value = variables.get(`espm:config:${key}`) ?? variables.get(`espm:${key}`);
    if (value !== undefined) config[key] = value;
  }
  return normalized(config);
}

/** Keys the engine and the SDKs put among every provider's inputs: the plugin's, not espm's. */
const ENGINE_KEYS = ["version", "pluginDownloadURL"];

/**
 * The configuration as espm's: without the engine's keys, and with `validateClassification: "false"`
 * (stack config holds strings) as the boolean.
 */
export function normalized(config: Properties): Properties {
  const own = Object.fromEntries(Object.entries(config).filter(([key]) => !ENGINE_KEYS.includes(key)));
  const flag = own.validateClassification;
  return typeof flag === "string" ? { ...own, validateClassification: flag !== "false" } : own;
}

/** The settings every lifecycle gets, from the provider's configuration and the environment. */
export function settingsFrom(config: Properties): StackSettings {
  const byStackKey = new Map(
    Object.entries(STACK_KEYS).map(([key, stackKey]) => {
      const value = config[key];
      return [stackKey, value === undefined || value === null ? undefined : String(value)];
    }),
  );
  return stackSettings({ get: (key) => byStackKey.get(key) });
}

/** Check failures for a configuration that is given but wrong; keys the environment gives may be missing. */
export function configFailures(config: Properties): { property: string; reason: string }[] {
  const result = providerConfigSchema().safeParse(normalized(config));
  if (result.success) return [];
  return result.error.issues.map((issue) => ({
    property: issue.path.join(".") || "(configuration)",
    reason: issue.code === "unrecognized_keys" ? `${issue.keys.join(", ")}: not a setting of espm` : issue.message,
  }));
}
