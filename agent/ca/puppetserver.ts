/**
 * The CA and class discovery of Puppet Server, over its HTTP APIs (see shared notes/puppetserver.md).
 * Destroy is always `PUT /puppet-ca/v1/clean`, which revokes and then deletes: a plain DELETE of
 * certificate_status removes the files without revoking, and the certificate would keep working.
 */
import type { BackendStatus, PuppetClass } from "../../sdk/protocol";
import type { EspmConfig } from "../config";
import type { Backends } from "../daemon";
import { BackendError, type CaCertificateStatus, type CertificateAuthority, type ClassDiscovery } from "./index";
import { PuppetServerHttp, type PuppetServerConfig } from "./puppetserver-http";

const CA = "/puppet-ca/v1";

/** Puppet reports serials as decimal numbers (or strings); espm keeps them as uppercase hex, as X.509 tools print them. */
export function serialToHex(serial: unknown): string | undefined {
  if (typeof serial === "number" && Number.isSafeInteger(serial)) return serial.toString(16).toUpperCase();
  if (typeof serial === "string" && /^\d+$/.test(serial)) return BigInt(serial).toString(16).toUpperCase();
  return undefined;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new BackendError(502, `Puppet Server sent ${what} that is not JSON`);
  }
}

export class PuppetServerCa implements CertificateAuthority {
  constructor(private readonly http: PuppetServerHttp) {}

  async status(certname: string): Promise<CaCertificateStatus> {
    const response = await this.http.call("GET", `${CA}/certificate_status/${certname}`, { expected: [200, 404] });
    if (response.status === 404) return { state: "absent" };
    const body = parseJson(response.text, "a certificate status") as { state?: string; serial_number?: unknown; not_after?: string };
    if (body.state !== "requested" && body.state !== "signed" && body.state !== "revoked") {
      throw new BackendError(502, `Puppet Server reported an unknown certificate state ${JSON.stringify(body.state)} for ${certname}`);
    }
    // Puppet prints times as "2031-11-26T00:30:11UTC", which Date does not read as is.
    const notAfter = body.not_after ? new Date(body.not_after.replace(/UTC$/, "Z")) : undefined;
    return {
      state: body.state,
      serial: serialToHex(body.serial_number),
      notAfter: notAfter && !Number.isNaN(notAfter.getTime()) ? notAfter.toISOString() : undefined,
    };
  }

  async submit(certname: string, csrPem: string): Promise<void> {
    await this.http.call("PUT", `${CA}/certificate_request/${certname}`, { body: csrPem, contentType: "text/plain", expected: [200] });
  }

  async sign(certname: string): Promise<void> {
    await this.http.call("PUT", `${CA}/certificate_status/${certname}`, {
      body: JSON.stringify({ desired_state: "signed" }),
      contentType: "application/json",
      expected: [204],
    });
  }

  async certificate(certname: string): Promise<string> {
    return (await this.http.call("GET", `${CA}/certificate/${certname}`, { expected: [200] })).text;
  }

  async caBundle(): Promise<string> {
    return (await this.http.call("GET", `${CA}/certificate/ca`, { expected: [200] })).text;
  }

  async crl(): Promise<string> {
    return (await this.http.call("GET", `${CA}/certificate_revocation_list/ca`, { expected: [200] })).text;
  }

  async clean(certname: string): Promise<void> {
    // 200 also when nothing is there ("do not exist and cannot be revoked"): clean is idempotent.
    await this.http.call("PUT", `${CA}/clean`, { body: JSON.stringify({ certnames: [certname] }), contentType: "application/json", expected: [200] });
  }

  async health(): Promise<BackendStatus> {
    const response = await this.http.call("GET", "/status/v1/simple", { expected: [200, 503] });
    return response.text.trim() === "running" ? { status: "ok" } : { status: "down", detail: `Puppet Server status: ${response.text.trim().slice(0, 100)}` };
  }
}

interface EnvironmentClassesBody {
  files?: Array<{ path?: string; error?: string; classes?: Array<{ name: string; params?: Array<{ name: string; type?: string; default_source?: string }> }> }>;
}

/** Classes from `/puppet/v3/environment_classes`, cached briefly; revalidated with the ETag when the server sends one. */
export class PuppetServerClasses implements ClassDiscovery {
  private readonly cache = new Map<string, { at: number; etag?: string; classes: PuppetClass[] }>();

  constructor(
    private readonly http: PuppetServerHttp,
    private readonly cacheMs: number,
  ) {}

  async classes(environment: string): Promise<PuppetClass[]> {
    const cached = this.cache.get(environment);
    if (cached && Date.now() - cached.at < this.cacheMs) return cached.classes;
    const response = await this.http.call("GET", `/puppet/v3/environment_classes?environment=${encodeURIComponent(environment)}`, {
      headers: cached?.etag ? { "if-none-match": cached.etag } : {},
      expected: [200, 304, 404],
    });
    if (response.status === 304 && cached) {
      cached.at = Date.now();
      return cached.classes;
    }
    if (response.status === 404) throw new BackendError(502, `Puppet Server has no environment named ${environment}`);
    const body = parseJson(response.text, "environment classes") as EnvironmentClassesBody;
    const classes: PuppetClass[] = [];
    for (const file of body.files ?? []) {
      for (const cls of file.classes ?? []) {
        classes.push({
          name: cls.name,
          parameters: (cls.params ?? []).map((p) => ({ name: p.name, type: p.type, default: p.default_source })),
        });
      }
    }
    classes.sort((a, b) => a.name.localeCompare(b.name));
    const etag = typeof response.headers.etag === "string" ? response.headers.etag : undefined;
    this.cache.set(environment, { at: Date.now(), etag, classes });
    return classes;
  }

  async health(): Promise<BackendStatus> {
    return { status: "ok", detail: `${this.cache.size} environments cached` };
  }
}

export function puppetServerBackends(config: EspmConfig): Backends {
  const settings: PuppetServerConfig | undefined = config.puppetserver;
  if (!settings) return {};
  const http = new PuppetServerHttp(settings);
  return { ca: new PuppetServerCa(http), classes: new PuppetServerClasses(http, settings.class_cache_seconds * 1000) };
}
