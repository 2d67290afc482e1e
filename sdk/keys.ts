/**
 * Keys and certificates with Node's own crypto alone: making key pairs, fingerprints, serials and
 * what a certificate says. No ASN.1 library loads with it, so what only pins espm's certificate or
 * reads one (the client, a Pulumi program, a provider host in a preview) does not pay for the CSR
 * builder in x509.ts, which re-exports all of this.
 */
import { generateKeyPair, generateKeyPairSync, X509Certificate } from "node:crypto";

export type RsaKeySize = 2048 | 3072 | 4096;

export interface KeyPairPem {
  privateKeyPem: string;
  publicKeyPem: string;
}

/** An RSA key pair made with Node's native crypto; the private key as PKCS#8 PEM. */
export function generateRsaKeyPair(bits: RsaKeySize = 2048): KeyPairPem {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", {
    modulusLength: bits,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

/** As generateRsaKeyPair, off the event loop: a 4096-bit key takes seconds, and a provider host runs many operations at once. */
export function generateRsaKeyPairAsync(bits: RsaKeySize = 2048): Promise<KeyPairPem> {
  return new Promise((resolve, reject) => {
    generateKeyPair(
      "rsa",
      {
        modulusLength: bits,
        publicKeyEncoding: { type: "spki", format: "pem" },
        privateKeyEncoding: { type: "pkcs8", format: "pem" },
      },
      (err, publicKeyPem, privateKeyPem) => (err ? reject(err) : resolve({ privateKeyPem, publicKeyPem })),
    );
  });
}

/** The key types of a client certificate's key: RSA of three sizes, or ECDSA on NIST P-256. */
export const KEY_TYPES = ["rsa-2048", "rsa-3072", "rsa-4096", "ec-p256"] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** A key pair of `type`, made off the event loop (Node's thread pool). */
export function generateKeyPairAsync(type: KeyType): Promise<KeyPairPem> {
  if (type !== "ec-p256") return generateRsaKeyPairAsync(Number(type.slice(4)) as RsaKeySize);
  return new Promise((resolve, reject) => {
    generateKeyPair(
      "ec",
      {
        namedCurve: "P-256",
        publicKeyEncoding: { type: "spki", format: "pem" },
        privateKeyEncoding: { type: "pkcs8", format: "pem" },
      },
      (err, publicKeyPem, privateKeyPem) => (err ? reject(err) : resolve({ privateKeyPem, publicKeyPem })),
    );
  });
}

/** SHA-256 fingerprint of a certificate: uppercase hex pairs joined by colons, as OpenSSL and Node print it. */
export function certificateFingerprint(certificatePem: string): string {
  return new X509Certificate(certificatePem).fingerprint256;
}

/**
 * Normalizes a SHA-256 fingerprint given in any case, with or without colons, to Node's form
 * (`AB:CD:...`). Returns undefined when it is not 32 bytes of hex.
 */
export function normalizeFingerprint(fingerprint: string): string | undefined {
  const hex = fingerprint.replace(/[:\s]/g, "").toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) return undefined;
  return hex.match(/../g)!.join(":");
}

/** Serials as uppercase hex without leading zeros, so that Node's "02" and Puppet's 2 compare equal. */
export function normalizeSerial(hex: string): string {
  return hex.toUpperCase().replace(/^0+(?=.)/, "");
}

export interface CertificateSummary {
  subject: string;
  serial: string;
  notAfter: string;
  fingerprint: string;
}

/** Serial (uppercase hex), not-after (ISO 8601) and fingerprint of a PEM certificate. */
export function describeCertificate(certificatePem: string): CertificateSummary {
  const cert = new X509Certificate(certificatePem);
  return {
    subject: cert.subject,
    serial: normalizeSerial(cert.serialNumber),
    notAfter: new Date(cert.validTo).toISOString(),
    fingerprint: cert.fingerprint256,
  };
}
