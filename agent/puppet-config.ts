/**
 * `espm puppet-config`: the Puppet Server changes an operator makes for espm, printed for the
 * paths of this installation. espm's client certificate must be named `espm` (its CN), which the
 * auth.conf rules below allow; nothing else is granted (no catalogs, no node data).
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { loadConfig } from "./config";

export function printPuppetConfig(configFile: string, authConfFile?: string, espmBin = process.argv[1] ?? "/usr/local/bin/espm"): string {
  const config = loadConfig(configFile);
  const ini = resolve(configFile);
  const rewritten = authConfFile
    ? `\n# ${authConfFile} with the changes of step 2 made (review it, then put it in place):\n${authConfForEspm(readFileSync(authConfFile, "utf8"))}`
    : "";
  return `# 1. puppet.conf on the Puppet server, section [server] (Puppet Server runs espm enc as its own user;
#    that user needs read access to ${ini}, ${config.classifier.groups} and ${config.store.enc_export}):
[server]
node_terminus = exec
external_nodes = ${resolve(espmBin)} enc -c ${ini}

# 2. auth.conf (/etc/puppet/puppetserver/conf.d/auth.conf on Debian). The first matching rule wins,
#    so add "espm" to the existing rules instead of appending new ones after them:
#    - the rule "puppetlabs cert status" (path ^/puppet-ca/v1/certificate_status/, methods get/put/delete)
#    - the rule "puppetlabs cert statuses" (path /puppet-ca/v1/certificate_statuses)
#    - the rule "puppetlabs csr" is already open to all: espm submits CSRs through it
#    - the rule "puppetlabs clean" (path /puppet-ca/v1/clean, method put)
#    each gets:
#        allow: ["espm", { extensions: { pp_cli_auth: "true" } }]
#    and one new rule before "puppetlabs deny all":
        {
            match-request: { path: "/puppet/v3/environment_classes", type: path, method: get }
            allow: ["espm"]
            sort-order: 500
            name: "espm environment classes"
        },

# 3. reload Puppet Server (systemctl reload puppetserver, or kill -HUP its pid)
${rewritten}`;
}

const ESPM_CLASSES_RULE = `
        {
            match-request: { path: "/puppet/v3/environment_classes", type: path, method: get }
            allow: ["espm"]
            sort-order: 500
            name: "espm environment classes"
        },`;

/**
 * Debian's (and Puppet's stock) auth.conf with espm allowed on exactly the CA endpoints it uses and
 * on environment_classes. espm goes into the existing rules, because the first matching rule wins.
 */
export function authConfForEspm(original: string): string {
  let replaced = 0;
  const granted = original.replace(
    /allow:\s*\{\s*extensions:\s*\{\s*pp_cli_auth:\s*"true"\s*\}\s*\}(\s*sort-order:\s*\d+\s*name:\s*"puppetlabs (?:cert status|cert statuses|cert clean)")/g,
    (_match, rest: string) => {
      replaced++;
      return `allow: ["espm", { extensions: { pp_cli_auth: "true" } }]${rest}`;
    },
  );
  if (replaced !== 3 || !/rules:\s*\[/.test(granted)) {
    throw new Error("this auth.conf does not have Puppet's stock CA rules (cert status, cert statuses, cert clean); add espm to them by hand as `espm puppet-config` describes");
  }
  return granted.replace(/rules:\s*\[/, (m) => `${m}${ESPM_CLASSES_RULE}`);
}
