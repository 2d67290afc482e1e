/**
 * The schema of a resource's own `connection` input (see ./connection), apart from the rest so that a
 * program, which only declares resources, loads no zod: the lifecycles and the provider plugin check with it.
 */
import { z } from "zod";
import { normalizeFingerprint } from "espm-sdk/keys";

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
