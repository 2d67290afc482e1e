/** What espm reads from a CSR and refuses to sign, the way Puppet reads it (agent/ca/csr.ts). */
import assert from "node:assert/strict";
import { createCsr, generateKeyPairAsync, PUPPET_EXTENSIONS } from "espm-sdk/x509";
import { csrProblem, inspectCsr } from "espm-agent/ca/csr";

describe("CSR checks", () => {
  let key: string;
  before(async () => (key = (await generateKeyPairAsync("ec-p256")).privateKeyPem));

  it("takes a CSR for the certname, signed by its own key", () => {
    assert.equal(csrProblem(createCsr("web-01.example.test", key), "web-01.example.test"), undefined);
  });

  it("reads the CN, the key type, the pp_* values and the challengePassword", async () => {
    const csr = inspectCsr(createCsr("web-01.example.test", key, { pp_role: "web", pp_uuid: "ü-1" }, "t0ken"));
    assert.deepEqual(csr.commonNames, ["web-01.example.test"]);
    assert.equal(csr.keyType, "ec-p256");
    assert.deepEqual(csr.extensions, [PUPPET_EXTENSIONS.pp_role, PUPPET_EXTENSIONS.pp_uuid]);
    assert.deepEqual(csr.extensionValues, { [PUPPET_EXTENSIONS.pp_role!]: "web", [PUPPET_EXTENSIONS.pp_uuid!]: "ü-1" });
    assert.equal(csr.challengePassword, "t0ken");
    assert.equal(csr.signatureProblem, undefined);
    const rsa = (await generateKeyPairAsync("rsa-2048")).privateKeyPem;
    assert.equal(inspectCsr(createCsr("db-01.example.test", rsa)).keyType, "rsa");
  });

  it("finds a signature that does not cover what the CSR says", () => {
    const der = Buffer.from(createCsr("web-01.example.test", key).replace(/-----[^-]+-----|\s/g, ""), "base64");
    const at = der.indexOf(Buffer.from("web-01"));
    der[at] = "x".charCodeAt(0); // the CN now reads xeb-01, which the requester never signed
    const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    assert.deepEqual(inspectCsr(pem).commonNames, ["xeb-01.example.test"]);
    assert.match(csrProblem(pem, "xeb-01.example.test") ?? "", /signature does not verify with its own public key/);
  });

  it("names what is wrong otherwise", () => {
    assert.match(
      csrProblem(createCsr("web-01.example.test", key), "web-02.example.test") ?? "",
      /must be the certname web-02/,
    );
    assert.match(csrProblem("garbage", "web-01.example.test") ?? "", /not a PEM certificate request/);
  });
});
