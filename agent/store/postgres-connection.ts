/**
 * How espm reaches PostgreSQL: the driver's settings from espm.ini's URL and password file. Apart
 * from the store because `espm enc` on a compile master connects with them too, for every catalog
 * compile, and must not load the store's query builder to do it.
 */
import { readFileSync } from "node:fs";
import type { ClientConfig } from "pg";

/** The password from its file, or an error naming the file (never the password). */
export function readPassword(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new Error(`cannot read the PostgreSQL password file ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}

/**
 * The driver's connection settings from a postgres:// URL and a password. (Given a connection
 * string, the driver would take the URL's empty password over this one.) `sslmode=require` asks for
 * TLS; `verify-full` also checks the server's certificate, against `sslrootcert` when given.
 */
export function connectionConfig(url: string, password: string | undefined): ClientConfig {
  const u = new URL(url);
  const sslmode = u.searchParams.get("sslmode");
  const rootCert = u.searchParams.get("sslrootcert");
  return {
    host: decodeURIComponent(u.hostname),
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username),
    database: decodeURIComponent(u.pathname.slice(1)),
    password,
    ssl:
      sslmode === "require"
        ? { rejectUnauthorized: false }
        : sslmode === "verify-ca" || sslmode === "verify-full"
          ? { rejectUnauthorized: true, ...(rootCert ? { ca: readFileSync(rootCert, "utf8") } : {}) }
          : undefined,
  };
}

/** The URL without any password a user put in it, for logs and health. */
export function describeUrl(url: string): string {
  const u = new URL(url);
  u.password = "";
  return u.toString();
}
