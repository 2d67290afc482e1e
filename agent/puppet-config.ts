/**
 * `espm puppet-config`: the Puppet Server changes an operator makes for espm, printed for the
 * paths of this installation. espm's client certificate must be named `espm` (its CN), which the
 * auth.conf rules below allow; nothing else is granted (no catalogs, no node data, no /clean).
 *
 * Defence in depth: espm's certname policy is enforced a second time by Puppet Server itself. espm
 * may use the CA's per-certname endpoints only on paths whose certname matches the operator's
 * patterns and is none of Puppet's own names, so even a compromised espm cannot get `puppet` signed.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { patternRegex, RESERVED_CERTNAMES } from "./certname-policy";
import { loadConfig } from "./config";

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

/** espm's own auth.conf rules, placed before the stock ones (sort-order 400: the first matching rule wins). */
export function espmAuthRules(rules: CertnameRules): string {
  // HOCON strings take a backslash as an escape: double each one of the regex.
  const path = certnamePathRegex(rules).replaceAll("\\", "\\\\");
  return `
        {
            # espm signs, revokes and deletes certificates only of the names its certname policy allows;
            # the CA CLI (pp_cli_auth) keeps the access the stock "puppetlabs cert status" rule gives it
            match-request: { path: "${path}", type: regex, method: [get, put, delete] }
            allow: ["espm", { extensions: { pp_cli_auth: "true" } }]
            sort-order: 400
            name: "espm certificates"
        },
        {
            # espm reads the certificate list to learn compile masters' dns_alt_names (never signs through it)
            match-request: { path: "/puppet-ca/v1/certificate_statuses", type: path, method: get }
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
 * The puppet.conf and auth.conf changes, printed. With `authConfFile`, also that file with espm's
 * rules added: printed, or written to `writeTo` (a new file, never an existing one) for review.
 */
export function printPuppetConfig(
  configFile: string,
  authConfFile?: string,
  espmBin = process.argv[1] ?? "/usr/local/bin/espm",
  writeTo?: string,
): string {
  const config = loadConfig(configFile);
  const ini = resolve(configFile);
  const rules = { patterns: config.certnames.allow, allowAny: config.certnames.allow_any, deny: config.certnames.deny };
  let rewritten = "";
  if (authConfFile) {
    const text = authConfForEspm(readFileSync(authConfFile, "utf8"), rules);
    if (writeTo) {
      writeFileSync(writeTo, text, { mode: 0o644, flag: "wx" });
      rewritten = `\n# ${authConfFile} with espm's rules added is in ${writeTo}: review it (diff ${authConfFile} ${writeTo}), then put it in place.\n`;
    } else {
      rewritten = `\n# ${authConfFile} with espm's rules added (review it, then put it in place):\n${text}`;
    }
  }
  const reports = config.puppetserver?.reportdir
    ? `reports = store
#    (PuppetFirstRun reads the stored reports from ${config.puppetserver.reportdir}; espm's user reads
#    them as a member of Puppet Server's group)
`
    : "";
  return `# 1. puppet.conf on the Puppet server, section [server] (Puppet Server runs espm enc as its own user;
#    that user needs read access to ${ini} and ${config.store.enc_export}):
[server]
node_terminus = exec
external_nodes = ${resolve(espmBin)} enc -c ${ini}
${reports}
# 2. auth.conf (/etc/puppet/puppetserver/conf.d/auth.conf on Debian): add these rules at the top of
#    "rules: [". They come before the stock rules (sort-order 400), allow espm the CA's certificate
#    paths only for the names its certname policy allows, and leave every stock rule as it is
#    (espm needs neither "puppetlabs cert status" for other names nor "puppetlabs cert clean"):
${espmAuthRules(rules)}

# 3. reload Puppet Server (systemctl reload puppetserver, or kill -HUP its pid)
${rewritten}`;
}

/** An auth.conf with espm's rules added at the top of its rule list; every other rule unchanged. */
export function authConfForEspm(original: string, rules: CertnameRules): string {
  if (!/rules:\s*\[/.test(original)) {
    throw new Error(
      "this auth.conf has no 'rules: [' list; add espm's rules by hand as `espm puppet-config` prints them",
    );
  }
  if (original.includes('name: "espm certificates"'))
    throw new Error("this auth.conf already has espm's rules; edit them by hand");
  return original.replace(/rules:\s*\[/, (m) => `${m}${espmAuthRules(rules)}`);
}
