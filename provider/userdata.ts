/**
 * Userdata for an instance's first boot: the bootstrap script (scripts/bootstrap/puppet-bootstrap.sh)
 * with the node's values. In the provider key mode the certificate and key travel inside it; in the
 * instance key mode only a one-time enrollment token does, and the node makes its own key. The CA
 * bundle (public) travels either way, so the agent trusts the right CA from its first connection;
 * the CRL does not (the agent downloads it), to stay under EC2's 16 KB userdata limit. When the
 * plain text is too big, it is gzip-compressed, which cloud-init unpacks; past that, rendering refuses.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { nameProblem } from "../sdk/names";
import { EXTENSION_VALUE_PATTERN, PUPPET_EXTENSIONS } from "../sdk/puppet-extensions";

/** EC2 accepts at most 16 KB of userdata, counted before base64 encoding. */
export const USERDATA_LIMIT = 16 * 1024;

export interface UserDataInput {
  nodeName: string;
  /** The Puppet master's host name or IP address, as the instance reaches it. */
  master: string;
  masterPort?: number;
  environment?: string;
  caCertificatePem: string;
  /** The provider key mode: the certificate espm signed and its key (secret). */
  certificatePem?: string;
  privateKeyPem?: string;
  /** The instance key mode: a PuppetEnrollment's token and the extensions it allows. */
  enrollment?: { token: string; extensions?: Record<string, string> };
  /** Instance key mode: how long the agent waits for its certificate to be signed (default 600 s). */
  maxWaitForCertSeconds?: number;
}

export interface RenderedUserData {
  /** Base64 of the bytes EC2 should get (for `userDataBase64`). */
  base64: string;
  /** The plain script; also what the bytes are when `gzipped` is false. */
  script: string;
  gzipped: boolean;
  /** Size in bytes of what EC2 gets, before base64. */
  bytes: number;
}

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Whether userdata (already base64-decoded and gunzipped) is espm's bootstrap, which carries a node's key. */
export function isEspmBootstrap(userdata: string): boolean {
  return (
    /^# espm first boot for /m.test(userdata) ||
    userdata.includes("ESPM_PRIVATE_KEY") ||
    userdata.includes("ESPM_ENROLLMENT_TOKEN")
  );
}

export function bootstrapScriptPath(): string {
  // dist/provider/userdata.js and provider/userdata.ts both sit two levels below the package root.
  return join(__dirname, "..", "..", "scripts", "bootstrap", "puppet-bootstrap.sh");
}

function pem(value: string, label: RegExp, what: string, field: string): string {
  const text = value.trim();
  const begin = text.match(/^-----BEGIN ([A-Z ]+)-----/);
  if (!begin || !label.test(begin[1]!) || !text.endsWith(`-----END ${begin[1]}-----`))
    throw new Error(`${field} must be a PEM ${what}`);
  return text;
}

/** The userdata script for one node. Throws naming the field for bad values, or the size when too big. */
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
  const ca = pem(input.caCertificatePem, /^CERTIFICATE$/, "certificate bundle", "caCertificatePem");
  const keyMode = keyModeFiles(input);
  const bootstrap = withoutComments(readFileSync(bootstrapScriptPath(), "utf8"));

  // Every value is validated above to characters that need no quoting beyond single quotes,
  // and PEM text cannot contain the heredoc delimiters.
  const script = `#!/bin/sh
# espm first boot for ${input.nodeName}: ${keyMode.summary}
# Extra arguments are passed to puppet-bootstrap.sh (e.g. --confdir for a sandboxed run).
set -u
d=$(mktemp -d /tmp/espm-bootstrap.XXXXXX)
trap 'rm -rf "$d"' EXIT
umask 077
${keyMode.files}cat > "$d/ca.pem" <<'ESPM_CA_BUNDLE'
${ca}
ESPM_CA_BUNDLE
cat > "$d/puppet-bootstrap.sh" <<'ESPM_BOOTSTRAP_SCRIPT'
${bootstrap.trimEnd()}
ESPM_BOOTSTRAP_SCRIPT
sh "$d/puppet-bootstrap.sh" --certname '${input.nodeName}' --master '${input.master}' --port '${port}'${input.environment ? ` --environment '${input.environment}'` : ""} \\
  ${keyMode.options} --ca "$d/ca.pem" "$@"
`;
  const plain = Buffer.from(script, "utf8");
  if (plain.length <= USERDATA_LIMIT)
    return { base64: plain.toString("base64"), script, gzipped: false, bytes: plain.length };
  const gzipped = gzipSync(plain, { level: 9 });
  if (gzipped.length > USERDATA_LIMIT) {
    throw new Error(
      `the userdata for ${input.nodeName} is ${gzipped.length} bytes even gzip-compressed (${plain.length} plain); EC2 accepts at most ${USERDATA_LIMIT}. Use a smaller CA bundle or key.`,
    );
  }
  return { base64: gzipped.toString("base64"), script, gzipped: true, bytes: gzipped.length };
}

/**
 * The bootstrap without its comment lines: they document the script in the package, and would cost
 * about 3 KB of the 16 KB EC2 allows. (No line of the script's quoted text starts with `#`.)
 */
function withoutComments(script: string): string {
  const [shebang, ...rest] = script.split("\n");
  return [shebang, ...rest.filter((line) => !/^\s*#/.test(line))].join("\n");
}

/** The key mode's files in the script (certificate and key, or the token) and the bootstrap's options for them. */
function keyModeFiles(input: UserDataInput): { summary: string; files: string; options: string } {
  const provider = input.certificatePem !== undefined || input.privateKeyPem !== undefined;
  if (provider === (input.enrollment !== undefined)) {
    throw new Error(
      "give either certificatePem and privateKeyPem (the provider key mode) or enrollment (the instance key mode), not both or neither",
    );
  }
  if (input.enrollment) {
    const { token, extensions = {} } = input.enrollment;
    if (!/^[A-Za-z0-9]{32,128}$/.test(token)) throw new Error("enrollment.token must be the token espm issued");
    const options = [`--token-file "$d/token"`];
    for (const [name, value] of Object.entries(extensions)) {
      if (!(name in PUPPET_EXTENSIONS)) throw new Error(`enrollment.extensions: ${name} is not a Puppet extension`);
      if (!EXTENSION_VALUE_PATTERN.test(value))
        throw new Error(`enrollment.extensions.${name} must be 1 to 255 printable characters, without quotes`);
      options.push(`--extension '${name}=${value}'`);
    }
    const wait = input.maxWaitForCertSeconds ?? 600;
    if (!Number.isInteger(wait) || wait < 10 || wait > 86_400)
      throw new Error(`maxWaitForCertSeconds must be from 10 to 86400, not ${wait}`);
    options.push(`--maxwaitforcert '${wait}'`);
    return {
      summary: "the node makes its own key; a one-time token has its CSR signed.",
      files: `cat > "$d/token" <<'ESPM_ENROLLMENT_TOKEN'\n${token}\nESPM_ENROLLMENT_TOKEN\n`,
      options: options.join(" "),
    };
  }
  const certificate = pem(input.certificatePem ?? "", /^CERTIFICATE$/, "certificate", "certificatePem");
  const key = pem(input.privateKeyPem ?? "", /^(RSA |EC )?PRIVATE KEY$/, "private key", "privateKeyPem");
  return {
    summary: "installs its Puppet certificate and runs the agent once.",
    files: `cat > "$d/cert.pem" <<'ESPM_CERTIFICATE'\n${certificate}\nESPM_CERTIFICATE\ncat > "$d/key.pem" <<'ESPM_PRIVATE_KEY'\n${key}\nESPM_PRIVATE_KEY\n`,
    options: `--cert "$d/cert.pem" --key "$d/key.pem"`,
  };
}
