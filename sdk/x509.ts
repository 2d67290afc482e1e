/**
 * The X.509 work both sides share: client CSRs, and (from keys.ts, re-exported here) keys and
 * reading certificates. Keys come from Node's native crypto (fast, constant-time), and so do CSR
 * signatures. CSRs (RSA or EC) are built with PeculiarVentures' ASN.1 schemas (@peculiar/asn1-csr,
 * the maintained library under @peculiar/x509, without its WebCrypto and dependency-injection
 * layers), and the agent reads them with the same schemas (agent/ca/csr.ts).
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
import { createPrivateKey, createPublicKey, sign } from "node:crypto";
import { PUPPET_EXTENSIONS } from "./puppet-extensions";

export { PUPPET_EXTENSIONS, puppetExtensionName } from "./puppet-extensions";
export * from "./keys";

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
    attributes.push(new Attribute({ type: CSR_OID.challengePassword, values: [utf8String(challengePassword)] }));
  }
  if (requested.length) {
    attributes.push(
      new Attribute({ type: CSR_OID.extensionRequest, values: [AsnConvert.serialize(new Extensions(requested))] }),
    );
  }
  const info = new CertificationRequestInfo({
    subject: new Name([
      new RelativeDistinguishedName([
        new AttributeTypeAndValue({ type: CSR_OID.commonName, value: new AttributeValue({ utf8String: certname }) }),
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

/** The OIDs a CSR is built from (shared with the agent's reader, agent/ca/csr.ts). */
export const CSR_OID = {
  commonName: "2.5.4.3",
  extensionRequest: "1.2.840.113549.1.9.14",
  challengePassword: "1.2.840.113549.1.9.7",
} as const;
