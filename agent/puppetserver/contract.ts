/**
 * What espm needs from a certificate authority, from class discovery and from the server's names.
 * Puppet Server implements these (ca.ts, classes.ts); tests may use a double.
 */
import type { BackendStatus, PuppetClass } from "espm-sdk/protocol";

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
  /** The names with a pending request (one call, for the enrollment sweep). */
  pending(): Promise<string[]>;
  /** The pending request's CSR (PEM), or undefined when there is none. */
  request(certname: string): Promise<string | undefined>;
  /**
   * Revokes certname's certificate if it has a signed one, then removes it and any pending request
   * (revoke, then DELETE certificate_status: both on the certname's own path, which auth.conf can
   * limit to the allowed names, unlike /clean, whose names travel in the body). Succeeds when nothing is there.
   */
  clean(certname: string): Promise<void>;
  /**
   * Removes a pending request the caller has just read (DELETE certificate_status) without asking
   * its status first: Puppet Server fails the status of a CSR it cannot read (a repeated extension
   * answers 500), and anyone can submit one. Succeeds when nothing is there.
   */
  removeRequest(certname: string): Promise<void>;
  health(): Promise<BackendStatus>;
}

/** The names Puppet Server and its compile masters go by, which espm must never sign. */
export interface ServerNameSource {
  /** Puppet Server's certname and the DNS names and IPs of the certificate on its TLS port. */
  serverNames(): Promise<string[]>;
  /** Certnames and DNS alt names of every certificate the CA lists with dns_alt_names. */
  altNamed(): Promise<string[]>;
}

/** The Puppet Server parts espm uses; each is absent when espm.ini does not configure it. */
export interface Backends {
  ca?: CertificateAuthority;
  classes?: ClassDiscovery;
  names?: ServerNameSource;
}

export interface ClassDiscovery {
  classes(environment: string): Promise<PuppetClass[]>;
  health(): Promise<BackendStatus>;
}

/**
 * The CA refused a request because of what the caller sent (its CSR, or the name's state at the
 * CA): espm passes it on as a 4xx with the CA's own reason, not as a backend failure.
 */
export class CaRefusal extends Error {
  override name = "CaRefusal";
  constructor(
    readonly certname: string,
    readonly reason: string,
  ) {
    super(`the Puppet CA refused the request for ${certname}: ${reason}`);
  }
  /** The CA refuses a CSR for a name that already has a request or certificate (a state conflict). */
  get isConflict(): boolean {
    return /already has/i.test(this.reason);
  }
}

export { BackendError } from "../http/backend-error";
