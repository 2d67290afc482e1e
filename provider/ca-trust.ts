/**
 * How a node comes to trust the Puppet CA: the bundle itself (`caCertificatePem`, 4 KB for Puppet's
 * chain of two), or only its SHA-256 (`caFingerprint`), with which the agent checks the bundle it
 * downloads from the master (Puppet's `ca_fingerprint`). PuppetEnrollment and PuppetCertificate give
 * both; `includeCaBundle: false` keeps the bundle out of state, where the engine rewrites it with the
 * whole state after every step.
 */
import { createHash } from "node:crypto";

export interface CaOutputs {
  /** Absent in a resource stored before the input existed, which held its bundle. */
  includeCaBundle?: boolean;
  /** Empty when `includeCaBundle` is false. */
  caCertificatePem: string;
  /** Absent in a resource stored before the output existed, until it is next updated or refreshed. */
  caFingerprint?: string;
}

/** The SHA-256 in hex of the bundle exactly as Puppet Server serves it: what Puppet's `ca_fingerprint` compares. */
export function caFingerprint(bundle: string): string {
  return createHash("sha256").update(bundle, "utf8").digest("hex");
}

/** A new resource's CA outputs, from the bundle espm answered with. */
export function caOutputs(bundle: string, includeCaBundle: boolean | undefined): CaOutputs {
  return { caCertificatePem: includeCaBundle === false ? "" : bundle, caFingerprint: caFingerprint(bundle) };
}

/** Whether `includeCaBundle` changed: a resource stored before the input existed holds its bundle, as `true` does. */
export function caBundleChanged(olds: CaOutputs, news: CaOutputs): boolean {
  return (olds.includeCaBundle ?? true) !== (news.includeCaBundle ?? true);
}

/**
 * The CA outputs kept by an update or a refresh: the bundle emptied once it is no longer wanted (it
 * is not fetched back: a new resource has one), and the fingerprint of a resource stored before
 * the output existed computed from the bundle it holds.
 */
export function caOutputsKept(olds: CaOutputs, includeCaBundle: boolean | undefined): CaOutputs {
  const fingerprint = olds.caFingerprint ?? (olds.caCertificatePem ? caFingerprint(olds.caCertificatePem) : undefined);
  return {
    includeCaBundle,
    caCertificatePem: includeCaBundle === false ? "" : olds.caCertificatePem,
    ...(fingerprint === undefined ? {} : { caFingerprint: fingerprint }),
  };
}

export const INCLUDE_CA_BUNDLE_DOC =
  "Whether `caCertificatePem` holds the CA bundle (default `true`). With `false` it is empty and only `caFingerprint` " +
  "is kept: 4 KB less per node in state and in userdata, and the bootstrap has the agent download the bundle and " +
  "check it against the fingerprint (Puppet 6 and later). Turning it off empties `caCertificatePem` in place; turning " +
  "it back on does not fetch the bundle again (a new resource has it).";

export const CA_FINGERPRINT_DOC =
  "The CA bundle's SHA-256 in hex, as Puppet Server serves the bundle: the bootstrap has the agent check the bundle it downloads against it (Puppet's `ca_fingerprint`).";
