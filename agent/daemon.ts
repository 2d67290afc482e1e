/**
 * `espm -c espm.ini`: the long-running agent. Foreground, JSON log lines on stdout, and a stop on
 * SIGTERM/SIGINT that never waits on a client: in-flight requests get a short grace period, then
 * every connection is closed. groups.yaml is watched (and reloaded on SIGHUP); Puppet Server's own
 * names are learned at start and relearned periodically, for the certname policy.
 */
import { readFileSync } from "node:fs";
import type { Socket } from "node:net";
import { buildAutosignServer, listenOnSocket } from "./autosign/server";
import { SigningMarks, signingMarksDir } from "./autosign/signing-marks";
import { CertnamePolicy } from "./ca/certname-policy";
import { loadConfig, type EspmConfig } from "./config/config";
import type { AgentContext } from "./http/context";
import { EncExport, readGroupsSnapshot, type EncPublication } from "./enc/export";
import { EnrollmentSweep } from "./enrollment/enrollments";
import { GroupsSource } from "./enc/groups";
import { groupsProblems } from "./enc/groups-check";
import type { Backends, ServerNameSource } from "./puppetserver/contract";
import { Idempotency } from "./http/idempotency";
import { buildServer } from "./http/server";
import { ReportReader } from "./reports/reports";
import { PuppetDb } from "./puppetserver/puppetdb";
import { openStore, StorePublication } from "./store/open";
import type { Store } from "./store/store";
import { ensureStateDirectories } from "./config/state-dirs";
import type { Group } from "espm-sdk/protocol";
import { VERSION } from "./version";

/** While Puppet Server's own names are unknown, espm retries learning them this often. */
const NAMES_RETRY_MS = 5000;
/** How long start-up waits for the first attempt to learn them. */
const FIRST_LEARN_WAIT_MS = 5000;

function readSecret(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (err) {
    throw new Error(`cannot read the ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** espm signs nothing until the operator has said which names it may sign. */
function certnamePolicy(config: EspmConfig, configFile: string, needsServerNames: boolean): CertnamePolicy {
  const { allow, deny, allow_any } = config.certnames;
  if (allow.length === 0 && !allow_any) {
    throw new Error(
      `${configFile} names no certname patterns, so espm would not know which names it may sign. ` +
        `Add one under [certnames] (allow[] = *.nodes.example.com), or set espm up with espm-setup --certname-pattern '*.nodes.example.com' (repeatable); ` +
        `a lab may use --allow-any-certname (allow_any = true)`,
    );
  }
  return new CertnamePolicy({ patterns: allow, deny, allowAny: allow_any }, needsServerNames);
}

/**
 * espm, from its config to listening: its secrets, the store and what `espm enc` reads, the groups,
 * the one context every route is handed, the server, the autosign channel and the sweep, then the
 * stop on SIGTERM. Each step is a function below, in this order.
 */
export async function runAgent(configFile: string, makeBackends: (config: EspmConfig) => Backends): Promise<void> {
  const config = loadConfig(configFile);
  const secrets = serverSecrets(config);
  const backends = makeBackends(config);
  const policy = certnamePolicy(config, configFile, backends.names !== undefined);

  ensureStateDirectories(config);
  const signingMarks = config.autosign && new SigningMarks(signingMarksDir(config.autosign.socket));
  signingMarks?.prepare(config.store.export_group);
  const store = await openStore(config);
  const { publication, previousGroups } = await encPublication(config, store);
  const classes = backends.classes;
  const check =
    classes && ((g: Map<string, Group>) => groupsProblems(g, classes, config.classifier.default_environment));
  const groups = new GroupsSource(config.classifier.groups, (g) => publication.writeGroups(g), previousGroups, check);
  const puppetdb = config.puppetdb ? new PuppetDb(config.puppetdb) : undefined;
  const ctx: AgentContext = {
    config,
    store,
    idempotency: new Idempotency(store),
    groups: () => groups.groups,
    groupsProblem: () => groups.problem,
    policy,
    export: publication,
    version: VERSION,
    reports: config.puppetserver?.reportdir ? new ReportReader(config.puppetserver.reportdir) : puppetdb,
    puppetdb,
    ...backends,
    autosign: config.autosign && { socket: config.autosign.socket, listening: false },
    signingMarks,
    outsidePolicy: [],
  };

  const app = buildServer(ctx, secrets);
  const sockets = trackSockets(app);
  const autosign = config.autosign
    ? buildAutosignServer(ctx, readSecret(config.autosign.secret_file, "autosign secret file"), app.log)
    : undefined;
  const sweep = config.autosign && ctx.ca ? new EnrollmentSweep(ctx, app.log) : undefined;
  groups.attach(app.log);
  await groups.settle();
  const review = () => reviewRegistrations(ctx, app.log);
  await review();
  if (publication instanceof StorePublication)
    publication.onError = (err) => app.log.error({ err: err.message }, "publishing the groups to the store failed");
  if (config.certnames.allow_any) {
    app.log.warn(
      { certnames: "allow_any" },
      "ANY CERTNAME MAY BE SIGNED: allow_any is set in espm.ini, so whoever holds the PSK can have any name outside Puppet's own signed and classified. Use this only in a lab; production sets certname patterns.",
    );
  }
  groups.watch();
  process.on("SIGHUP", () => void groups.reload("SIGHUP"));
  const learning = backends.names
    ? learnServerNames(backends.names, policy, config.certnames.refresh_seconds * 1000, app.log, review)
    : undefined;

  const stop = stopper(config, app, sockets, {
    background: () => {
      learning?.stop();
      groups.close();
      void sweep?.stop();
      void autosign?.close();
    },
    // Only once every request is done: see EncExport.seal.
    seal: async () => {
      if (publication instanceof EncExport) await publication.seal(store);
    },
    // Runs come from PuppetDB when no reportdir is set: then `reports` is `puppetdb`, closed once.
    close: () => [
      store.close(),
      ...[...new Set([ctx.reports, puppetdb])].flatMap((backend) => (backend ? [backend.close()] : [])),
    ],
  });
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));

  // Wait briefly for the first lesson, so a fresh espm can sign at once; if Puppet Server is down,
  // espm starts anyway and refuses names with 503 until it has learned them.
  await Promise.race([learning?.first, new Promise((r) => setTimeout(r, FIRST_LEARN_WAIT_MS).unref())]);
  await app.listen({ host: config.server.host, port: config.server.port });
  if (autosign && config.autosign) {
    await listenOnSocket(autosign, config.autosign.socket, config.store.export_group);
    ctx.autosign!.listening = true;
    sweep?.start(config.autosign.sweep_seconds * 1000);
  }
  app.log.info(
    {
      version: VERSION,
      host: config.server.host,
      port: config.server.port,
      ca: ctx.ca ? "puppetserver" : "not configured",
      autosign: config.autosign ? config.autosign.socket : "not configured",
      certnames: policy.describe().detail,
    },
    "espm ready",
  );
}

/** The PSK (at least 32 characters) and the TLS key and certificate espm serves with. */
function serverSecrets(config: EspmConfig): { psk: string; tls: { key: string; cert: string } } {
  const psk = readSecret(config.server.psk_file, "PSK file");
  if (psk.length < 32)
    throw new Error(
      `the PSK in ${config.server.psk_file} is shorter than 32 characters; make a new one with espm-setup`,
    );
  return {
    psk,
    tls: { key: readSecret(config.server.key, "TLS key"), cert: readSecret(config.server.cert, "TLS certificate") },
  };
}

/**
 * What `espm enc` reads, and the groups it was last given. SQLite: files, which the first review
 * checks against the store (EncExport.resume says how far a clean stop's record spares it that).
 * PostgreSQL: the store itself (on any compile master), where the groups are published too.
 */
async function encPublication(
  config: EspmConfig,
  store: Store,
): Promise<{ publication: EncPublication; previousGroups: Map<string, Group> }> {
  if (store.publishGroups)
    return { publication: new StorePublication(store), previousGroups: (await store.publishedGroups?.()) ?? new Map() };
  const encExport = new EncExport(config.store.enc_export, config.store.export_group);
  encExport.prepare();
  await encExport.resume(store);
  return { publication: encExport, previousGroups: readGroupsSnapshot(config.store.enc_export) };
}

/**
 * Every socket, including those still in their TLS handshake (which the HTTP server does not
 * track), so that a stop can cut them all off.
 */
function trackSockets(app: ReturnType<typeof buildServer>): Set<Socket> {
  const sockets = new Set<Socket>();
  app.server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  return sockets;
}

/** How long a stop waits for the store and backends to close, after the requests are done. */
const CLOSE_WAIT_MS = 1000;

/**
 * The stop on a signal: background work ends at once, requests in flight get the grace period
 * (stop_grace_seconds) and are then cut off, the store and backends get CLOSE_WAIT_MS to close, and
 * whatever else happens the process is gone shortly after the grace period. A second signal is ignored.
 */
function stopper(
  config: EspmConfig,
  app: ReturnType<typeof buildServer>,
  sockets: Set<Socket>,
  work: { background(): void; seal(): Promise<void>; close(): Array<Promise<unknown>> },
): (signal: string) => void {
  let stopping = false;
  return (signal) => {
    if (stopping) return;
    stopping = true;
    const graceMs = config.server.stop_grace_seconds * 1000;
    app.log.info({ signal, graceMs }, "stopping: finishing in-flight requests");
    work.background();
    // Requests still running after the grace period (a slow client) are cut off: a stop never waits on a client.
    const cutOff = setTimeout(() => {
      app.log.warn({ connections: sockets.size }, "closing the connections still open after the grace period");
      app.server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
    }, graceMs);
    const finish = (code: number) => {
      clearTimeout(cutOff);
      // Closing gets a moment, never more: a stalled database (a pool waits for its busy clients),
      // CA or file system must not hold the process past its grace.
      const closed = Promise.allSettled(work.close());
      void Promise.race([closed, new Promise((r) => setTimeout(r, CLOSE_WAIT_MS))]).then(() => process.exit(code));
    };
    setTimeout(() => {
      app.log.warn("stopped with connections still open");
      finish(0);
    }, graceMs + 2000).unref();
    app
      .close()
      .then(async () => {
        app.log.info("stopped");
        await work.seal().catch((err: Error) => app.log.warn({ err: err.message }, "could not record the clean stop"));
        finish(0);
      })
      .catch((err: Error) => {
        app.log.error({ err: err.message }, "unclean stop");
        finish(1);
      });
  };
}

type AgentLog = ReturnType<typeof buildServer>["log"];

/**
 * Holds espm's registrations against the certname policy as it is now (at start, and each time
 * Puppet Server's names are relearned): publishes those names for `espm enc`, keeps the rows the
 * policy refuses out of the SQLite export (so `espm enc` passes them to the fallback ENC), and
 * names those rows in the log and in health, so the operator sees and deletes them.
 *
 * It reads the live names alone; the SQLite export changes only where the refusals changed, unless
 * what it holds is not known (EncExport.review).
 */
async function reviewRegistrations(ctx: AgentContext, log: AgentLog): Promise<void> {
  const names = ctx.policy.names();
  if (names) ctx.export.writeServerNames(names);
  const refusedOf = (live: string[]) =>
    live.flatMap((name) => {
      const refusal = ctx.policy.refusal(name);
      return refusal && !refusal.unknown ? [{ name, rule: refusal.rule }] : [];
    });
  const encExport = ctx.export instanceof EncExport ? ctx.export : undefined;
  // In a transaction: no create, update or delete commits (and writes its node's file) between the
  // read of the live names and the export's change.
  const { refused, rebuilt } = await ctx.store.transaction(async (tx) => {
    const refused = refusedOf(await tx.liveNodeNames());
    const outside = refused.map((r) => r.name);
    const exported = await encExport?.review(tx, outside);
    ctx.outsidePolicy = outside;
    return { refused, rebuilt: exported?.rebuilt };
  });
  if (rebuilt) log.info({ dir: encExport!.dir }, "checked the export espm enc reads against every live node");
  if (refused.length)
    log.warn(
      { registrations: refused },
      "registrations outside the certname policy: espm enc does not classify them and they cannot be changed or signed; delete them (a delete revokes their certificates) or widen [certnames] allow[]",
    );
}

/**
 * Learns Puppet Server's names now and then every `refreshMs` (every few seconds until the server's
 * own names are known: until then the policy refuses every name with 503).
 */
function learnServerNames(
  source: ServerNameSource,
  policy: CertnamePolicy,
  refreshMs: number,
  log: AgentLog,
  learned: () => Promise<void>,
): { first: Promise<void>; stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let known = false;
  const refresh = async () => {
    const problems: string[] = [];
    try {
      policy.learn({ server: await source.serverNames() });
      known = true;
    } catch (err) {
      problems.push(`server certificate: ${(err as Error).message}`);
    }
    try {
      policy.learn({ altNamed: await source.altNamed() });
    } catch (err) {
      problems.push(`certificate list: ${(err as Error).message}`);
    }
    policy.noteProblem(problems.length ? problems.join("; ") : undefined);
    if (problems.length) log.error({ problems }, "could not learn Puppet Server's names for the certname policy");
    else log.info({ policy: policy.describe().detail }, "learned Puppet Server's names");
    await learned().catch((err: Error) =>
      log.error({ err: err.message }, "could not review espm's registrations against the certname policy"),
    );
    if (!stopped) timer = setTimeout(() => void refresh(), known ? refreshMs : NAMES_RETRY_MS).unref();
  };
  const first = refresh();
  return {
    first,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
