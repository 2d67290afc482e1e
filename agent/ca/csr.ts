/**
 * Reading a CSR as the Puppet CA will, and deciding whether espm may have it signed. One parser,
 * PeculiarVentures' ASN.1 schemas (the toolkit the SDK builds CSRs with), for every decision: the
 * sign route, the enrollment and autosign policy, and whether a request at the CA is espm's. Keys
 * and signatures are Node's crypto.
 */
import { CertificationRequest } from "@peculiar/asn1-csr";
import { AsnConvert } from "@peculiar/asn1-schema";
import { AttributeValue, Extensions, SubjectAlternativeName } from "@peculiar/asn1-x509";
import { createHash, createPublicKey, verify, X509Certificate, type KeyObject } from "node:crypto";
import { CSR_OID, puppetExtensionName } from "espm-sdk/x509";

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

/** The DER inside a PEM block of the given type; throws with a plain message otherwise. */
function pemBody(pem: string, type: string): Buffer {
  const match = new RegExp(`-----BEGIN ${type}-----([A-Za-z0-9+/=\\s]+)-----END ${type}-----`).exec(pem);
  if (!match) throw new Error(`not a ${type} block`);
  return Buffer.from(match[1]!.replace(/\s+/g, ""), "base64");
}

/** The text of a DER string value (UTF8String, PrintableString, IA5String, BMPString…), or undefined. */
function text(der: ArrayBuffer | undefined): string | undefined {
  if (!der) return undefined;
  try {
    const value = AsnConvert.parse(der, AttributeValue);
    return value.anyValue === undefined ? value.toString() : undefined;
  } catch {
    return undefined;
  }
}

function keyTypeOf(key: KeyObject): CsrSummary["keyType"] {
  if (key.asymmetricKeyType === "rsa") return "rsa";
  const curve = key.asymmetricKeyType === "ec" ? key.asymmetricKeyDetails?.namedCurve : undefined;
  return curve === "prime256v1" ? "ec-p256" : curve === "secp384r1" ? "ec-p384" : "other";
}

/**
 * Reads a PEM CSR's subject CNs, key type, requested extensions and challengePassword, and checks
 * its signature over the exact bytes the requester signed (never re-encoded). Throws an Error with
 * a plain message when the text is not a CSR.
 */
export function inspectCsr(pem: string): CsrSummary {
  let csr: CertificationRequest;
  try {
    csr = AsnConvert.parse(pemBody(pem, "CERTIFICATE REQUEST"), CertificationRequest);
  } catch (err) {
    throw new Error(`not a PEM certificate request (${(err as Error).message})`);
  }
  const info = csr.certificationRequestInfo;
  // (Name and its parts are Array subclasses: copy to plain arrays.)
  const commonNames = Array.from(info.subject, (rdn) => Array.from(rdn))
    .flat()
    .filter((pair) => pair.type === CSR_OID.commonName)
    .map((pair) => (pair.value.anyValue === undefined ? pair.value.toString() : ""));

  const spki = Buffer.from(AsnConvert.serialize(info.subjectPKInfo));
  let key: KeyObject | undefined;
  try {
    key = createPublicKey({ key: spki, format: "der", type: "spki" });
  } catch {
    key = undefined;
  }

  const extensions: string[] = [];
  const extensionValues: Record<string, string> = {};
  const dnsAltNames: string[] = [];
  let otherAltNames = false;
  let challengePassword: string | undefined;
  for (const attribute of info.attributes) {
    if (attribute.type === CSR_OID.challengePassword) challengePassword = text(attribute.values[0]);
    if (attribute.type !== CSR_OID.extensionRequest) continue;
    for (const list of attribute.values) {
      for (const extension of AsnConvert.parse(list, Extensions)) {
        extensions.push(extension.extnID);
        const octets = extension.extnValue.buffer;
        if (extension.extnID !== SUBJECT_ALT_NAME_OID) {
          const value = text(octets);
          if (value !== undefined) extensionValues[extension.extnID] = value;
          continue;
        }
        // Only dNSName; anything else (IP, URI, email) Puppet Server refuses by default.
        for (const name of AsnConvert.parse(octets, SubjectAlternativeName)) {
          if (name.dNSName !== undefined) dnsAltNames.push(name.dNSName);
          else otherAltNames = true;
        }
      }
    }
  }
  return {
    commonName: commonNames[0],
    commonNames,
    publicKeySha256: createHash("sha256").update(spki).digest("hex"),
    signatureProblem: signatureProblem(csr, key),
    keyType: key ? keyTypeOf(key) : "other",
    extensions,
    extensionValues,
    challengePassword,
    dnsAltNames,
    otherAltNames,
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

function signatureProblem(csr: CertificationRequest, key: KeyObject | undefined): string | undefined {
  const algorithm = csr.signatureAlgorithm.algorithm;
  const hash = SIGNATURE_HASHES[algorithm];
  if (!hash)
    return `its signature algorithm ${algorithm || "(missing)"} is not one espm checks (RSA or ECDSA with SHA-256, -384 or -512)`;
  if (!key || !csr.certificationRequestInfoRaw)
    return "its signature cannot be checked: its public key is not one Node reads";
  try {
    return verify(hash, Buffer.from(csr.certificationRequestInfoRaw), key, Buffer.from(csr.signature))
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
  return readCsr(pem, certname).problem;
}

/** The CSR's key digest and why it must not be signed for certname (undefined when it may), reading it once. */
export function readCsr(
  pem: string,
  certname: string,
): { problem: string } | { problem?: undefined; publicKeySha256: string } {
  try {
    const csr = inspectCsr(pem);
    const problem = summaryProblem(csr, certname);
    return problem === undefined ? { publicKeySha256: csr.publicKeySha256 } : { problem };
  } catch (err) {
    return { problem: (err as Error).message };
  }
}

/** csrProblem for a CSR already read (reading one is a millisecond of espm's CPU: read it once). */
export function summaryProblem(csr: CsrSummary, certname: string): string | undefined {
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
    if (id === SUBJECT_ALT_NAME_OID) {
      if (csr.otherAltNames || csr.dnsAltNames.length !== 1 || csr.dnsAltNames[0] !== certname)
        return `its subjectAltName, if any, must be exactly DNS:${certname}`;
    } else if (!id.startsWith("1.3.6.1.4.1.34380.1.1.") && !id.startsWith("1.3.6.1.4.1.34380.1.2.")) {
      return `it requests extension ${id}; only Puppet's pp_* extensions (1.3.6.1.4.1.34380.1.1.* and 1.3.6.1.4.1.34380.1.2.*) are allowed`;
    }
  }
  return undefined;
}
