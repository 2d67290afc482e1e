/** The ENC's YAML (agent/enc/enc.ts renderEnc): what Puppet reads for every catalog compile. */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { renderEnc } from "espm-agent/enc/enc";

describe("the ENC renderer", () => {
  it("writes the classification so that a YAML 1.1 reader gets it back exactly", () => {
    const classification = {
      environment: "production",
      classes: {
        ntp: { servers: ["0.pool.ntp.org"], big: 1e21, small: 0.5, on: true, none: null },
        "profile::web": {},
      },
      parameters: { quote: 'say "hi"', separators: "a\u2028b\u0085c", yes: "yes", colon: "a: b" },
    };
    const text = renderEnc(classification);
    assert.deepEqual(parse(text, { version: "1.1" }), classification);
  });

  it("writes no classes as an empty mapping, and every key and value in JSON's notation", () => {
    const text = renderEnc({ environment: "production", classes: {}, parameters: {} });
    assert.equal(text, '---\nenvironment: "production"\nclasses: {}\nparameters: {}\n');
    assert.match(renderEnc({ environment: "e", classes: { a: { n: 1e21 } }, parameters: {} }), /"n": 1\.0e\+21/);
  });
});
