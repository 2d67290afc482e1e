/**
 * `espm -c espm.ini`: the long-running agent. Foreground, JSON log lines on stdout, a clean stop on
 * SIGTERM/SIGINT (fastify lets in-flight requests finish), and SIGHUP reloads groups.yaml.
 */
import { readFileSync } from "node:fs";
import type { Group } from "../sdk/protocol";
import type { CertificateAuthority, ClassDiscovery } from "./ca";
import { loadConfig, type EspmConfig } from "./config";
import type { AgentContext } from "./context";
import { syncExport } from "./enc-export";
import { loadGroups } from "./groups";
import { Idempotency } from "./idempotency";
import { buildServer } from "./server";
import { ReportReader } from "./reports";
import { Store } from "./store";
import { VERSION } from "./version";

export interface Backends {
  ca?: CertificateAuthority;
  classes?: ClassDiscovery;
}

function readSecret(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (err) {
    throw new Error(`cannot read the ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

export async function runAgent(configFile: string, makeBackends: (config: EspmConfig) => Backends): Promise<void> {
  const config = loadConfig(configFile);
  const psk = readSecret(config.server.psk_file, "PSK file");
  if (psk.length < 32) throw new Error(`the PSK in ${config.server.psk_file} is shorter than 32 characters; make a new one with espm-setup`);
  const tls = { key: readSecret(config.server.key, "TLS key"), cert: readSecret(config.server.cert, "TLS certificate") };

  let groups: Map<string, Group> = loadGroups(config.classifier.groups);
  const store = new Store(config.store.database);
  syncExport(config.store.enc_export, store.liveNodes());
  const ctx: AgentContext = {
    config,
    store,
    idempotency: new Idempotency(store),
    groups: () => groups,
    version: VERSION,
    reports: config.puppetserver?.reportdir ? new ReportReader(config.puppetserver.reportdir) : undefined,
    ...makeBackends(config),
  };
  const app = buildServer(ctx, { psk, tls });

  process.on("SIGHUP", () => {
    try {
      groups = loadGroups(config.classifier.groups);
      app.log.info({ groups: groups.size, file: config.classifier.groups }, "reloaded groups");
    } catch (err) {
      app.log.error({ err: (err as Error).message }, "kept the previous groups: the new groups file is not valid");
    }
  });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    app.log.info({ signal }, "stopping: finishing in-flight requests");
    app
      .close()
      .then(() => {
        store.close();
        app.log.info("stopped");
        process.exit(0);
      })
      .catch((err: Error) => {
        app.log.error({ err: err.message }, "unclean stop");
        process.exit(1);
      });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));

  await app.listen({ host: config.server.host, port: config.server.port });
  app.log.info({ version: VERSION, host: config.server.host, port: config.server.port, ca: ctx.ca ? "puppetserver" : "not configured" }, "espm ready");
}
