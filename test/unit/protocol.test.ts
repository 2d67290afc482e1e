/** The wire contract's own rules (sdk/protocol.ts), which both sides parse with. */
import assert from "node:assert/strict";
import { nameProblem, schemas, suffixedName } from "espm-sdk/protocol";

describe("the protocol", () => {
  it("accepts Puppet certnames and names what is wrong with others", () => {
    assert.equal(nameProblem("web-01.example.com"), undefined);
    for (const bad of ["", "Web.example.com", "a..b", "../etc/passwd", "x".repeat(300)])
      assert.ok(nameProblem(bad), bad);
  });

  it("suffixes a taken name on its first label only", () => {
    assert.match(suffixedName("web-01.example.com", 1732665600123), /^web-01-1732665600123\.example\.com$/);
  });

  it("refuses a node body with unknown fields", () => {
    const parsed = schemas.createNodeRequest.safeParse({ name: "web-01.example.com", colour: "blue" });
    assert.equal(parsed.success, false);
  });
});
