/**
 * What espm needs from a certificate authority and from class discovery. Puppet Server's CA HTTP
 * API and its environment_classes endpoint implement these (see puppetserver.ts); tests may use a double.
 */
import type { BackendStatus, PuppetClass } from "../../sdk/protocol";

export type CaState = "absent" | "requested" | "signed" | "revoked";

export interface CaCertificateStatus {
  state: CaState;
  /** Uppercase hex, as Node's X509Certificate prints it. */
  serial?: string;
  notAfter?: string;
}

export interface CertificateAuthority {
  status(certname: string): Promise<CaCertificateStatus>;
  /** Submits a PEM CSR for certname. */
  submit(certname: string, csrPem: string): Promise<void>;
  sign(certname: string): Promise<void>;
  /** The signed certificate, PEM. */
  certificate(certname: string): Promise<string>;
  /** The CA's certificate chain, PEM. */
  caBundle(): Promise<string>;
  /** The CA's current revocation list chain, PEM. */
  crl(): Promise<string>;
  /** Revokes certname's certificate if it has one, then removes it and any request; succeeds when nothing is there. */
  clean(certname: string): Promise<void>;
  health(): Promise<BackendStatus>;
}

export interface ClassDiscovery {
  classes(environment: string): Promise<PuppetClass[]>;
  health(): Promise<BackendStatus>;
}

/**
 * A backend that answered wrongly or not at all. `status` is the HTTP status espm passes on:
 * 503 when the backend could not be reached, 502 when it answered with an error.
 */
export class BackendError extends Error {
  override name = "BackendError";
  constructor(
    readonly status: 502 | 503,
    message: string,
  ) {
    super(message);
  }
}
