/** The API's nesting limit, found without parsing (agent/http/json-depth.ts). */
import assert from "node:assert/strict";
import { jsonDepthExceeds } from "espm-agent/http/json-depth";

describe("the JSON depth check", () => {
  it("counts arrays and objects, not brackets inside strings or escaped quotes", () => {
    assert.equal(jsonDepthExceeds("[[[]]]", 3), false);
    assert.equal(jsonDepthExceeds("[[[[]]]]", 3), true);
    assert.equal(jsonDepthExceeds('{"a": "[[[[[[", "b": {"c": []}}', 3), false);
    assert.equal(jsonDepthExceeds('["\\"[[[[", [[[]]]]', 3), true);
    assert.equal(jsonDepthExceeds("[".repeat(2000), 32), true);
  });
});
