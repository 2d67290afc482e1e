/**
 * espm.ini as a file: where it is, reading its sections, and relative paths taken from its own
 * directory. Without zod: config.ts validates the whole file for the daemon; `espm enc` and
 * `espm autosign`, which Puppet Server starts for every compile and every CSR, read the settings
 * they need here (encSettings, autosignSettings) and start faster for it (loading zod was two
 * thirds of `espm autosign`'s CPU).
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse } from "ini";
import { patternProblem, type CertnamePolicyOptions } from "../ca/certname-policy";

export const DEFAULT_CONFIG_DIR = "/opt/espm/etc";
export const DEFAULT_CONFIG_PATH = `${DEFAULT_CONFIG_DIR}/espm.ini`;
export const DEFAULT_PORT = 8443;
/** How long `espm enc` on PostgreSQL may serve a cached answer while the database is down. */
export const DEFAULT_ENC_CACHE_MAX_AGE_SECONDS = 300;
/** How often espm's autosign sweep looks for pending requests of enrolled names by default. */
export const DEFAULT_SWEEP_SECONDS = 15;
/** Where the store and the ENC export live: the directory the operator guide makes (espm:espm 0750). */
export const DEFAULT_STATE_DIR = "/var/lib/espm";

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** The config path `espm` and `espm enc` use: `-c`, else ESPM_CONFIG, else the default. */
export function configPath(flag: string | undefined): string {
  return flag ?? process.env.ESPM_CONFIG ?? DEFAULT_CONFIG_PATH;
}

export type IniSections = Record<string, Record<string, unknown> | undefined>;

/** espm.ini's sections as the ini parser gives them, and `at`, which resolves a path from the file's directory. */
export function readIni(path: string): { raw: IniSections; at: (p: string) => string } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(
      `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}; pass the config with -c or set ESPM_CONFIG`,
    );
  }
  const base = dirname(resolve(path));
  return { raw: parse(text), at: (p: string) => resolve(base, p) };
}

/** A setting's value as espm.ini gives it, an empty string being none. */
function setting(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** The certname policy's settings ([certnames] allow[], deny[], allow_any). */
function certnamePolicyOptions(raw: IniSections): CertnamePolicyOptions {
  const strings = (value: unknown) =>
    (Array.isArray(value) ? value : [value]).filter((p): p is string => typeof p === "string" && p !== "");
  return {
    patterns: strings(raw.certnames?.allow),
    deny: strings(raw.certnames?.deny),
    allowAny: raw.certnames?.allow_any === true || raw.certnames?.allow_any === "true",
  };
}

export interface EncSettings {
  /** SQLite: the export the daemon writes. PostgreSQL: the cache of `espm enc`'s last answers. */
  encExport: string;
  fallbackEnc: string | undefined;
  /** PostgreSQL: where the nodes and groups are read (with the read-only role), and its password file. */
  store?: { url: string; passwordFile?: string };
  /** PostgreSQL: how old a cached answer `espm enc` may serve while the database is down. */
  maxCacheAgeSeconds: number;
  /** The certname policy's settings ([certnames] allow[], deny[], allow_any). */
  policy: CertnamePolicyOptions;
}

/**
 * What `espm enc` needs of espm.ini: the export it reads (or, with a PostgreSQL store, the store's
 * URL and its local cache), and the site's fallback ENC, if any. A compile master's espm.ini needs
 * only these.
 */
export function encSettings(path: string): EncSettings {
  const { raw, at } = readIni(path);
  const encExport = setting(raw.store?.enc_export);
  if (encExport === undefined)
    throw new ConfigError(`${path} is not a valid espm config: store.enc_export: a path is required`);
  const url = setting(raw.store?.url);
  const passwordFile = setting(raw.store?.password_file);
  const fallback = setting(raw.classifier?.fallback_enc);
  const maxAge = Number(setting(raw.store?.enc_cache_max_age_seconds) ?? DEFAULT_ENC_CACHE_MAX_AGE_SECONDS);
  if (!Number.isInteger(maxAge) || maxAge < 0)
    throw new ConfigError(
      `${path} is not a valid espm config: store.enc_cache_max_age_seconds: a whole number of seconds`,
    );
  return {
    maxCacheAgeSeconds: maxAge,
    policy: certnamePolicyOptions(raw),
    encExport: at(encExport),
    fallbackEnc: fallback === undefined ? undefined : at(fallback),
    store: url === undefined ? undefined : { url, passwordFile: passwordFile && at(passwordFile) },
  };
}

export interface AutosignSettings {
  /** The certname policy's settings: a name outside it is one espm never enrolled. */
  policy: CertnamePolicyOptions;
  /** [autosign]; undefined when espm.ini has none, and espm then signs nothing through autosigning. */
  autosign?: {
    /** The running espm's autosign socket. */
    socket: string;
    /** The secret that socket asks for. */
    secretFile: string;
    /** The site's own policy executable, for names espm never enrolled. */
    fallback?: string;
    /** How often espm's sweep looks for requests no policy decided (for the message when espm is down). */
    sweepSeconds: number;
  };
}

/**
 * What `espm autosign` needs of espm.ini, with config.ts's defaults: the certname policy and
 * [autosign]. Whatever else the file holds is the daemon's to validate.
 */
export function autosignSettings(path: string): AutosignSettings {
  const { raw, at } = readIni(path);
  const policy = certnamePolicyOptions(raw);
  for (const pattern of policy.patterns) {
    const problem = patternProblem(pattern);
    if (problem)
      throw new ConfigError(
        `${path} is not a valid espm config: certnames.allow: ${JSON.stringify(pattern)} ${problem}`,
      );
  }
  const section = raw.autosign;
  if (section === undefined) return { policy };
  const invalid = (why: string) => new ConfigError(`${path} is not a valid espm config: autosign.${why}`);
  const socket = setting(section.socket);
  const secretFile = setting(section.secret_file);
  if (socket === undefined) throw invalid("socket: a path is required");
  if (secretFile === undefined) throw invalid("secret_file: a path is required");
  const fallback = setting(section.fallback);
  const sweepSeconds = Number(setting(section.sweep_seconds) ?? DEFAULT_SWEEP_SECONDS);
  if (!Number.isInteger(sweepSeconds) || sweepSeconds < 1 || sweepSeconds > 3600)
    throw invalid("sweep_seconds: a whole number of seconds from 1 to 3600");
  return {
    policy,
    autosign: {
      socket: at(socket),
      secretFile: at(secretFile),
      fallback: fallback === undefined ? undefined : at(fallback),
      sweepSeconds,
    },
  };
}
