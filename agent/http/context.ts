import type { FastifyRequest } from "fastify";
import type { Group } from "espm-sdk/protocol";
import type { CertificateAuthority, ClassDiscovery } from "../puppetserver/contract";
import type { CertnamePolicy } from "../ca/certname-policy";
import type { EspmConfig } from "../config/config";
import type { EncPublication } from "../enc/export";
import type { Idempotency } from "./idempotency";
import type { PuppetDb } from "../puppetserver/puppetdb";
import type { RunSource } from "../reports/reports";
import type { AuditEntry, Store } from "../store/store";
import type { SigningMarks } from "../autosign/signing-marks";

/** What every route group is handed: the config, the store, the backends and the current groups. */
export interface AgentContext {
  config: EspmConfig;
  store: Store;
  idempotency: Idempotency;
  /** The groups as last validated from groups.yaml (reloaded on change and on SIGHUP). */
  groups(): Map<string, Group>;
  /** Why groups.yaml as it is now is held back (a syntax error, or classes the Puppet server lacks). */
  groupsProblem(): string | undefined;
  /** Which certnames espm may sign and classify. */
  policy: CertnamePolicy;
  /** What `espm enc` reads: the per-node files and the groups snapshot, or (PostgreSQL) the store itself. */
  export: EncPublication;
  ca?: CertificateAuthority;
  classes?: ClassDiscovery;
  /** Where runs are read: Puppet Server's stored reports when espm.ini names reportdir, else PuppetDB's. */
  reports?: RunSource;
  /** PuppetDB, when espm.ini names it: deletes deactivate there, and creates refuse the nodes it knows. */
  puppetdb?: PuppetDb;
  version: string;
  /**
   * Live registrations the certname policy refuses now (a store older than the policy, or patterns
   * narrowed since), as last reviewed: not classified, not changeable, deletable; health names them.
   */
  outsidePolicy: string[];
  /** The autosign channel, when espm.ini configures one: where it listens, and whether it does. */
  autosign?: { socket: string; listening: boolean };
  /** With the autosign channel: the marks that make the wrapper refuse espm's own CSRs at once. */
  signingMarks?: SigningMarks;
}

/** The options every route plugin is registered with. */
export interface RouteOptions {
  ctx: AgentContext;
}

export function now(): string {
  return new Date().toISOString();
}

/** Who made a request, for the audit log: the caller's address (all callers share one PSK). */
export function actor(request: FastifyRequest): string {
  return request.ip;
}

export function auditEntry(request: FastifyRequest, entry: Omit<AuditEntry, "actor">): AuditEntry {
  return { actor: actor(request), ...entry };
}
