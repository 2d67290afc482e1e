/** The certname policy every route and `espm enc` apply (agent/ca/certname-policy.ts). */
import assert from "node:assert/strict";
import { CertnamePolicy, matchesPattern, patternProblem } from "espm-agent/ca/certname-policy";

describe("the certname policy", () => {
  it("takes '*' as exactly one whole label", () => {
    assert.equal(matchesPattern("web-01.nodes.example.com", "*.nodes.example.com"), true);
    assert.equal(matchesPattern("a.web-01.nodes.example.com", "*.nodes.example.com"), false);
    assert.equal(matchesPattern("nodes.example.com", "*.nodes.example.com"), false);
    assert.match(patternProblem("web*.example.com") ?? "", /whole label/);
    assert.match(patternProblem("*.*") ?? "", /at least one fixed label/);
    assert.match(patternProblem("Web.example.com") ?? "", /lowercase/);
    assert.equal(patternProblem("*.nodes.example.com"), undefined);
  });

  it("refuses by rule, in order: reserved, deny, patterns, not yet learned, server names, alt names", () => {
    const policy = new CertnamePolicy(
      { patterns: ["*.example.test"], allowAny: false, deny: ["old.example.test"] },
      true,
    );
    const rule = (name: string) => policy.refusal(name)?.rule;
    assert.equal(rule("puppet"), "reserved");
    assert.equal(rule("old.example.test"), "deny");
    assert.equal(rule("web.other.test"), "patterns");
    assert.equal(policy.refusal("web.example.test")?.unknown, true, "Puppet Server's names not learned yet");
    policy.learn({ server: ["Master.example.test"], altNamed: ["compile.example.test"] });
    assert.equal(rule("master.example.test"), "server-names");
    assert.equal(rule("compile.example.test"), "alt-names");
    assert.equal(rule("web.example.test"), undefined);
  });
});
