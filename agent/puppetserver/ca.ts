/**
 * Puppet Server's CA, over its HTTP API (/puppet-ca/v1: certificate_status, certificate_request,
 * certificate, certificate_statuses; Puppet 8 also sign), and the names Puppet
 * Server and its compile masters go by.
 * Destroy is always revoke, then DELETE certificate_status: a plain DELETE removes the files without
 * revoking, and the certificate would keep working. espm never uses `PUT /clean`: its certnames
 * travel in the body, where no auth.conf path rule can limit them to the names espm may touch.
 */
import { AnswerCache } from "espm-sdk/cache";
import type { BackendStatus } from "espm-sdk/protocol";
import {
  BackendError,
  CaRefusal,
  type CaCertificateStatus,
  type CertificateAuthority,
  type ServerNameSource,
} from "./contract";
import { BatchedSigner } from "./bulk-sign";
import { parseJson, type PuppetServerHttp, type PuppetResponse } from "./http";

const CA = "/puppet-ca/v1";

/**
 * How long espm hands out the CA certificate and the CRL it fetched last, instead of asking again
 * for every certificate it issues. espm's own revocations refresh the CRL at once; one made at the
 * CA by hand (`puppetserver ca revoke`) reaches new nodes within this time. A node uses the CRL only
 * until its agent refreshes it (crl_refresh_interval); Puppet Server enforces revocation itself.
 */
const CA_DOCUMENT_TTL_MS = 60_000;

/** Puppet reports serials as decimal numbers (or strings); espm keeps them as uppercase hex, as X.509 tools print them. */
export function serialToHex(serial: unknown): string | undefined {
  if (typeof serial === "number" && Number.isSafeInteger(serial)) return serial.toString(16).toUpperCase();
  if (typeof serial === "string" && /^\d+$/.test(serial)) return BigInt(serial).toString(16).toUpperCase();
  return undefined;
}

const CRL = "certificate_revocation_list/ca";

export class PuppetServerCa implements CertificateAuthority {
  private readonly signer: BatchedSigner;
  /** The CA's certificate and CRL, by their path under the CA API, kept CA_DOCUMENT_TTL_MS. */
  private readonly documents: AnswerCache<string, string>;

  constructor(
    private readonly http: PuppetServerHttp,
    o: { bulkSign?: boolean } = {},
  ) {
    this.signer = new BatchedSigner(http, (certname) => this.signOne(certname), o.bulkSign ?? false);
    this.documents = new AnswerCache({ ttlMs: CA_DOCUMENT_TTL_MS }, async (path) => ({
      value: (await http.call("GET", `${CA}/${path}`, { expected: [200] })).text,
    }));
  }

  async status(certname: string): Promise<CaCertificateStatus> {
    const response = await this.http.call("GET", `${CA}/certificate_status/${certname}`, { expected: [200, 404] });
    if (response.status === 404) return { state: "absent" };
    const body = parseJson(response.text, "a certificate status") as {
      state?: string;
      serial_number?: unknown;
      not_after?: string;
    };
    if (body.state !== "requested" && body.state !== "signed" && body.state !== "revoked") {
      throw new BackendError(
        502,
        `Puppet Server reported an unknown certificate state ${JSON.stringify(body.state)} for ${certname}`,
      );
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
    refusedBy(
      certname,
      await this.http.call("PUT", `${CA}/certificate_request/${certname}`, {
        body: csrPem,
        contentType: "text/plain",
        expected: [200, 400, 409],
      }),
    );
  }

  /** Through Puppet 8's bulk sign where espm may use it (bulk-sign.ts), else one by one. */
  sign(certname: string): Promise<void> {
    return this.signer.sign(certname);
  }

  private async signOne(certname: string): Promise<void> {
    refusedBy(
      certname,
      await this.http.call("PUT", `${CA}/certificate_status/${certname}`, {
        body: JSON.stringify({ desired_state: "signed" }),
        contentType: "application/json",
        expected: [204, 400, 409],
      }),
    );
  }

  async request(certname: string): Promise<string | undefined> {
    const response = await this.http.call("GET", `${CA}/certificate_request/${certname}`, { expected: [200, 404] });
    return response.status === 200 ? response.text : undefined;
  }

  async pending(): Promise<string[]> {
    const response = await this.http.call("GET", `${CA}/certificate_statuses/any?state=requested`, { expected: [200] });
    const list = parseJson(response.text, "the list of pending requests");
    if (!Array.isArray(list))
      throw new BackendError(502, "Puppet Server sent a list of pending requests that is not a list");
    return (list as Array<{ name?: unknown }>).map((e) => e.name).filter((n): n is string => typeof n === "string");
  }

  async certificate(certname: string): Promise<string> {
    return (await this.http.call("GET", `${CA}/certificate/${certname}`, { expected: [200] })).text;
  }

  caBundle(): Promise<string> {
    return this.documents.get("certificate/ca");
  }

  crl(): Promise<string> {
    return this.documents.get(CRL);
  }

  async clean(certname: string): Promise<void> {
    const { state } = await this.status(certname);
    if (state === "absent") return;
    if (state === "signed") {
      await this.http.call("PUT", `${CA}/certificate_status/${certname}`, {
        body: JSON.stringify({ desired_state: "revoked" }),
        contentType: "application/json",
        expected: [204],
      });
      this.documents.forget(CRL);
    }
    // 404: gone since the status call (another clean): the outcome wanted.
    await this.http.call("DELETE", `${CA}/certificate_status/${certname}`, { expected: [204, 404] });
  }

  async removeRequest(certname: string): Promise<void> {
    await this.http.call("DELETE", `${CA}/certificate_status/${certname}`, { expected: [204, 404] });
  }

  async health(): Promise<BackendStatus> {
    const response = await this.http.call("GET", "/status/v1/simple", { expected: [200, 503] });
    return response.text.trim() === "running"
      ? { status: "ok", detail: `signing ${this.signer.mode === "unknown" ? "not tried yet" : this.signer.mode}` }
      : { status: "down", detail: `Puppet Server status: ${response.text.trim().slice(0, 100)}` };
  }
}

/** A 4xx from the CA for a submit or sign is a refusal of what the caller sent: pass on the CA's reason. */
function refusedBy(certname: string, response: PuppetResponse): void {
  if (response.status >= 400)
    throw new CaRefusal(certname, response.text.trim().slice(0, 500) || `HTTP ${response.status}`);
}

/**
 * Puppet Server's own names, from the certificate it presents on its TLS port, and the names of the
 * certificates its CA signed with dns_alt_names (compile masters), from the CA's certificate list.
 */
export class PuppetServerNames implements ServerNameSource {
  constructor(private readonly http: PuppetServerHttp) {}

  async serverNames(): Promise<string[]> {
    const cert = await this.http.peerCertificate();
    const names = new Set<string>();
    if (typeof cert.subject?.CN === "string") names.add(cert.subject.CN);
    for (const entry of (cert.subjectaltname ?? "").split(/,\s*/)) {
      const match = /^(?:DNS|IP Address):(.+)$/.exec(entry.trim());
      if (match) names.add(match[1]!.toLowerCase());
    }
    if (names.size === 0) throw new BackendError(502, "Puppet Server's TLS certificate names no host");
    return [...names];
  }

  async altNamed(): Promise<string[]> {
    // Signed certificates only (compile masters'), which Puppet Server reads from its signed
    // directory alone: a pending CSR it cannot read, which anyone can submit, fails the whole list.
    const response = await this.http.call("GET", `${CA}/certificate_statuses/any?state=signed`, { expected: [200] });
    const list = parseJson(response.text, "the certificate list");
    if (!Array.isArray(list)) throw new BackendError(502, "Puppet Server sent a certificate list that is not a list");
    const names = new Set<string>();
    for (const entry of list as Array<{ name?: unknown; dns_alt_names?: unknown }>) {
      if (typeof entry.name !== "string" || !Array.isArray(entry.dns_alt_names)) continue;
      // Puppet's CA gives every certificate it signs the SAN DNS:<certname>: only a certificate
      // with another name besides its own is a server's (a compile master's).
      const alts = entry.dns_alt_names
        .filter((a): a is string => typeof a === "string")
        .map((a) => a.replace(/^(?:DNS|IP Address|IP):/i, "").toLowerCase());
      if (!alts.some((a) => a !== entry.name)) continue;
      names.add(entry.name);
      for (const alt of alts) names.add(alt);
    }
    return [...names];
  }
}
