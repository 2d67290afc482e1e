import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { bootstrapScriptPath, renderUserData, USERDATA_LIMIT } from "pulumi-espm/userdata";
import { createSelfSignedCertificate } from "espm-agent/http/self-signed";
import { ROOT } from "./helpers/espm";

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
    assert.ok(
      out.script.includes("ESPM_NODE_NAME='web-01.example.test'\nESPM_MASTER='10.0.0.5'\nESPM_MASTER_PORT=8140\n"),
    );
    assert.ok(out.script.includes('--certname "$ESPM_NODE_NAME" --master "$ESPM_MASTER" --port "$ESPM_MASTER_PORT"'));
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

  it("writes hooks as files the bootstrap runs, and refuses one that holds its heredoc's delimiter", () => {
    const out = renderUserData({
      ...base,
      before: "hostname web-01",
      after: "echo done",
      onFailure: "echo $ESPM_AGENT_EXIT",
    });
    assert.match(out.script, /cat > "\$d\/before.sh" <<'ESPM_HOOK_BEFORE'\nhostname web-01\nESPM_HOOK_BEFORE\n/);
    assert.match(out.script, /--before "\$d\/before.sh" --after "\$d\/after.sh" --on-failure "\$d\/onFailure.sh"/);
    assert.throws(
      () => renderUserData({ ...base, after: "echo\nESPM_HOOK_AFTER\nrm -rf /" }),
      /after must not contain the line ESPM_HOOK_AFTER/,
    );
  });

  it("writes facts as single-quoted YAML, and refuses names and values that are not facts", () => {
    const out = renderUserData({ ...base, facts: { role: "web", motto: "it's fine: {yes}" } });
    assert.match(out.script, /role: 'web'\nmotto: 'it''s fine: \{yes\}'\n/);
    assert.match(out.script, /--facts "\$d\/facts.yaml"/);
    assert.throws(
      () => renderUserData({ ...base, facts: { "Bad-Name": "x" } }),
      /facts: "Bad-Name" is not a fact name/,
    );
    assert.throws(() => renderUserData({ ...base, facts: { ok: "line\nbreak" } }), /facts.ok must be a string/);
  });

  it("takes a template of the user's that uses espm's variables, and refuses one that misses one, naming it", () => {
    const template =
      'echo "mine"\nsh "$ESPM_BOOTSTRAP" --certname "$ESPM_NODE_NAME" --master "$ESPM_MASTER" --ca "$ESPM_CA_FILE" --cert "$ESPM_CERT_FILE" --key "$ESPM_KEY_FILE" "$@"';
    assert.ok(renderUserData({ ...base, script: template }).script.endsWith(`${template}\n`));
    assert.ok(renderUserData({ ...base, script: 'hostname x\nespm_bootstrap "$@"' }));
    assert.throws(
      () => renderUserData({ ...base, script: 'puppet agent -t --server "$ESPM_MASTER" --certname "$ESPM_NODE_NAME"' }),
      /script does not use \$ESPM_CA_FILE, \$ESPM_CERT_FILE, \$ESPM_KEY_FILE/,
    );
    const token = { token: "ab".repeat(32) };
    const instance = { ...base, certificatePem: undefined, privateKeyPem: undefined, enrollment: token };
    assert.throws(
      () => renderUserData({ ...instance, script: "echo $ESPM_NODE_NAME $ESPM_MASTER $ESPM_CA_FILE" }),
      /\$ESPM_TOKEN_FILE/,
    );
  });

  it("sends a cloud config beside the script as a multi-part message that Python's email package parses back into the same parts", () => {
    const cloudConfig = "#cloud-config\npackages:\n  - puppet-agent\n";
    const out = renderUserData({ ...base, cloudConfig });
    assert.equal(out.multipart, true);
    assert.ok(out.bytes <= USERDATA_LIMIT);
    const message = Buffer.from(out.base64, "base64");
    const parsed = JSON.parse(
      execFileSync(
        "python3",
        [
          "-c",
          "import email, json, sys\nm = email.message_from_bytes(sys.stdin.buffer.read())\nprint(json.dumps([m.get_content_type()] + [[p.get_content_type(), p.get_filename(), p.get_payload(decode=True).decode()] for p in m.get_payload()]))",
        ],
        { input: message },
      ).toString(),
    ) as [string, ...Array<[string, string, string]>];
    assert.equal(parsed[0], "multipart/mixed");
    assert.deepEqual(
      parsed.slice(1).map(([type, filename]) => [type, filename]),
      [
        ["text/cloud-config", "cloud-config.yaml"],
        ["text/x-shellscript", "espm-bootstrap.sh"],
      ],
    );
    assert.equal(parsed[1]![2], cloudConfig);
    assert.equal(parsed[2]![2], out.script);
    assert.throws(
      () => renderUserData({ ...base, cloudConfig: "packages: [x]" }),
      /cloudConfig must start with #cloud-config/,
    );
  });

  it("gzips a multi-part message that only fits compressed", () => {
    const big = `#cloud-config\nwrite_files:\n${Array.from({ length: 200 }, (_, i) => `  - path: /etc/espm-example-${i}\n    content: "the same line, again and again"\n`).join("")}`;
    const out = renderUserData({ ...base, cloudConfig: big });
    assert.equal(out.gzipped, true);
    assert.match(gunzipSync(Buffer.from(out.base64, "base64")).toString(), /^Content-Type: multipart\/mixed/);
  });

  it("takes the CA bundle's fingerprint instead of the bundle, and refuses neither or one that is not a SHA-256", () => {
    const fingerprint = createHash("sha256").update(tls.certificatePem).digest("hex");
    const lean = { ...base, caCertificatePem: undefined, caFingerprint: fingerprint };
    const out = renderUserData(lean);
    assert.equal(out.script.match(/BEGIN CERTIFICATE/g)?.length, 1, "the node's own certificate, no bundle");
    assert.ok(out.script.includes(`ESPM_CA_FILE=\nESPM_CA_FINGERPRINT=${fingerprint}\n`));
    assert.ok(out.script.includes('--ca-fingerprint "$ESPM_CA_FINGERPRINT"'));
    // What includeCaBundle: false gives (an empty bundle) falls to the fingerprint; a bundle, when there is one, wins.
    assert.ok(renderUserData({ ...lean, caCertificatePem: "" }).script.includes("--ca-fingerprint"));
    assert.ok(renderUserData({ ...base, caFingerprint: fingerprint }).script.includes('--ca "$ESPM_CA_FILE"'));
    assert.throws(
      () => renderUserData({ ...base, caCertificatePem: "" }),
      /give caCertificatePem \(the CA bundle\) or caFingerprint/,
    );
    assert.throws(
      () => renderUserData({ ...lean, caFingerprint: "AB:CD:EF" }),
      /caFingerprint must be the CA bundle's SHA-256/,
    );
    assert.throws(
      () =>
        renderUserData({
          ...lean,
          script: "echo $ESPM_NODE_NAME $ESPM_MASTER $ESPM_CA_FILE $ESPM_CERT_FILE $ESPM_KEY_FILE",
        }),
      /script does not use \$ESPM_CA_FINGERPRINT/,
    );
  });

  it("has the bootstrap refuse --ca with --ca-fingerprint, and a fingerprint that is not 64 hex digits, before it touches anything", () => {
    const run = (...args: string[]) =>
      spawnSync("sh", [bootstrapScriptPath(), "--certname", "web-01.example.test", "--master", "puppet", ...args], {
        encoding: "utf8",
      });
    const both = run("--ca", "/etc/hostname", "--ca-fingerprint", "ab".repeat(32), "--token-file", "/etc/hostname");
    assert.equal(both.status, 64);
    assert.match(both.stderr, /give either --ca or --ca-fingerprint, not both/);
    for (const bad of ["ab".repeat(31), "zz".repeat(32), "AB:CD"]) {
      const refused = run("--ca-fingerprint", bad, "--token-file", "/etc/hostname");
      assert.equal(refused.status, 64, bad);
      assert.match(refused.stderr, /--ca-fingerprint must be the CA bundle's SHA-256 in 64 hex digits/);
    }
    const neither = run("--token-file", "/etc/hostname");
    assert.equal(neither.status, 64);
    assert.match(neither.stderr, /--ca must name a readable PEM file .*or give --ca-fingerprint/);
  });

  it("costs, per option, what docs/resources.md's size table says (within 25 B)", () => {
    const plain = renderUserData(base).bytes;
    const added = (o: Partial<Parameters<typeof renderUserData>[0]>) => renderUserData({ ...base, ...o }).bytes - plain;
    // What each option adds beyond its own text, as the table's "adds" column counts it.
    const measured: Record<string, number> = {
      before: added({ before: "hostname web-01" }) - "hostname web-01".length,
      after: added({ after: "echo ok" }) - "echo ok".length,
      onFailure: added({ onFailure: "echo failed" }) - "echo failed".length,
      facts: added({ facts: { role: "web", tier: "front" } }),
      installAgent: added({ installAgent: "distro" }),
      cloudConfig: added({ cloudConfig: "#cloud-config\npackages:\n  - puppet-agent\n" }),
    };
    const table = readFileSync(join(ROOT, "docs/resources.md"), "utf8");
    for (const [option, bytes] of Object.entries(measured)) {
      const row = new RegExp(`^\\| \`${option}\` \\|.*\\| (\\d+) B[^|]*\\|$`, "m").exec(table);
      assert.ok(row, `docs/resources.md has a row for ${option} with what it adds`);
      assert.ok(Math.abs(bytes - Number(row[1])) <= 25, `${option} adds ${bytes} B; the table says ${row[1]} B`);
    }
  });
});
