import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { renderUserData, USERDATA_LIMIT } from "../provider/userdata";
import { createSelfSignedCertificate } from "../sdk/x509";

describe("renderUserData", () => {
  const tls = createSelfSignedCertificate({ commonName: "web-01.example.test", altNames: ["web-01.example.test"] });
  const base = {
    nodeName: "web-01.example.test",
    master: "10.0.0.5",
    certificatePem: tls.certificatePem,
    privateKeyPem: tls.privateKeyPem,
    caCertificatePem: tls.certificatePem,
  };

  it("embeds the values and the bootstrap script, without the CRL", () => {
    const out = renderUserData(base);
    assert.equal(out.gzipped, false);
    assert.ok(out.script.startsWith("#!/bin/sh\n"));
    assert.ok(out.script.includes("--certname 'web-01.example.test' --master '10.0.0.5' --port '8140'"));
    assert.ok(out.script.includes(tls.certificatePem.trim()));
    assert.ok(out.script.includes("puppet agent --onetime --no-daemonize --detailed-exitcodes --waitforcert 0"));
    assert.ok(!out.script.includes("X509 CRL"));
    assert.equal(Buffer.from(out.base64, "base64").toString(), out.script);
  });

  it("gzips when the plain text is over 16 KB, and refuses what does not fit even then", () => {
    const bigBundle = Array.from({ length: 12 }, () => tls.certificatePem.trim()).join("\n");
    const out = renderUserData({ ...base, caCertificatePem: bigBundle });
    assert.equal(out.gzipped, true);
    assert.ok(out.bytes <= USERDATA_LIMIT);
    assert.equal(gunzipSync(Buffer.from(out.base64, "base64")).toString(), out.script);
    // Random bytes do not compress: 20 KB of them cannot fit even gzipped.
    const noise = randomBytes(20_000)
      .toString("base64")
      .match(/.{1,64}/g)!
      .join("\n");
    const huge = `-----BEGIN CERTIFICATE-----\n${noise}\n-----END CERTIFICATE-----`;
    assert.throws(
      () => renderUserData({ ...base, caCertificatePem: huge }),
      /bytes even gzip-compressed .* at most 16384/,
    );
  });

  it("refuses bad values naming the field", () => {
    assert.throws(() => renderUserData({ ...base, nodeName: "Web;rm" }), /nodeName/);
    assert.throws(() => renderUserData({ ...base, master: "x'; reboot; '" }), /master/);
    assert.throws(
      () => renderUserData({ ...base, privateKeyPem: tls.certificatePem }),
      /privateKeyPem must be a PEM private key/,
    );
    assert.throws(() => renderUserData({ ...base, masterPort: 70000 }), /masterPort/);
  });
});
