/**
 * espm's own HTTPS certificate, self-signed, which callers pin by fingerprint (espm-setup writes
 * it). The agent's only use of node-forge: nothing else here makes an X.509 certificate.
 */
import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import forge from "node-forge";
import { generateRsaKeyPair, type RsaKeySize } from "espm-sdk/x509";

export interface SelfSignedOptions {
  commonName: string;
  /** DNS names and IP addresses the certificate is valid for. */
  altNames: string[];
  days?: number;
  keyBits?: RsaKeySize;
}

/**
 * A certificate serial from random bytes, as hex that DER encodes minimally: the first byte in
 * 0x40–0x7f, so never negative (top bit clear) and never a leading zero byte, which strict parsers
 * (Node's X509Certificate, OpenSSL 3) refuse as "illegal padding", once in about 128 serials.
 */
export function positiveSerial(random: Buffer): string {
  const serial = Buffer.from(random);
  serial[0] = (serial[0]! & 0x3f) | 0x40;
  return serial.toString("hex");
}

export function createSelfSignedCertificate(options: SelfSignedOptions): {
  certificatePem: string;
  privateKeyPem: string;
} {
  const keys = generateRsaKeyPair(options.keyBits ?? 2048);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKeyPem);
  cert.serialNumber = positiveSerial(randomBytes(16));
  const now = new Date();
  cert.validity.notBefore = new Date(now.getTime() - 5 * 60 * 1000);
  cert.validity.notAfter = new Date(now.getTime() + (options.days ?? 825) * 24 * 3600 * 1000);
  const subject = [{ name: "commonName", value: options.commonName }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: "basicConstraints", cA: false, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true },
    {
      name: "subjectAltName",
      altNames: options.altNames.map((n) => (isIP(n) ? { type: 7, ip: n } : { type: 2, value: n })),
    },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(keys.privateKeyPem), forge.md.sha256.create());
  return { certificatePem: forge.pki.certificateToPem(cert), privateKeyPem: keys.privateKeyPem };
}
