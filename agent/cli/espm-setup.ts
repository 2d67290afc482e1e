#!/usr/bin/env node
/**
 * espm-setup: writes espm's PSK, TLS certificate and key, and espm.ini, then prints what to paste
 * into a Pulumi stack. It never overwrites: if any file it would write exists, it stops before
 * writing anything and names the file.
 */
import { randomBytes } from "node:crypto";
import { chownSync, existsSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { stringify } from "ini";
import { configProblems } from "../config/config";
import { DEFAULT_CONFIG_DIR, DEFAULT_PORT, DEFAULT_STATE_DIR } from "../config/file";
import { groupId } from "../enc/export";
import { certificateFingerprint } from "espm-sdk/x509";
import { createSelfSignedCertificate } from "../http/self-signed";

const USAGE = `usage: espm-setup [options]
  -d, --config-dir DIR     where espm.ini, the PSK file and groups.yaml go (default ${DEFAULT_CONFIG_DIR})
      --state-dir DIR      where espm keeps its store and the ENC export (default ${DEFAULT_STATE_DIR},
                           systemd's StateDirectory=espm; espm creates what it needs there)
  -c, --cert-dir DIR       where the TLS certificate and key go (default CONFIG_DIR/certs)
  -p, --port PORT          HTTPS port (default ${DEFAULT_PORT})
      --host NAME          a name or IP clients use to reach espm; repeat for more (default: this host's name)
      --listen ADDRESS     address to listen on (default 0.0.0.0)
      --puppetserver-url URL         Puppet Server to use as CA and class source (e.g. https://puppet:8140)
      --puppetserver-ca FILE         its CA bundle
      --puppetserver-cert FILE       espm's client certificate at Puppet Server (CN espm)
      --puppetserver-key FILE        its key
      --puppetserver-bulk-sign       sign concurrent requests in one call through Puppet 8's bulk sign
                                     (with the rule espm puppet-config --bulk-sign prints); without
                                     it espm signs one by one and never tries that endpoint
      --puppetserver-reportdir DIR   where Puppet Server stores reports (reports = store), read for
                                     PuppetFirstRun (default /var/lib/puppetserver/reports, unless
                                     --puppetdb-url is given: then runs are read from PuppetDB)
      --puppetdb-url URL             PuppetDB (e.g. https://puppetdb:8081): deletes deactivate the
                                     node there, and creates refuse names it knows as active; needs
                                     the --puppetserver-* options, whose CA bundle, certificate and
                                     key espm uses for PuppetDB too, unless given:
      --puppetdb-ca FILE             PuppetDB's CA bundle
      --puppetdb-cert FILE           espm's client certificate at PuppetDB (its allowlist names its CN)
      --puppetdb-key FILE            its key
      --fallback-enc FILE      ENC to run for nodes espm did not create
      --autosign-fallback FILE the site's autosign policy executable, for CSRs of names espm never enrolled
      --store-url URL          keep the store in PostgreSQL (postgres://USER@HOST:PORT/DATABASE)
                               instead of SQLite, for several espm processes and compile masters
      --store-password-file FILE     the file with that role's password (never in espm.ini)
      --enc-role ROLE          the read-only role espm enc uses on compile masters (granted SELECT
                               on nodes and groups only)
      --certname-pattern PATTERN     a certname pattern espm may sign and classify, such as
                                     '*.nodes.example.com' ('*' is exactly one whole label);
                                     repeat for more. At least one is required, or:
      --allow-any-certname           allow any certname outside Puppet's own (labs only)
      --deny-certname NAME           a name espm must never sign, besides Puppet's own; repeatable
      --export-group GROUP     the group that may read the ENC export, the autosign socket and
                               secret: espm's own group, with Puppet Server's user in it (default
                               espm when that group exists). Never Puppet Server's group: espm's
                               user would then read the CA's key
  -h, --help`;

/** 48 URL-safe characters: 36 random bytes in base64url, 288 bits. */
export function generatePsk(): string {
  return randomBytes(36).toString("base64url");
}

function hasGroup(name: string): boolean {
  try {
    groupId(name);
    return true;
  } catch {
    return false;
  }
}

/** espm.ini's keys as espm-setup's options name them, for a problem the config schema finds. */
const OPTION_OF: Readonly<Record<string, string>> = {
  "server.port": "--port",
  "server.host": "--listen",
  "certnames.allow": "--certname-pattern",
  "certnames.deny": "--deny-certname",
  "store.url": "--store-url",
  "store.enc_role": "--enc-role",
  "store.export_group": "--export-group",
  "puppetserver.url": "--puppetserver-url",
  "puppetdb.url": "--puppetdb-url",
};

/** The value at `section.key` of the ini, as text for a message: a URL's password never shown. */
function valueAt(ini: Record<string, Record<string, unknown>>, key: string): string {
  const [section, name] = key.split(".");
  const value = ini[section ?? ""]?.[name ?? ""];
  const text = Array.isArray(value) ? value.join(" ") : String(value ?? "");
  return text.replace(/^(\w+:\/\/[^:/@]*:)[^@/]*@/, "$1***@");
}

function fail(message: string): never {
  process.stderr.write(`espm-setup: ${message}\n`);
  process.exit(1);
}

function main(argv: string[]): void {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        "config-dir": { type: "string", short: "d", default: DEFAULT_CONFIG_DIR },
        "state-dir": { type: "string", default: DEFAULT_STATE_DIR },
        "cert-dir": { type: "string", short: "c" },
        port: { type: "string", short: "p", default: String(DEFAULT_PORT) },
        host: { type: "string", multiple: true },
        listen: { type: "string", default: "0.0.0.0" },
        "puppetserver-url": { type: "string" },
        "puppetserver-ca": { type: "string" },
        "puppetserver-cert": { type: "string" },
        "puppetserver-key": { type: "string" },
        "puppetserver-reportdir": { type: "string" },
        "puppetserver-bulk-sign": { type: "boolean" },
        "puppetdb-url": { type: "string" },
        "puppetdb-ca": { type: "string" },
        "puppetdb-cert": { type: "string" },
        "puppetdb-key": { type: "string" },
        "fallback-enc": { type: "string" },
        "autosign-fallback": { type: "string" },
        "store-url": { type: "string" },
        "store-password-file": { type: "string" },
        "enc-role": { type: "string" },
        "certname-pattern": { type: "string", multiple: true },
        "allow-any-certname": { type: "boolean" },
        "deny-certname": { type: "string", multiple: true },
        "export-group": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`);
  }
  const o = parsed.values;
  if (o.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const configDir = resolve(o["config-dir"]);
  const stateDir = resolve(o["state-dir"]);
  const certDir = resolve(o["cert-dir"] ?? join(configDir, "certs"));
  const hosts = o.host?.length ? o.host : [hostname()];
  const puppet = [o["puppetserver-url"], o["puppetserver-ca"], o["puppetserver-cert"], o["puppetserver-key"]];
  if (puppet.some((v) => v !== undefined) && puppet.some((v) => v === undefined)) {
    fail("give all of --puppetserver-url, --puppetserver-ca, --puppetserver-cert and --puppetserver-key, or none");
  }
  const puppetdbOnly = [o["puppetdb-ca"], o["puppetdb-cert"], o["puppetdb-key"]].some((v) => v !== undefined);
  if (puppetdbOnly && !o["puppetdb-url"])
    fail("--puppetdb-ca, --puppetdb-cert and --puppetdb-key go with --puppetdb-url");
  if (o["puppetdb-url"] && !o["puppetserver-url"])
    fail("--puppetdb-url needs the --puppetserver-* options: espm revokes at the CA before it deactivates in PuppetDB");
  const storeUrl = o["store-url"];
  if (storeUrl === undefined && (o["store-password-file"] || o["enc-role"]))
    fail("--store-password-file and --enc-role go with --store-url");

  const files = {
    config: join(configDir, "espm.ini"),
    psk: join(configDir, "psk"),
    autosignSecret: join(configDir, "autosign.secret"),
    cert: join(certDir, "espm.crt"),
    key: join(certDir, "espm.key"),
  };
  const patterns = o["certname-pattern"] ?? [];
  const exportGroup = o["export-group"] ?? (hasGroup("espm") ? "espm" : undefined);
  const ini: Record<string, Record<string, string | number | string[]>> = {
    server: { host: o.listen, port: o.port, cert: files.cert, key: files.key, psk_file: files.psk },
    store: {
      ...(storeUrl
        ? {
            url: storeUrl,
            ...(o["store-password-file"] ? { password_file: resolve(o["store-password-file"]) } : {}),
            ...(o["enc-role"] ? { enc_role: o["enc-role"] } : {}),
          }
        : { database: join(stateDir, "espm.db") }),
      enc_export: join(stateDir, "enc-nodes"),
      ...(exportGroup ? { export_group: exportGroup } : {}),
    },
    certnames: {
      allow: patterns,
      ...(o["deny-certname"]?.length ? { deny: o["deny-certname"] } : {}),
      allow_any: o["allow-any-certname"] ? "true" : "false",
    },
    classifier: {
      groups: join(configDir, "groups.yaml"),
      default_environment: "production",
      ...(o["fallback-enc"] ? { fallback_enc: resolve(o["fallback-enc"]) } : {}),
    },
    autosign: {
      socket: join(stateDir, "autosign.sock"),
      secret_file: files.autosignSecret,
      ...(o["autosign-fallback"] ? { fallback: resolve(o["autosign-fallback"]) } : {}),
    },
  };
  if (o["puppetserver-url"]) {
    ini.puppetserver = {
      url: o["puppetserver-url"],
      ca_bundle: resolve(o["puppetserver-ca"]!),
      cert: resolve(o["puppetserver-cert"]!),
      key: resolve(o["puppetserver-key"]!),
      ...(o["puppetserver-bulk-sign"] ? { bulk_sign: "true" } : {}),
      ...(o["puppetserver-reportdir"] || !o["puppetdb-url"]
        ? { reportdir: resolve(o["puppetserver-reportdir"] ?? "/var/lib/puppetserver/reports") }
        : {}),
    };
  }
  if (o["puppetdb-url"]) {
    ini.puppetdb = {
      url: o["puppetdb-url"],
      ca_bundle: resolve(o["puppetdb-ca"] ?? o["puppetserver-ca"]!),
      cert: resolve(o["puppetdb-cert"] ?? o["puppetserver-cert"]!),
      key: resolve(o["puppetdb-key"] ?? o["puppetserver-key"]!),
    };
  }

  // The rules of espm.ini are the config schema's: what it would refuse to load is never written.
  const problem = configProblems(ini)[0];
  if (problem) {
    const key = problem.key.replace(/\.\d+$/, "");
    fail(`${OPTION_OF[key] ?? key} ${valueAt(ini, key)}: ${problem.message}`);
  }

  for (const dir of new Set([configDir, certDir])) {
    if (!existsSync(dir) || !statSync(dir).isDirectory())
      fail(`the directory ${dir} does not exist; create it first (mkdir -p ${dir})`);
  }
  for (const path of Object.values(files)) {
    if (existsSync(path))
      fail(
        `${path} already exists; espm-setup never overwrites. Remove it yourself to start over, or keep the setup you have.`,
      );
  }

  if (patterns.length === 0 && !o["allow-any-certname"]) {
    fail(
      "say which certnames espm may sign: --certname-pattern '*.nodes.example.com' (repeatable; '*' is one whole label), or --allow-any-certname for a lab",
    );
  }
  if (exportGroup !== undefined && !hasGroup(exportGroup))
    fail(`--export-group ${exportGroup}: no such group in /etc/group`);

  const psk = generatePsk();
  const autosignSecret = generatePsk();
  const tls = createSelfSignedCertificate({
    commonName: hosts[0]!,
    altNames: [...new Set([...hosts, "localhost", "127.0.0.1"])],
  });
  // "wx" fails if the file appeared since the check above; on any failure, remove what this run wrote.
  const written: string[] = [];
  try {
    const write = (path: string, text: string, mode: number) => {
      writeFileSync(path, text, { flag: "wx", mode });
      written.push(path);
    };
    write(files.key, tls.privateKeyPem, 0o600);
    write(files.cert, tls.certificatePem, 0o644);
    write(files.psk, `${psk}\n`, 0o600);
    // Puppet Server's user runs espm autosign, which reads this secret through espm's group; no one else may.
    write(files.autosignSecret, `${autosignSecret}\n`, 0o640);
    if (exportGroup && process.getuid?.() === 0) chownSync(files.autosignSecret, 0, groupId(exportGroup));
    write(
      files.config,
      `; espm configuration, written by espm-setup. It holds no secret: the PSK is in psk_file.\n${stringify(ini)}`,
      0o644,
    );
    const groups = join(configDir, "groups.yaml");
    if (!existsSync(groups))
      write(groups, "# Groups a node can name: classes with parameters, and node parameters.\ngroups: {}\n", 0o644);
  } catch (err) {
    for (const path of written) unlinkSync(path);
    fail(`could not write the setup (nothing was kept): ${(err as Error).message}`);
  }

  const url = `https://${hosts[0]}:${Number(o.port)}`;
  const policy = o["allow-any-certname"]
    ? "ANY certname outside Puppet's own (--allow-any-certname: for labs only)"
    : `certnames matching ${patterns.join(", ")}`;
  const pem = tls.certificatePem.trim();
  process.stdout.write(`espm is set up in ${configDir}.
Start it with: espm -c ${files.config}
espm will sign and classify ${policy}.

PSK (also in ${files.psk}, mode 0600):
${psk}

TLS certificate (${files.cert}), SHA-256 fingerprint ${certificateFingerprint(pem)}:
${pem}

Point a Pulumi stack at it:
pulumi config set espm:url ${url}
pulumi config set --secret espm:psk ${psk}
pulumi config set espm:certificate -- "${pem}"
`);
}

main(process.argv.slice(2));
