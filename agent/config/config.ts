/**
 * espm.ini: where espm listens, where its TLS material and PSK file are, where it keeps its store,
 * and how it reaches Puppet Server. It holds no secret, so the Puppet Server's user may read it
 * (`espm enc` needs it to find the classification export).
 */
import { z } from "zod";
import { patternProblem } from "../ca/certname-policy";
import { ConfigError, DEFAULT_ENC_CACHE_MAX_AGE_SECONDS, DEFAULT_PORT, DEFAULT_SWEEP_SECONDS, readIni } from "./file";

/** An ini flag: `true` or `false` (the ini parser gives the text), absent meaning false. */
function flag() {
  return z.preprocess((v) => (v === undefined || v === "false" ? false : v === "true" ? true : v), z.boolean());
}

/** An ini list: `key[] = a` lines give an array; a plain `key = a` gives one value. */
function list<T extends z.ZodType<string>>(item: T) {
  return z.preprocess((v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]), z.array(item));
}

/**
 * The schema of espm.ini. `at` resolves a path as the file names it (relative to the file's own
 * directory): every path field is a `path`, so none is left unresolved or resolved twice.
 */
function configSchema(at: (path: string) => string = (p) => p) {
  const path = z.string().min(1).transform(at);
  const portRange = { error: "must be a number from 1 to 65535" };
  const port = z.coerce.number(portRange).int(portRange).min(1, portRange).max(65535, portRange);
  const https = z.url({ protocol: /^https$/, error: "must be an https:// URL" });
  return z.object({
    server: z.object({
      host: z.string().min(1).default("0.0.0.0"),
      port: port.default(DEFAULT_PORT),
      cert: path,
      key: path,
      psk_file: path,
      body_limit: z.coerce
        .number()
        .int()
        .min(1024)
        .max(16 * 1024 * 1024)
        .default(64 * 1024),
      auth_failures_allowed: z.coerce.number().int().min(1).default(5),
      auth_failure_window_seconds: z.coerce.number().int().min(1).default(60),
      /** A client must send its request headers within this time (slowloris). */
      headers_timeout_seconds: z.coerce.number().int().min(1).max(60).default(5),
      /** ... and its whole request, body included, within this time (slow bodies). */
      request_timeout_seconds: z.coerce.number().int().min(1).max(300).default(10),
      /** On SIGTERM, requests still running after this grace period are cut off. */
      stop_grace_seconds: z.coerce.number().int().min(0).max(60).default(2),
    }),
    store: z.object({
      /** SQLite: the database file (the default store). */
      database: path.optional(),
      /** PostgreSQL instead: postgres://USER@HOST:PORT/DATABASE, the password in password_file. */
      url: z
        .url()
        .refine((u) => /^postgres(ql)?:\/\/[^/]+\/\w/.test(u) && !new URL(u).password, {
          error: "must be postgres://USER@HOST:PORT/DATABASE, without a password (put it in password_file)",
        })
        .optional(),
      password_file: path.optional(),
      /** The role `espm enc` reads with on compile masters: granted SELECT on nodes and groups only. */
      enc_role: z
        .string()
        .regex(/^[a-z_][a-z0-9_]*$/)
        .optional(),
      /**
       * PostgreSQL: how old an answer `espm enc` may serve from its cache while the database cannot
       * be read. Longer keeps compiles going through a longer outage; shorter bounds how long a
       * node changed or deleted just before the outage keeps its old classification.
       */
      enc_cache_max_age_seconds: z.coerce.number().int().min(0).default(DEFAULT_ENC_CACHE_MAX_AGE_SECONDS),
      /** SQLite: the export `espm enc` reads. PostgreSQL: `espm enc`'s cache of its last answers. */
      enc_export: path,
      /** The group that may read the export: espm's own, with Puppet Server's user (which runs espm enc) in it; files are 0640. */
      export_group: z
        .string()
        .regex(/^[a-z_][a-z0-9_-]*$/)
        .optional(),
    }),
    certnames: z
      .object({
        allow: list(
          z.string().refine((p) => patternProblem(p) === undefined, {
            error: (issue) => `${JSON.stringify(issue.input)} ${patternProblem(String(issue.input))}`,
          }),
        ),
        deny: list(z.string()),
        allow_any: flag(),
        /** How often espm relearns the names of Puppet Server and its compile masters. */
        refresh_seconds: z.coerce.number().int().min(1).default(300),
      })
      .default({ allow: [], deny: [], allow_any: false, refresh_seconds: 300 }),
    /** What one PSK holder may store (quotas.ts). */
    limits: z
      .object({
        nodes: z.coerce.number().int().min(1).default(20_000),
        classification_bytes: z.coerce
          .number()
          .int()
          .min(1024)
          .max(16 * 1024 * 1024)
          .default(32 * 1024),
        enrollments: z.coerce.number().int().min(1).default(5_000),
      })
      .default({ nodes: 20_000, classification_bytes: 32 * 1024, enrollments: 5_000 }),
    classifier: z.object({
      groups: path,
      default_environment: z
        .string()
        .regex(/^[a-z0-9_]+$/)
        .default("production"),
      fallback_enc: path.optional(),
    }),
    puppetserver: z
      .object({
        url: https,
        ca_bundle: path,
        cert: path,
        key: path,
        class_cache_seconds: z.coerce.number().int().min(0).default(30),
        /**
         * Puppet 8's bulk sign (POST /puppet-ca/v1/sign), which auth.conf must allow espm ("espm bulk
         * sign"). Off by default: espm then never tries the endpoint, which Puppet 7 refuses with an
         * ERROR in its log.
         */
        bulk_sign: flag(),
        /** Where Puppet Server stores reports (`reports = store`); espm reads its own nodes' runs there. */
        reportdir: path.optional(),
      })
      .optional(),
    /**
     * PuppetDB, where the site runs it: espm deactivates the nodes it deletes there, refuses to
     * create a node PuppetDB knows as active, and reads runs there when no reportdir is set. Its
     * certificate allowlist must name espm's client certificate (usually the one for Puppet Server).
     */
    puppetdb: z
      .object({
        url: https,
        ca_bundle: path,
        cert: path,
        key: path,
      })
      .optional(),
    /**
     * Policy-based autosigning for nodes that make their own keys: `espm autosign`, run by Puppet
     * Server, asks the running espm over this Unix socket, with the secret in secret_file (readable
     * by export_group only, which Puppet Server's user is in; it allows that one question and nothing else).
     */
    autosign: z
      .object({
        socket: path,
        secret_file: path,
        /** A policy executable for CSRs of names espm never enrolled (Puppet's own interface). */
        fallback: path.optional(),
        /** How often espm looks for pending requests of enrolled names that no policy decided. */
        sweep_seconds: z.coerce.number().int().min(1).max(3600).default(DEFAULT_SWEEP_SECONDS),
      })
      .optional(),
  });
}

export type EspmConfig = z.output<ReturnType<typeof configSchema>>;

/** What is wrong with an espm.ini's contents, as `section.key: message` lines (none when it would load). */
export function configProblems(raw: unknown): Array<{ key: string; message: string }> {
  const result = configSchema().safeParse(raw);
  return result.success ? [] : result.error.issues.map((i) => ({ key: i.path.join("."), message: i.message }));
}

/** Reads and validates espm.ini; relative paths are taken from the file's own directory. */
export function loadConfig(path: string): EspmConfig {
  const { raw, at } = readIni(path);
  if (raw.store && raw.store.export_group === "") delete raw.store.export_group;
  if (raw.classifier && raw.classifier.fallback_enc === "") delete raw.classifier.fallback_enc;
  if (raw.autosign && raw.autosign.fallback === "") delete raw.autosign.fallback;
  const result = configSchema(at).safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join(".") || "(file)"}: ${i.message}`);
    throw new ConfigError(`${path} is not a valid espm config: ${problems.join("; ")}`);
  }
  const config = result.data;
  if ((config.store.database === undefined) === (config.store.url === undefined))
    throw new ConfigError(
      `${path} is not a valid espm config: store: name one store, database (SQLite) or url (PostgreSQL)`,
    );
  return config;
}
