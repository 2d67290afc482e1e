/**
 * All X.509 work of both sides: espm's self-signed TLS certificate, client CSRs, and reading
 * certificates. Keys come from Node's native crypto (fast, constant-time), and so do CSR signatures.
 * CSRs (RSA or EC) are built with PeculiarVentures' ASN.1 schemas (@peculiar/asn1-csr, the
 * maintained library under @peculiar/x509, without its WebCrypto and dependency-injection layers);
 * node-forge, which knows RSA keys only, still builds espm's self-signed certificate.
 */
import { Attributes, CertificationRequest, CertificationRequestInfo } from "@peculiar/asn1-csr";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import {
  AlgorithmIdentifier,
  Attribute,
  AttributeTypeAndValue,
  AttributeValue,
  Extension,
  Extensions,
  Name,
  RelativeDistinguishedName,
  SubjectPublicKeyInfo,
} from "@peculiar/asn1-x509";
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  X509Certificate,
} from "node:crypto";
import { isIP } from "node:net";
import forge from "node-forge";
import { PUPPET_EXTENSIONS, puppetExtensionName } from "./puppet-extensions";

export { PUPPET_EXTENSIONS, puppetExtensionName } from "./puppet-extensions";

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

export interface SelfSignedOptions {
  commonName: string;
  /** DNS names and IP addresses the certificate is valid for. */
  altNames: string[];
  days?: number;
  keyBits?: RsaKeySize;
}

/** A self-signed server certificate and its key, for espm's HTTPS listener. */
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

/**
 * A PEM CSR for certname signed with its private key (RSA, with SHA-256, or EC P-256/P-384, with
 * ECDSA and SHA-256/384), carrying the given `pp_*` extension requests (names from
 * PUPPET_EXTENSIONS, values as UTF-8 strings, as Puppet encodes them) and, when given, a
 * challengePassword attribute (as an agent's csr_attributes.yaml puts one).
 */
export function createCsr(
  certname: string,
  privateKeyPem: string,
  extensions: Record<string, string> = {},
  challengePassword?: string,
): string {
  const privateKey = createPrivateKey(privateKeyPem);
  const spki = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  const requested = Object.entries(extensions).map(([name, value]) => {
    const id = PUPPET_EXTENSIONS[name];
    if (!id) throw new Error(`unknown Puppet extension ${name}; known: ${Object.keys(PUPPET_EXTENSIONS).join(", ")}`);
    return new Extension({ extnID: id, critical: false, extnValue: new OctetString(utf8String(value)) });
  });
  const attributes = new Attributes();
  if (challengePassword !== undefined) {
    attributes.push(new Attribute({ type: OID.challengePassword, values: [utf8String(challengePassword)] }));
  }
  if (requested.length) {
    attributes.push(
      new Attribute({ type: OID.extensionRequest, values: [AsnConvert.serialize(new Extensions(requested))] }),
    );
  }
  const info = new CertificationRequestInfo({
    subject: new Name([
      new RelativeDistinguishedName([
        new AttributeTypeAndValue({ type: OID.commonName, value: new AttributeValue({ utf8String: certname }) }),
      ]),
    ]),
    subjectPKInfo: AsnConvert.parse(spki, SubjectPublicKeyInfo),
    attributes,
  });
  const { hash, algorithm } = signatureFor(privateKey.asymmetricKeyType, privateKey.asymmetricKeyDetails?.namedCurve);
  const csr = new CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: algorithm,
    // ECDSA signatures come DER-encoded (Node's default), as X.509 carries them.
    signature: new Uint8Array(sign(hash, Buffer.from(AsnConvert.serialize(info)), privateKey)).buffer,
  });
  const der = Buffer.from(AsnConvert.serialize(csr)).toString("base64");
  return `-----BEGIN CERTIFICATE REQUEST-----\n${der.replace(/.{64}/g, "$&\n").replace(/\n$/, "")}\n-----END CERTIFICATE REQUEST-----\n`;
}

/** A UTF8String's DER, as Puppet encodes its extension values and a challengePassword. */
function utf8String(value: string): ArrayBuffer {
  return AsnConvert.serialize(new AttributeValue({ utf8String: value }));
}

/** The digest and the signatureAlgorithm identifier for a key. */
function signatureFor(
  type: string | undefined,
  curve: string | undefined,
): { hash: string; algorithm: AlgorithmIdentifier } {
  if (type === "rsa") {
    // sha256WithRSAEncryption, whose parameters are an explicit NULL.
    return {
      hash: "sha256",
      algorithm: new AlgorithmIdentifier({ algorithm: "1.2.840.113549.1.1.11", parameters: null }),
    };
  }
  if (type === "ec" && (curve === "prime256v1" || curve === "P-256"))
    return { hash: "sha256", algorithm: new AlgorithmIdentifier({ algorithm: "1.2.840.10045.4.3.2" }) };
  if (type === "ec" && (curve === "secp384r1" || curve === "P-384"))
    return { hash: "sha384", algorithm: new AlgorithmIdentifier({ algorithm: "1.2.840.10045.4.3.3" }) };
  throw new Error(
    `cannot make a CSR with a ${type ?? "unknown"} key${curve ? ` on ${curve}` : ""}: use RSA or EC P-256/P-384`,
  );
}

export interface CsrSummary {
  /** The subject's first CN, the one Puppet uses. */
  commonName: string | undefined;
  /** Every CN in the subject: Puppet reads the first, so a CSR with more is refused. */
  commonNames: string[];
  /** SHA-256 (hex) of the CSR's public key (its SubjectPublicKeyInfo, DER). */
  publicKeySha256: string;
  /** Why the CSR's own signature does not verify with its public key, or undefined when it does. */
  signatureProblem: string | undefined;
  keyType: "rsa" | "ec-p256" | "ec-p384" | "other";
  /** OIDs of the requested extensions. */
  extensions: string[];
  /** The requested extensions' values, by OID, where the value is a string (as Puppet's pp_* are). */
  extensionValues: Record<string, string>;
  /** The challengePassword attribute (an enrollment token travels in it), when the CSR has one. */
  challengePassword: string | undefined;
  /** DNS names of a requested subjectAltName extension. */
  dnsAltNames: string[];
  /** True when the SAN requests anything other than DNS names. */
  otherAltNames: boolean;
}

/** The subjectAltName extension's OID, which csrProblem checks apart from Puppet's pp_* ones. */
export const SUBJECT_ALT_NAME_OID = "2.5.29.17";

const OID = {
  commonName: "2.5.4.3",
  rsaEncryption: "1.2.840.113549.1.1.1",
  ecPublicKey: "1.2.840.10045.2.1",
  p256: "1.2.840.10045.3.1.7",
  p384: "1.3.132.0.34",
  extensionRequest: "1.2.840.113549.1.9.14",
  challengePassword: "1.2.840.113549.1.9.7",
  subjectAltName: SUBJECT_ALT_NAME_OID,
};

/**
 * Reads a PEM CSR's subject CN, key type and requested extensions. Works from the ASN.1 directly
 * because node-forge's CSR parser accepts RSA keys only, and EC CSRs must be read too.
 * Throws an Error with a plain message when the text is not a CSR.
 */
export function inspectCsr(pem: string): CsrSummary {
  const { asn1 } = forge;
  let root: forge.asn1.Asn1;
  try {
    const msg = forge.pem.decode(pem)[0];
    if (!msg || msg.type !== "CERTIFICATE REQUEST") throw new Error("not a CERTIFICATE REQUEST block");
    root = asn1.fromDer(msg.body);
  } catch (err) {
    throw new Error(`not a PEM certificate request (${(err as Error).message})`);
  }
  const children = (node: forge.asn1.Asn1 | undefined): forge.asn1.Asn1[] =>
    Array.isArray(node?.value) ? node.value : [];
  const oid = (node: forge.asn1.Asn1 | undefined): string | undefined =>
    node && node.type === asn1.Type.OID && typeof node.value === "string" ? asn1.derToOid(node.value) : undefined;

  const info = children(root)[0];
  const [, subject, spki, attributes] = children(info);
  if (!subject || !spki) throw new Error("not a PEM certificate request (missing subject or public key)");

  const commonNames: string[] = [];
  for (const rdn of children(subject)) {
    for (const pair of children(rdn)) {
      const [type, value] = children(pair);
      if (oid(type) === OID.commonName)
        commonNames.push(typeof value?.value === "string" ? forge.util.decodeUtf8(value.value) : "");
    }
  }

  const [algorithm] = children(spki);
  const [keyOid, params] = children(algorithm);
  let keyType: CsrSummary["keyType"] = "other";
  if (oid(keyOid) === OID.rsaEncryption) keyType = "rsa";
  else if (oid(keyOid) === OID.ecPublicKey)
    keyType = oid(params) === OID.p256 ? "ec-p256" : oid(params) === OID.p384 ? "ec-p384" : "other";

  /** The text of a string-typed ASN.1 value (UTF8String, PrintableString, IA5String…), or undefined. */
  const text = (node: forge.asn1.Asn1 | undefined): string | undefined => {
    const stringTypes: number[] = [asn1.Type.UTF8, asn1.Type.PRINTABLESTRING, asn1.Type.IA5STRING, 20, 30];
    if (!node || node.tagClass !== asn1.Class.UNIVERSAL || !stringTypes.includes(node.type)) return undefined;
    return typeof node.value === "string" ? forge.util.decodeUtf8(node.value) : undefined;
  };

  const extensions: string[] = [];
  const extensionValues: Record<string, string> = {};
  const dnsAltNames: string[] = [];
  let otherAltNames = false;
  let challengePassword: string | undefined;
  for (const attribute of children(attributes)) {
    const [type, values] = children(attribute);
    if (oid(type) === OID.challengePassword) challengePassword = text(children(values)[0]);
    if (oid(type) !== OID.extensionRequest) continue;
    for (const list of children(values)) {
      for (const extension of children(list)) {
        const parts = children(extension);
        const id = oid(parts[0]);
        if (!id) continue;
        extensions.push(id);
        const octets = parts[parts.length - 1];
        if (id !== OID.subjectAltName && typeof octets?.value === "string") {
          let value: string | undefined;
          try {
            value = text(asn1.fromDer(octets.value));
          } catch {
            value = undefined;
          }
          if (value !== undefined) extensionValues[id] = value;
        }
        if (id === OID.subjectAltName) {
          const names = typeof octets?.value === "string" ? children(asn1.fromDer(octets.value)) : [];
          for (const name of names) {
            // Context tag 2 is dNSName; anything else (IP, URI, email) Puppet Server refuses by default.
            if (name.tagClass === asn1.Class.CONTEXT_SPECIFIC && name.type === 2 && typeof name.value === "string")
              dnsAltNames.push(name.value);
            else otherAltNames = true;
          }
        }
      }
    }
  }
  const der = Buffer.from(forge.pem.decode(pem)[0]!.body, "binary");
  const signatureOid = oid(children(children(root)[1])[0]);
  const signed = csrParts(der);
  return {
    commonName: commonNames[0],
    commonNames,
    publicKeySha256: createHash("sha256").update(signed.spki).digest("hex"),
    signatureProblem: signatureProblem(signatureOid, signed.info, signed.spki, signed.signature),
    keyType,
    extensions,
    extensionValues,
    challengePassword,
    dnsAltNames,
    otherAltNames,
  };
}

/** One DER element at `at`: where its contents start and where it ends. */
function derElement(der: Buffer, at: number): { contents: number; end: number } {
  if (at + 2 > der.length) throw new Error("truncated DER");
  const first = der[at + 1]!;
  let length = first;
  let contents = at + 2;
  if (first & 0x80) {
    const bytes = first & 0x7f;
    if (bytes === 0 || bytes > 4) throw new Error("unsupported DER length");
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + der[contents + i]!;
    contents += bytes;
  }
  const end = contents + length;
  if (end > der.length) throw new Error("truncated DER");
  return { contents, end };
}

/**
 * The exact bytes a CSR's signature covers (CertificationRequestInfo), its public key (SPKI) and
 * its signature. The signed bytes are sliced from the original DER, never re-encoded, so a
 * signature is checked against what the requester really signed.
 */
function csrParts(der: Buffer): { info: Buffer; spki: Buffer; signature: Buffer } {
  const outer = derElement(der, 0);
  const info = derElement(der, outer.contents);
  const algorithm = derElement(der, info.end);
  const signature = derElement(der, algorithm.end);
  const version = derElement(der, info.contents);
  const subject = derElement(der, version.end);
  const spki = derElement(der, subject.end);
  return {
    info: der.subarray(outer.contents, info.end),
    spki: der.subarray(subject.end, spki.end),
    // A BIT STRING's first content byte counts unused bits (0 for signatures).
    signature: der.subarray(signature.contents + 1, signature.end),
  };
}

/** Signature algorithms a CSR may use, with the hash each implies (RSA PKCS#1 v1.5 and ECDSA). */
const SIGNATURE_HASHES: Readonly<Record<string, string>> = {
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
  "1.2.840.10045.4.3.2": "sha256",
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
};

function signatureProblem(
  algorithm: string | undefined,
  info: Buffer,
  spki: Buffer,
  signature: Buffer,
): string | undefined {
  const hash = algorithm && SIGNATURE_HASHES[algorithm];
  if (!hash)
    return `its signature algorithm ${algorithm ?? "(missing)"} is not one espm checks (RSA or ECDSA with SHA-256, -384 or -512)`;
  try {
    const key = createPublicKey({ key: spki, format: "der", type: "spki" });
    return verify(hash, info, key, signature)
      ? undefined
      : "its signature does not verify with its own public key (no proof that the requester holds the private key)";
  } catch (err) {
    return `its signature cannot be checked: ${(err as Error).message}`;
  }
}

/** SHA-256 (hex) of a PEM certificate's public key, comparable with CsrSummary.publicKeySha256. */
export function certificatePublicKeySha256(certificatePem: string): string {
  const spki = new X509Certificate(certificatePem).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("hex");
}

/**
 * Why this CSR must not be signed for certname, or undefined when it may: read the way Puppet
 * reads it (the first CN is the certname, so exactly one CN), signed by the key it carries (proof
 * of possession), and asking for nothing Puppet Server would refuse.
 */
export function csrProblem(pem: string, certname: string): string | undefined {
  let csr: CsrSummary;
  try {
    csr = inspectCsr(pem);
  } catch (err) {
    return (err as Error).message;
  }
  if (csr.commonNames.length !== 1) {
    return `its subject has ${csr.commonNames.length} CNs; it must have exactly one, the certname ${certname} (Puppet reads only the first)`;
  }
  if (csr.commonName !== certname) return `its subject CN is ${csr.commonName}; it must be the certname ${certname}`;
  if (csr.signatureProblem) return csr.signatureProblem;
  if (csr.keyType === "other") return "its key must be RSA or EC on P-256 or P-384";
  const repeated = csr.extensions.find((id, i) => csr.extensions.indexOf(id) !== i);
  if (repeated !== undefined) {
    const name = puppetExtensionName(repeated) ?? repeated;
    return `it requests extension ${name} more than once; readers may take different values, so it must appear once`;
  }
  for (const id of csr.extensions) {
    if (id === OID.subjectAltName) {
      if (csr.otherAltNames || csr.dnsAltNames.length !== 1 || csr.dnsAltNames[0] !== certname)
        return `its subjectAltName, if any, must be exactly DNS:${certname}`;
    } else if (!id.startsWith("1.3.6.1.4.1.34380.1.1.") && !id.startsWith("1.3.6.1.4.1.34380.1.2.")) {
      return `it requests extension ${id}; only Puppet's pp_* extensions (1.3.6.1.4.1.34380.1.1.* and 1.3.6.1.4.1.34380.1.2.*) are allowed`;
    }
  }
  return undefined;
}
