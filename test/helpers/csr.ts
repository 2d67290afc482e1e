/**
 * CSRs that no well-behaved tool makes, for the tests that play an attacker: `openssl req` refuses
 * a repeated extension, and espm's own createCsr never writes one.
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
import { PUPPET_EXTENSIONS } from "espm-sdk/x509";

const utf8 = (value: string) => AsnConvert.serialize(new AttributeValue({ utf8String: value }));

/**
 * An RSA CSR for certname that requests the Puppet extension `extension` once per value (e.g.
 * pp_role twice: "web", then "db"), with a challengePassword when given.
 */
export function csrWithRepeatedExtension(
  certname: string,
  rsaKeyPem: string,
  extension: string,
  values: string[],
  challengePassword?: string,
): string {
  const privateKey = createPrivateKey(rsaKeyPem);
  const spki = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  const id = PUPPET_EXTENSIONS[extension]!;
  const requested = values.map(
    (value) => new Extension({ extnID: id, critical: false, extnValue: new OctetString(utf8(value)) }),
  );
  const attributes = new Attributes();
  if (challengePassword !== undefined)
    attributes.push(new Attribute({ type: "1.2.840.113549.1.9.7", values: [utf8(challengePassword)] }));
  attributes.push(
    new Attribute({ type: "1.2.840.113549.1.9.14", values: [AsnConvert.serialize(new Extensions(requested))] }),
  );
  const info = new CertificationRequestInfo({
    subject: new Name([
      new RelativeDistinguishedName([
        new AttributeTypeAndValue({ type: "2.5.4.3", value: new AttributeValue({ utf8String: certname }) }),
      ]),
    ]),
    subjectPKInfo: AsnConvert.parse(spki, SubjectPublicKeyInfo),
    attributes,
  });
  const csr = new CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: new AlgorithmIdentifier({ algorithm: "1.2.840.113549.1.1.11", parameters: null }),
    signature: new Uint8Array(sign("sha256", Buffer.from(AsnConvert.serialize(info)), privateKey)).buffer,
  });
  const der = Buffer.from(AsnConvert.serialize(csr)).toString("base64");
  return `-----BEGIN CERTIFICATE REQUEST-----\n${der.replace(/.{64}/g, "$&\n").replace(/\n$/, "")}\n-----END CERTIFICATE REQUEST-----\n`;
}
