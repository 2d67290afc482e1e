/**
 * The rendered first-boot userdata, byte for byte, against a snapshot kept in the repository (as
 * pulumi-eks keeps its rendered templates): any change to what an instance runs shows up as a diff
 * in review. After an intended change, write the new snapshot with ESPM_UPDATE_SNAPSHOTS=1.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderUserData } from "pulumi-espm/userdata";

const SNAPSHOTS = join(__dirname, "..", "..", "..", "test", "unit", "snapshots");
const here = existsSync(join(__dirname, "snapshots")) ? join(__dirname, "snapshots") : SNAPSHOTS;

function matchesSnapshot(name: string, text: string): void {
  const file = join(here, name);
  if (process.env.ESPM_UPDATE_SNAPSHOTS === "1") writeFileSync(file, text);
  assert.ok(existsSync(file), `no snapshot ${name}: run with ESPM_UPDATE_SNAPSHOTS=1 to write it`);
  assert.equal(text, readFileSync(file, "utf8"), `${name} differs from its snapshot`);
}

describe("the rendered userdata", () => {
  it("in the instance key mode, with facts and hooks, is the snapshot", () => {
    const rendered = renderUserData({
      nodeName: "web-01.nodes.example.test",
      master: "10.0.0.5",
      masterPort: 8140,
      environment: "production",
      caCertificatePem: readFileSync(join(here, "puppet-ca.cert.txt"), "utf8"),
      enrollment: { token: "T0k3nT0k3nT0k3nT0k3nT0k3nT0k3n42", extensions: { pp_role: "web" } },
      facts: { role: "web" },
      before: "hostname web-01",
      after: "echo ok",
    });
    matchesSnapshot("instance-mode.userdata.sh", rendered.script);
  });

  it("with only the CA bundle's fingerprint, is the snapshot: no bundle, the fingerprint for the agent to check", () => {
    const rendered = renderUserData({
      nodeName: "web-02.nodes.example.test",
      master: "puppet.example.test",
      caFingerprint: "4f3c2b1a".repeat(8),
      enrollment: { token: "T0k3nT0k3nT0k3nT0k3nT0k3nT0k3n42" },
    });
    assert.doesNotMatch(rendered.script, /BEGIN CERTIFICATE/);
    matchesSnapshot("fingerprint-mode.userdata.sh", rendered.script);
  });
});
