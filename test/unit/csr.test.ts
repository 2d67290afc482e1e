/** What espm refuses to sign, read the way Puppet reads a CSR (sdk/x509.ts csrProblem). */
import assert from "node:assert/strict";
import { createCsr, csrProblem, generateKeyPairAsync } from "../../sdk/x509";

describe("CSR checks", () => {
  let key: string;
  before(async () => (key = (await generateKeyPairAsync("ec-p256")).privateKeyPem));

  it("takes a CSR for the certname, signed by its own key", () => {
    assert.equal(csrProblem(createCsr("web-01.example.test", key), "web-01.example.test"), undefined);
  });

  it("names what is wrong otherwise", () => {
    assert.match(
      csrProblem(createCsr("web-01.example.test", key), "web-02.example.test") ?? "",
      /must be the certname web-02/,
    );
    assert.match(csrProblem("garbage", "web-01.example.test") ?? "", /not a PEM certificate request/);
  });
});
