/**
 * `espm puppet-config`: the Puppet Server changes an operator makes for espm, printed for the
 * paths of this installation. espm's client certificate must be named `espm` (its CN), which the
 * auth.conf rules below allow; nothing else is granted (no catalogs, no node data, no /clean).
 *
 * Defence in depth: espm's certname policy is enforced a second time by Puppet Server itself. espm
 * may use the CA's per-certname endpoints only on paths whose certname matches the operator's
 * patterns and is none of Puppet's own names, so even a compromised espm cannot get `puppet` signed.
 */
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import {
  chownSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { patternRegex, RESERVED_CERTNAMES } from "../ca/certname-policy";
import { loadConfig, type EspmConfig } from "../config/config";
import { signingMarksDir } from "../autosign/signing-marks";
import { groupId } from "../enc/export";

const execFileAsync = promisify(execFile);

/** The first line of the autosign wrapper: espm rewrites only a file that starts with it. */
const WRAPPER_MARK = "# espm autosign wrapper, written by espm puppet-config";

export interface PuppetConfigOptions {
  /** auth.conf to print with espm's rules added... */
  authConf?: string;
  /** ...or to write, with them, to this new file for review. */
  writeTo?: string;
  /** espm's executable (default: this one). */
  espmBin?: string;
  /** Where to write the autosign wrapper (default: espm-autosign beside espm.ini). */
  autosignWrapper?: string;
  /** Also the rule for Puppet 8's bulk sign (see espmAuthRules). */
  bulkSign?: boolean;
}

/**
 * Puppet Server takes `autosign` as the path of one executable, run with the certname as its only
 * argument: a command line with arguments would be read as a file name, and a file Puppet Server's
 * user cannot execute is read as an allowlist. So espm writes a wrapper: root:<Puppet Server's
 * group>, mode 0750, that runs `espm autosign -c <this espm.ini>` with node's own path (Puppet
 * Server's PATH may not have node). Returns what it did.
 */
export function writeAutosignWrapper(config: EspmConfig, ini: string, espmBin: string, wrapper: string): string {
  if (!config.autosign) throw new Error(`cannot write the autosign wrapper: ${ini} has no [autosign]`);
  const marks = signingMarksDir(config.autosign.socket);
  for (const path of [process.execPath, espmBin, ini, marks]) {
    if (path.includes("'")) throw new Error(`cannot write the autosign wrapper: the path ${path} has a single quote`);
  }
  const text = `#!/bin/sh
${WRAPPER_MARK}. Puppet Server runs it with the certname as its
# one argument and the CSR on stdin; exit 0 signs, so anything else is a refusal.
[ "$#" -eq 1 ] || { echo "espm-autosign: expected exactly one certname, got $#" >&2; exit 1; }
# A CSR espm submitted itself, which it signs through the CA API: refused here, without starting espm.
[ -e '${marks}/'"$1" ] && { echo "espm-autosign: espm signs $1 itself"; exit 1; }
exec '${process.execPath}' '${espmBin}' autosign -c '${ini}' -- "$1"
`;
  if (existsSync(wrapper)) {
    const current = readFileSync(wrapper, "utf8");
    if (current === text) return `${wrapper} is already in place`;
    if (!current.startsWith(`#!/bin/sh\n${WRAPPER_MARK}`))
      throw new Error(
        `${wrapper} exists and was not written by espm puppet-config; remove it or choose --autosign-wrapper`,
      );
  }
  const temporary = join(dirname(wrapper), `.${Date.now()}.espm-autosign`);
  writeFileSync(temporary, text, { mode: 0o750, flag: "wx" });
  const group = config.store.export_group;
  if (group && process.getuid?.() === 0) chownSync(temporary, 0, groupId(group));
  renameSync(temporary, wrapper);
  return `wrote ${wrapper} (mode 0750${group && process.getuid?.() === 0 ? `, root:${group}` : ""})`;
}

export interface CertnameRules {
  patterns: readonly string[];
  allowAny: boolean;
  deny: readonly string[];
}

/**
 * The Java regex (as auth.conf's `type: regex` reads it) for the CA path through which espm signs,
 * revokes and deletes: certificate_status of allowed names only. (certificate_request stays under
 * the stock "puppetlabs csr" rule, which lets anyone submit and read CSRs: a rule for espm there
 * would shadow it and lock agents out of submitting their own, and would limit nothing.)
 */
export function certnamePathRegex(rules: CertnameRules): string {
  const never = [...RESERVED_CERTNAMES, ...rules.deny].map((n) => n.replaceAll(".", "\\."));
  const allowed = rules.allowAny ? "[a-z0-9._-]+" : `(?:${rules.patterns.map(patternRegex).join("|")})`;
  return `^/puppet-ca/v1/certificate_status/(?!(?:${never.join("|")})$)${allowed}$`;
}

/**
 * espm's own auth.conf rules, placed before the stock ones (sort-order 400: the first matching rule
 * wins). With `bulkSign`, also Puppet 8's POST /puppet-ca/v1/sign for espm: matched exactly, as a
 * regex, because a `type: path` rule is a prefix and would take in /puppet-ca/v1/sign/all too (the
 * stock "puppetlabs cert sign" rule does: joining it would let espm sign every pending request).
 * The names to sign travel in the body there, where auth.conf cannot check them against the
 * certname patterns: Puppet Server's second check of espm's policy is lost for signing.
 */
export function espmAuthRules(rules: CertnameRules, o: { bulkSign?: boolean } = {}): string {
  // HOCON strings take a backslash as an escape: double each one of the regex.
  const path = certnamePathRegex(rules).replaceAll("\\", "\\\\");
  const bulk = o.bulkSign
    ? `
        {
            # espm signs its own requests in batches through Puppet 8's bulk sign: this path exactly,
            # never /puppet-ca/v1/sign/all. The names are in the body, so auth.conf cannot limit them.
            match-request: { path: "^/puppet-ca/v1/sign$", type: regex, method: post }
            allow: ["espm"]
            sort-order: 400
            name: "espm bulk sign"
        },`
    : "";
  return `${bulk}
        {
            # espm signs, revokes and deletes certificates only of the names its certname policy allows;
            # the CA CLI (pp_cli_auth) keeps the access the stock "puppetlabs cert status" rule gives it
            match-request: { path: "${path}", type: regex, method: [get, put, delete] }
            allow: ["espm", { extensions: { pp_cli_auth: "true" } }]
            sort-order: 400
            name: "espm certificates"
        },
        {
            # espm reads the certificate list to learn compile masters' dns_alt_names (never signs through it):
            # its own path exactly, so the CA CLI's certificate_statuses/any_key stays under the stock rule
            match-request: { path: "^/puppet-ca/v1/certificate_statuses/any$", type: regex, method: get }
            allow: ["espm"]
            sort-order: 400
            name: "espm certificate list"
        },
        {
            match-request: { path: "/puppet/v3/environment_classes", type: path, method: get }
            allow: ["espm"]
            sort-order: 500
            name: "espm environment classes"
        },`;
}

/**
 * The puppet.conf and auth.conf changes, printed. With `authConf`, also that file with espm's rules
 * added: printed, or written to `writeTo` (a new file, never an existing one) for review. With an
 * [autosign] section in espm.ini, also writes the autosign wrapper and prints its setting.
 */
export function printPuppetConfig(configFile: string, options: PuppetConfigOptions = {}): string {
  const { authConf: authConfFile, writeTo } = options;
  const espmBin = resolve(options.espmBin ?? process.argv[1] ?? "/usr/local/bin/espm");
  const config = loadConfig(configFile);
  // The bulk sign rule goes with espm.ini's bulk_sign: espm uses the endpoint only when set.
  const bulkSign = options.bulkSign === true || config.puppetserver?.bulk_sign === true;
  const ini = resolve(configFile);
  const rules = { patterns: config.certnames.allow, allowAny: config.certnames.allow_any, deny: config.certnames.deny };
  let rewritten = "";
  if (authConfFile) {
    const text = authConfForEspm(readFileSync(authConfFile, "utf8"), rules, { bulkSign });
    if (writeTo) {
      writeFileSync(writeTo, text, { mode: 0o644, flag: "wx" });
      rewritten = `\n# ${authConfFile} with espm's rules added is in ${writeTo}: review it (diff ${authConfFile} ${writeTo}), then put it in place.\n`;
    } else {
      rewritten = `\n# ${authConfFile} with espm's rules added (review it, then put it in place):\n${text}`;
    }
  }
  let autosign = "";
  if (config.autosign) {
    const wrapper = resolve(options.autosignWrapper ?? join(dirname(ini), "espm-autosign"));
    const done = writeAutosignWrapper(config, ini, espmBin, wrapper);
    autosign = `autosign = ${wrapper}
#    (${done}. Puppet Server's user runs it; it reads ${ini} and
#    ${config.autosign.secret_file}, and asks espm on ${config.autosign.socket}: all three must be
#    readable by Puppet Server's user through the export group${config.store.export_group ? ` (${config.store.export_group})` : ""}, the secret by no one else.
#    Remove any other "autosign =" line: the last one wins, and "autosign = false" disables it.)
`;
  }
  const reportdir = config.puppetserver?.reportdir;
  const reportProcessors = [reportdir && "store", config.puppetdb && "puppetdb"].filter(Boolean).join(",");
  const reports = !reportProcessors
    ? ""
    : `reports = ${reportProcessors}
#    (PuppetFirstRun reads ${reportdir ? `the stored reports from ${reportdir}; espm's user reads them through an ACL (setfacl -R -m u:espm:rX -m d:u:espm:rX ${reportdir})` : "the runs from PuppetDB's reports endpoint"})
`;
  const puppetdb = config.puppetdb ? puppetDbSteps(config.puppetdb) : "";
  return `# 1. puppet.conf on the Puppet server, section [server] (Puppet Server runs espm enc as its own user;
#    that user needs read access to ${ini} and ${config.store.enc_export}):
[server]
node_terminus = exec
external_nodes = ${espmBin} enc -c ${ini}
${autosign}${reports}
# 2. auth.conf (/etc/puppet/puppetserver/conf.d/auth.conf on Debian): add these rules at the top of
#    "rules: [". They come before the stock rules (sort-order 400), allow espm the CA's certificate
#    paths only for the names its certname policy allows, and leave every stock rule as it is
#    (espm needs neither "puppetlabs cert status" for other names nor "puppetlabs cert clean"):
${espmAuthRules(rules, { bulkSign })}
${
  bulkSign
    ? `#    (bulk sign: the "espm bulk sign" rule lets espm sign any pending request on Puppet 8, since
#    the names travel in the body; espm sends only names its own policy allowed. espm uses it only
#    with bulk_sign = true in espm.ini's [puppetserver]${config.puppetserver?.bulk_sign ? " (set)" : " (NOT set: add it, or espm keeps signing one by one)"};
#    without both, espm signs one by one on the certname-limited path above and never tries it.)
`
    : ""
}
# 3. reload Puppet Server (systemctl reload puppetserver, or kill -HUP its pid)
${puppetdb}${rewritten}`;
}

/**
 * What PuppetDB needs: Puppet Server sending it facts, catalogs and reports (Debian's
 * puppet-terminus-puppetdb), and espm's client certificate in its allowlist.
 */
function puppetDbSteps(settings: NonNullable<EspmConfig["puppetdb"]>): string {
  let cn = "espm";
  try {
    cn = /(?:^|\n)CN=([^\n]+)/.exec(new X509Certificate(readFileSync(settings.cert)).subject)?.[1] ?? cn;
  } catch {
    // not readable here: the allowlist line below uses espm's usual name
  }
  return `
# 4. PuppetDB (${settings.url}). On the Puppet server, with Debian's puppet-terminus-puppetdb installed:
#    puppet.conf [server] also has (with the reports line above)
storeconfigs = true
storeconfigs_backend = puppetdb
#    /etc/puppet/puppetdb.conf:
[main]
server_urls = ${settings.url}
#    /etc/puppet/routes.yaml (facts go to PuppetDB, with a local cache):
---
server:
  facts:
    terminus: puppetdb
    cache: yaml
#    On PuppetDB: add espm's certificate name to the file that certificate-allowlist names
#    ([puppetdb] in /etc/puppetdb/conf.d/config.ini; create it with the Puppet server's certname
#    too), then restart PuppetDB:
${cn}
#    The allowlist is all or nothing: it lets espm submit ANY command (replace facts, store
#    reports, deactivate any node) and run any query, not only the deactivation of espm's own nodes
#    and the lookups espm makes. Keep espm's key as safe as the Puppet server's.
`;
}

/**
 * An auth.conf with espm's rules added at the top of its rule list; every other rule unchanged. An
 * auth.conf that already has them, as this espm.ini gives them, comes back as it is (the guide runs
 * again without a change); a rule of the site's named like one of espm's is refused, since Puppet
 * Server refuses two rules of one name and a reload that meets them shuts it down.
 */
export function authConfForEspm(original: string, rules: CertnameRules, o: { bulkSign?: boolean } = {}): string {
  const added = espmAuthRules(rules, o);
  if (original.includes(`rules: [${added}`)) return original;
  const names = (text: string) => new Set([...text.matchAll(/\bname\s*[:=]\s*"([^"]*)"/g)].map((m) => m[1]!));
  const existing = names(original);
  const clashes = [...names(added)].filter((n) => existing.has(n));
  if (clashes.length)
    throw new Error(
      `this auth.conf already has a rule named ${clashes.map((n) => JSON.stringify(n)).join(", ")} with other content than espm's; ` +
        `Puppet Server refuses two rules of one name and stops on the reload. Rename the site's rule${clashes.length > 1 ? "s" : ""} ` +
        "(or, if it is espm's from another espm.ini, remove it), then run this again",
    );
  return withRulesFirst(original, added);
}

/**
 * An auth.conf with `rules` (HOCON rule objects, as text) put first in its rule list, the rest
 * unchanged; the site's own rules and espm's are both added this way.
 */
export function withRulesFirst(authConf: string, rules: string): string {
  if (!/rules:\s*\[/.test(authConf))
    throw new Error(
      "this auth.conf has no 'rules: [' list; add espm's rules by hand as `espm puppet-config` prints them",
    );
  return authConf.replace(/rules:\s*\[/, (m) => `${m}${rules}`);
}

/**
 * Reads `file` the way Puppet Server will on its next reload: Trapperkeeper's HOCON loader, then
 * trapperkeeper-authorization's own validation and compilation of the rules (unique names, match
 * requests, Java regexes, allow and deny), run from Puppet Server's jar. Resolves when Puppet Server
 * would take the file; rejects with its own complaint when it would refuse it (and stop).
 */
export async function checkAuthConf(file: string, o: { java?: string; jar?: string } = {}): Promise<void> {
  const java = o.java ?? "java";
  const jar = o.jar ?? "/usr/share/puppetserver/puppetserver.jar";
  if (!existsSync(jar))
    throw new Error(
      `cannot check ${file}: Puppet Server's jar ${jar} does not exist (the AIO packages have /opt/puppetlabs/server/apps/puppetserver/puppet-server-release.jar; give it with --puppetserver-jar)`,
    );
  const check = `(require '[puppetlabs.trapperkeeper.config :as config]
         '[puppetlabs.trapperkeeper.services.authorization.authorization-core :as auth])
(-> (config/load-config (System/getProperty "espm.auth-conf")) :authorization auth/validate-auth-config! :rules auth/transform-config)`;
  // Trapperkeeper picks its parser by the file's extension, as Puppet Server does in conf.d: a copy
  // named auth.conf is read as HOCON whatever the file under review is called.
  const dir = mkdtempSync(join(tmpdir(), "espm-auth-conf-"));
  const copy = join(dir, "auth.conf");
  try {
    copyFileSync(file, copy);
    // Short-lived: the JIT's first tier only, as for a CLI (about 6 s instead of 10).
    const argv = ["-XX:TieredStopAtLevel=1", `-Despm.auth-conf=${copy}`, "-cp", jar, "clojure.main", "-e", check];
    await execFileAsync(java, argv, { timeout: 120_000 });
  } catch (err) {
    const e = err as { stderr?: string; code?: string | number; message: string };
    if (e.code === "ENOENT")
      throw new Error(`cannot check ${file}: no ${java} here (give Puppet Server's java with --java)`);
    // Clojure prints "Execution error (Class) at ...", then the message, then where the report is.
    const lines = (e.stderr ?? e.message)
      .split("\n")
      .filter((l) => l.trim() && !/^\s+at |^Full report at|\.edn$/.test(l));
    const reason = (lines.slice(1, 6).join("\n").trim() || lines.join("\n").trim()).replaceAll(copy, file);
    throw new Error(`Puppet Server would refuse ${file}, and stop on a reload:\n${reason}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
