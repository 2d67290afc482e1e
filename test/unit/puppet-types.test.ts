/** Puppet's type language as `pulumi preview` and groups.yaml's check read it (sdk/puppet-types.ts). */
import assert from "node:assert/strict";
import { parsePuppetType, typeProblem } from "espm-sdk/puppet-types";

const problem = (type: string, value: unknown) => typeProblem(parsePuppetType(type), value);

describe("Puppet types", () => {
  it("parses the forms classes declare, and reads anything else as Any", () => {
    const kinds = Object.fromEntries(
      [
        "Integer[1,10]",
        "Optional[String]",
        "Array[Integer]",
        "Hash[String, Integer]",
        'Enum["a", "b"]',
        "Variant[Integer, Boolean]",
        "Pattern[/^a/]",
        "String[2]",
        "Stdlib::Port",
        "Enum[a",
        "",
      ].map((t) => [t, parsePuppetType(t).kind]),
    );
    assert.deepEqual(kinds, {
      "Integer[1,10]": "integer",
      "Optional[String]": "optional",
      "Array[Integer]": "array",
      "Hash[String, Integer]": "hash",
      'Enum["a", "b"]': "enum",
      "Variant[Integer, Boolean]": "variant",
      "Pattern[/^a/]": "pattern",
      "String[2]": "string",
      "Stdlib::Port": "any",
      "Enum[a": "any",
      "": "any",
    });
  });

  it("names where a value fails and what Puppet expects there", () => {
    assert.deepEqual(problem("Integer[1,10]", 11), { at: "", expected: "Integer[1,10]", got: 11 });
    assert.deepEqual(problem("Array[Integer]", [1, "x"]), { at: "[1]", expected: "Integer", got: "x" });
    assert.deepEqual(problem("Hash[String, Integer]", { a: "x" }), { at: ".a", expected: "Integer", got: "x" });
    assert.deepEqual(problem('Enum["a", "b"]', "c"), { at: "", expected: 'Enum["a", "b"]', got: "c" });
    assert.deepEqual(problem("String[2]", "a"), { at: "", expected: "String[2]", got: "a" });
    assert.equal(problem("Variant[Integer, Boolean]", "s")?.expected, "Variant[Integer, Boolean]");
  });

  it("lets through what fits, undef where Optional allows it, and anything of a type it cannot read", () => {
    assert.equal(problem("Integer[1,10]", 5), undefined);
    assert.equal(problem("Optional[String]", null), undefined);
    assert.equal(problem('Enum["a", "b"]', "a"), undefined);
    assert.equal(problem("Variant[Integer, Boolean]", true), undefined);
    assert.equal(problem("Stdlib::Port", "not a port, but espm cannot tell"), undefined);
  });
});
