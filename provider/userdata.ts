/**
 * Userdata for an instance's first boot: the bootstrap script (provider/scripts/bootstrap/puppet-bootstrap.sh)
 * with the node's values. In the provider key mode the certificate and key travel inside it; in the
 * instance key mode only a one-time enrollment token does, and the node makes its own key. The CA
 * bundle (public) travels either way, so the agent trusts the right CA from its first connection,
 * or only its SHA-256 (`caFingerprint`): the agent downloads the bundle and refuses it unless it
 * matches, which saves 4 KB of userdata and of state. The CRL does not travel (the agent downloads
 * it), to stay under EC2's 16 KB userdata limit.
 *
 * The bootstrap is the user's too: hooks before and after the agent, external facts, their own
 * script in place of ours (with espm's values as variables of stable names), their own cloud-init
 * config beside ours as a MIME multi-part message, and puppet-agent installed from the distribution
 * when the image has none. When the result is too big it is gzip-compressed, which cloud-init
 * unpacks; past that, rendering refuses, naming the size.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { nameProblem } from "espm-sdk/names";
import { EXTENSION_VALUE_PATTERN, PUPPET_EXTENSIONS } from "espm-sdk/puppet-extensions";

/** EC2 accepts at most 16 KB of userdata, counted before base64 encoding. */
export const USERDATA_LIMIT = 16 * 1024;

/** A part of a cloud-init multi-part message besides espm's script. */
export interface CloudInitPart {
  /** e.g. `text/cloud-config`, `text/x-shellscript`, `text/cloud-boothook`. */
  contentType: string;
  content: string;
  filename?: string;
}

export interface UserDataInput {
  nodeName: string;
  /** The Puppet master's host name or IP address, as the instance reaches it. */
  master: string;
  masterPort?: number;
  environment?: string;
  /** The Puppet CA bundle (PEM), installed as the agent's CA. Give it or `caFingerprint`. */
  caCertificatePem?: string;
  /**
   * The bundle's SHA-256 (hex), as espm's resources give it: the agent downloads the bundle from the
   * master and refuses it unless it matches (Puppet's `ca_fingerprint`, Puppet 6 and later). Used
   * when `caCertificatePem` is missing or empty.
   */
  caFingerprint?: string;
  /** The provider key mode: the certificate espm signed and its key (secret). */
  certificatePem?: string;
  privateKeyPem?: string;
  /** The instance key mode: a PuppetEnrollment's token and the extensions it allows. */
  enrollment?: { token: string; extensions?: Record<string, string> };
  /** Instance key mode: how long the agent waits for its certificate to be signed (default 600 s). */
  maxWaitForCertSeconds?: number;
  /** POSIX sh run first of all (before puppet is looked for): set the hostname, mount a volume… */
  before?: string;
  /** POSIX sh run after a successful first run (agent exit 0 or 2). */
  after?: string;
  /** POSIX sh run after a failed first run; `$ESPM_AGENT_EXIT` and `$ESPM_LOG` say how and where. */
  onFailure?: string;
  /** External facts (facts.d/espm.yaml) for the first catalog. */
  facts?: Record<string, string>;
  /** Your own script in place of espm's call of the bootstrap; see USERDATA_VARIABLES. */
  script?: string;
  /** Your own `#cloud-config` (or other parts), sent with espm's script as a MIME multi-part message. */
  cloudConfig?: string | CloudInitPart[];
  /** `distro`: install puppet-agent from the distribution's packages (apt or dnf) when missing. */
  installAgent?: "distro" | "none";
}

export interface RenderedUserData {
  /** Base64 of the bytes EC2 should get (for `userDataBase64`). */
  base64: string;
  /** espm's shell script (a part of the message when there is a cloud config). */
  script: string;
  /** True when `base64` holds a MIME multi-part message (with `cloudConfig`). */
  multipart: boolean;
  gzipped: boolean;
  /** Size in bytes of what EC2 gets, before base64. */
  bytes: number;
}

/**
 * The variables every rendered script sets before its body, for a `script` of your own. Stable
 * names: part of the package's contract.
 */
export const USERDATA_VARIABLES = {
  ESPM_NODE_NAME: "the node name and certname",
  ESPM_MASTER: "the Puppet master's host name or IP address",
  ESPM_MASTER_PORT: "its port",
  ESPM_ENVIRONMENT: "the node's environment, or empty",
  ESPM_CA_FILE: "the Puppet CA bundle, PEM (empty when only its fingerprint is given)",
  ESPM_CA_FINGERPRINT:
    "the CA bundle's SHA-256 in hex, for the agent to check the bundle it downloads (empty with a bundle)",
  ESPM_CERT_FILE: "provider key mode: the node's certificate, PEM (empty otherwise)",
  ESPM_KEY_FILE: "provider key mode: the node's private key, PEM (empty otherwise)",
  ESPM_TOKEN_FILE: "instance key mode: the one-time enrollment token (empty otherwise)",
  ESPM_BOOTSTRAP: "espm's puppet-bootstrap.sh",
} as const;

/** `espm_bootstrap "$@"` runs espm's bootstrap with every value and option: the default body. */
const DEFAULT_BODY = 'espm_bootstrap "$@"';

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const CA_FINGERPRINT = /^[0-9a-f]{64}$/i;
const FACT_NAME = /^[a-z][a-z0-9_]{0,63}$/;
/** A fact value: printable, no control characters (it is written single-quoted in YAML). */
const FACT_VALUE = /^[^\p{Cc}]{0,1024}$/u;

/** Whether userdata (already base64-decoded and gunzipped) is espm's bootstrap, which carries a node's key. */
export function isEspmBootstrap(userdata: string): boolean {
  return (
    /^# espm first boot for /m.test(userdata) ||
    userdata.includes("ESPM_PRIVATE_KEY") ||
    userdata.includes("ESPM_ENROLLMENT_TOKEN")
  );
}

export function bootstrapScriptPath(): string {
  // dist/provider/userdata.js sits two levels below the package root; userdata.ts, loaded as it is
  // (the unit tests), at the root.
  const script = join("scripts", "bootstrap", "puppet-bootstrap.sh");
  const built = join(__dirname, "..", "..", script);
  return existsSync(built) ? built : join(__dirname, script);
}

function pem(value: string, label: RegExp, what: string, field: string): string {
  const text = value.trim();
  const begin = text.match(/^-----BEGIN ([A-Z ]+)-----/);
  if (!begin || !label.test(begin[1]!) || !text.endsWith(`-----END ${begin[1]}-----`))
    throw new Error(`${field} must be a PEM ${what}`);
  return text;
}

/** A file written by a quoted heredoc: nothing in `text` is expanded; the delimiter must not be a line of it. */
function heredoc(file: string, delimiter: string, text: string, field: string): string {
  if (text.split("\n").some((line) => line === delimiter))
    throw new Error(`${field} must not contain the line ${delimiter}`);
  return `cat > "$d/${file}" <<'${delimiter}'\n${text.replace(/\n$/, "")}\n${delimiter}\n`;
}

/** A value in single quotes for sh (validated values only; a quote is closed, escaped and reopened). */
function quoted(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** The userdata for one node. Throws naming the field for bad values, or the size when too big. */
export function renderUserData(input: UserDataInput): RenderedUserData {
  const problem = nameProblem(input.nodeName);
  if (problem) throw new Error(`nodeName ${problem}`);
  if (!isIP(input.master) && !HOSTNAME.test(input.master))
    throw new Error(`master must be a host name or an IP address, not ${JSON.stringify(input.master)}`);
  const port = input.masterPort ?? 8140;
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`masterPort must be from 1 to 65535, not ${port}`);
  if (input.environment !== undefined && !/^[a-z0-9_]{1,64}$/.test(input.environment))
    throw new Error("environment must be lowercase letters, digits or '_'");
  const installAgent = input.installAgent ?? "none";
  if (installAgent !== "distro" && installAgent !== "none") throw new Error("installAgent must be distro or none");
  const ca = caTrust(input);
  const keyMode = keyModeFiles(input);
  const bootstrap = withoutComments(readFileSync(bootstrapScriptPath(), "utf8"));

  let files = keyMode.files + ca.files;
  files += heredoc("puppet-bootstrap.sh", "ESPM_BOOTSTRAP_SCRIPT", bootstrap.trimEnd(), "the bootstrap");
  const options = [...keyMode.options];
  for (const [field, option, delimiter] of [
    ["before", "--before", "ESPM_HOOK_BEFORE"],
    ["after", "--after", "ESPM_HOOK_AFTER"],
    ["onFailure", "--on-failure", "ESPM_HOOK_ON_FAILURE"],
  ] as const) {
    const fragment = input[field];
    if (fragment === undefined) continue;
    files += heredoc(`${field}.sh`, delimiter, fragment, field);
    options.push(`${option} "$d/${field}.sh"`);
  }
  if (input.facts && Object.keys(input.facts).length) {
    files += heredoc("facts.yaml", "ESPM_FACTS", factsYaml(input.facts), "facts");
    options.push(`--facts "$d/facts.yaml"`);
  }
  if (installAgent === "distro") options.push("--install-agent distro");

  const required = ["ESPM_NODE_NAME", "ESPM_MASTER", ca.required, ...keyMode.required];
  const body = input.script === undefined ? DEFAULT_BODY : checkedTemplate(input.script, required);
  const script = `#!/bin/sh
# espm first boot for ${input.nodeName}: ${keyMode.summary}
# Extra arguments are passed to puppet-bootstrap.sh (e.g. --confdir for a sandboxed run).
set -u
d=$(mktemp -d /tmp/espm-bootstrap.XXXXXX)
trap 'rm -rf "$d"' EXIT
umask 077
${files}ESPM_NODE_NAME=${quoted(input.nodeName)}
ESPM_MASTER=${quoted(input.master)}
ESPM_MASTER_PORT=${port}
ESPM_ENVIRONMENT=${quoted(input.environment ?? "")}
${ca.variables}${keyMode.variables}ESPM_BOOTSTRAP="$d/puppet-bootstrap.sh"
espm_bootstrap() {
  sh "$ESPM_BOOTSTRAP" --certname "$ESPM_NODE_NAME" --master "$ESPM_MASTER" --port "$ESPM_MASTER_PORT" \\
    \${ESPM_ENVIRONMENT:+--environment "$ESPM_ENVIRONMENT"} ${ca.option} \\
    ${options.join(" ")} "$@"
}
${body.trimEnd()}
`;
  return pack(input, script);
}

/** The plain script, or a multi-part message with the user's cloud config; gzipped when that is what fits. */
function pack(input: UserDataInput, script: string): RenderedUserData {
  const multipart = input.cloudConfig !== undefined;
  const plain = Buffer.from(multipart ? mimeMessage(cloudParts(input.cloudConfig!), script) : script, "utf8");
  const result = (bytes: Buffer, gzipped: boolean): RenderedUserData => ({
    base64: bytes.toString("base64"),
    script,
    multipart,
    gzipped,
    bytes: bytes.length,
  });
  if (plain.length <= USERDATA_LIMIT) return result(plain, false);
  const gzipped = gzipSync(plain, { level: 9 });
  if (gzipped.length > USERDATA_LIMIT) {
    throw new Error(
      `the userdata for ${input.nodeName} is ${gzipped.length} bytes even gzip-compressed (${plain.length} plain); EC2 accepts at most ${USERDATA_LIMIT}. Use a smaller CA bundle, key, hooks or cloud config.`,
    );
  }
  return result(gzipped, true);
}

function cloudParts(cloudConfig: string | CloudInitPart[]): CloudInitPart[] {
  if (typeof cloudConfig === "string") {
    if (!cloudConfig.startsWith("#cloud-config"))
      throw new Error("cloudConfig must start with #cloud-config (or give parts with their content types)");
    return [{ contentType: "text/cloud-config", content: cloudConfig, filename: "cloud-config.yaml" }];
  }
  for (const [i, part] of cloudConfig.entries()) {
    if (!/^[a-z]+\/[a-z0-9.+-]+$/.test(part.contentType))
      throw new Error(`cloudConfig[${i}].contentType must be a MIME type such as text/cloud-config`);
    if (part.filename !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(part.filename))
      throw new Error(`cloudConfig[${i}].filename must be letters, digits, '.', '_' or '-'`);
  }
  return cloudConfig;
}

/**
 * A MIME multi-part message the way cloud-init reads one: the user's parts first (a cloud-config's
 * packages are installed in cloud-init's config stage, before scripts run), espm's script last.
 * Each part ends with an extra line break: the one before a boundary belongs to the boundary.
 */
function mimeMessage(parts: CloudInitPart[], script: string): string {
  const all = [...parts, { contentType: "text/x-shellscript", content: script, filename: "espm-bootstrap.sh" }];
  let boundary = `espm-${randomBytes(12).toString("hex")}`;
  while (all.some((p) => p.content.includes(boundary))) boundary = `espm-${randomBytes(12).toString("hex")}`;
  const sections = all.map(
    (part, i) =>
      `--${boundary}\nContent-Type: ${part.contentType}; charset="utf-8"\nMIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\nContent-Disposition: attachment; filename="${part.filename ?? `part-${i + 1}`}"\n\n${part.content.replace(/\n?$/, "\n")}\n`,
  );
  return `Content-Type: multipart/mixed; boundary="${boundary}"\nMIME-Version: 1.0\n\n${sections.join("")}--${boundary}--\n`;
}

function factsYaml(facts: Record<string, string>): string {
  const lines = ["# External facts from espm's bootstrap (PuppetNodeRegistration's userdata)."];
  for (const [name, value] of Object.entries(facts)) {
    if (!FACT_NAME.test(name))
      throw new Error(`facts: ${JSON.stringify(name)} is not a fact name (lowercase letters, digits, '_')`);
    if (typeof value !== "string" || !FACT_VALUE.test(value))
      throw new Error(`facts.${name} must be a string of at most 1024 characters without control characters`);
    lines.push(`${name}: '${value.replaceAll("'", "''")}'`);
  }
  return lines.join("\n");
}

/** A template of the user's: it must use the values without which no node boots, or call espm_bootstrap. */
function checkedTemplate(template: string, required: string[]): string {
  if (/\bespm_bootstrap\b/.test(template)) return template;
  const missing = required.filter((name) => !new RegExp(`\\$\\{?${name}\\b`).test(template));
  if (missing.length) {
    throw new Error(
      `script does not use ${missing.map((m) => `$${m}`).join(", ")}: a template must use the node name, the master, the CA bundle (or its fingerprint) and the key material (or call espm_bootstrap "$@", which does)`,
    );
  }
  return template;
}

/**
 * The bootstrap without its comment lines: they document the script in the package, and would cost
 * about 3 KB of the 16 KB EC2 allows. (No line of the script's quoted text starts with `#`.)
 */
function withoutComments(script: string): string {
  const [shebang, ...rest] = script.split("\n");
  return [shebang, ...rest.filter((line) => !/^\s*#/.test(line))].join("\n");
}

interface CaTrust {
  files: string;
  variables: string;
  option: string;
  /** The variable a template of the user's must use. */
  required: string;
}

/** How the node comes to trust the CA: the bundle itself, or its fingerprint for the agent to check. */
function caTrust(input: UserDataInput): CaTrust {
  if (input.caCertificatePem) {
    const bundle = pem(input.caCertificatePem, /^CERTIFICATE$/, "certificate bundle", "caCertificatePem");
    return {
      files: heredoc("ca.pem", "ESPM_CA_BUNDLE", bundle, "caCertificatePem"),
      variables: `ESPM_CA_FILE="$d/ca.pem"\nESPM_CA_FINGERPRINT=\n`,
      option: `--ca "$ESPM_CA_FILE"`,
      required: "ESPM_CA_FILE",
    };
  }
  if (input.caFingerprint === undefined || input.caFingerprint === "")
    throw new Error("give caCertificatePem (the CA bundle) or caFingerprint (its SHA-256, which the node checks)");
  if (!CA_FINGERPRINT.test(input.caFingerprint))
    throw new Error("caFingerprint must be the CA bundle's SHA-256 in 64 hex digits, as espm's resources give it");
  return {
    files: "",
    variables: `ESPM_CA_FILE=\nESPM_CA_FINGERPRINT=${input.caFingerprint}\n`,
    option: `--ca-fingerprint "$ESPM_CA_FINGERPRINT"`,
    required: "ESPM_CA_FINGERPRINT",
  };
}

interface KeyModeFiles {
  summary: string;
  files: string;
  variables: string;
  options: string[];
  /** The key mode's variables a template of the user's must use. */
  required: string[];
}

/** The key mode's files in the script (certificate and key, or the token) and the bootstrap's options for them. */
function keyModeFiles(input: UserDataInput): KeyModeFiles {
  const provider = input.certificatePem !== undefined || input.privateKeyPem !== undefined;
  if (provider === (input.enrollment !== undefined)) {
    throw new Error(
      "give either certificatePem and privateKeyPem (the provider key mode) or enrollment (the instance key mode), not both or neither",
    );
  }
  if (input.enrollment) {
    const { token, extensions = {} } = input.enrollment;
    if (!/^[A-Za-z0-9]{32,128}$/.test(token)) throw new Error("enrollment.token must be the token espm issued");
    const options = [`--token-file "$ESPM_TOKEN_FILE"`];
    for (const [name, value] of Object.entries(extensions)) {
      if (!(name in PUPPET_EXTENSIONS)) throw new Error(`enrollment.extensions: ${name} is not a Puppet extension`);
      if (!EXTENSION_VALUE_PATTERN.test(value))
        throw new Error(`enrollment.extensions.${name} must be 1 to 255 printable characters, without quotes`);
      options.push(`--extension '${name}=${value}'`);
    }
    const wait = input.maxWaitForCertSeconds ?? 600;
    if (!Number.isInteger(wait) || wait < 10 || wait > 86_400)
      throw new Error(`maxWaitForCertSeconds must be from 10 to 86400, not ${wait}`);
    options.push(`--maxwaitforcert ${wait}`);
    return {
      summary: "the node makes its own key; a one-time token has its CSR signed.",
      files: heredoc("token", "ESPM_ENROLLMENT_TOKEN", token, "enrollment.token"),
      variables: `ESPM_TOKEN_FILE="$d/token"\nESPM_CERT_FILE=\nESPM_KEY_FILE=\n`,
      options,
      required: ["ESPM_TOKEN_FILE"],
    };
  }
  const certificate = pem(input.certificatePem ?? "", /^CERTIFICATE$/, "certificate", "certificatePem");
  const key = pem(input.privateKeyPem ?? "", /^(RSA |EC )?PRIVATE KEY$/, "private key", "privateKeyPem");
  return {
    summary: "installs its Puppet certificate and runs the agent once.",
    files:
      heredoc("cert.pem", "ESPM_CERTIFICATE", certificate, "certificatePem") +
      heredoc("key.pem", "ESPM_PRIVATE_KEY", key, "privateKeyPem"),
    variables: `ESPM_TOKEN_FILE=\nESPM_CERT_FILE="$d/cert.pem"\nESPM_KEY_FILE="$d/key.pem"\n`,
    options: [`--cert "$ESPM_CERT_FILE" --key "$ESPM_KEY_FILE"`],
    required: ["ESPM_CERT_FILE", "ESPM_KEY_FILE"],
  };
}
