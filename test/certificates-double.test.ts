/**
 * The certificate routes' validation and error paths, with a CA test double: states a real Puppet
 * Server is hard to put in on demand (a foreign pending request, a crash between submit and sign,
 * a CA that is down). The happy path runs against the real Puppet Server in puppet.test.ts.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import {
  BackendError,
  CaRefusal,
  type CaCertificateStatus,
  type CertificateAuthority,
} from "espm-agent/puppetserver/contract";
import { CertnamePolicy } from "espm-agent/ca/certname-policy";
import { EncExport } from "espm-agent/enc/export";
import type { EspmConfig } from "espm-agent/config/config";
import { Idempotency } from "espm-agent/http/idempotency";
import { buildServer } from "espm-agent/http/server";
import type { Store } from "espm-agent/store/store";
import { openSqliteStore } from "espm-agent/store/sqlite";
import { createCsr, describeCertificate, generateRsaKeyPair } from "espm-sdk/x509";

/** Signs CSRs of any key type with a throw-away CA, through openssl, as Puppet's CA would. */
function testCa(dir: string): (csrPem: string) => string {
  const key = join(dir, "test-ca.key");
  const cert = join(dir, "test-ca.pem");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-subj",
      "/CN=Test CA",
      "-days",
      "1",
    ],
    { stdio: "ignore" },
  );
  let serial = 1;
  return (csrPem) => {
    const csr = join(dir, "sign.csr");
    writeFileSync(csr, csrPem);
    return execFileSync(
      "openssl",
      ["x509", "-req", "-in", csr, "-CA", cert, "-CAkey", key, "-set_serial", String(++serial), "-days", "1"],
      { stdio: ["ignore", "pipe", "ignore"] },
    ).toString();
  };
}

class CaDouble implements CertificateAuthority {
  held = new Map<string, CaCertificateStatus & { pem?: string; csr?: string }>();
  calls: string[] = [];
  down = false;
  failSign = false;
  /** A reason the CA gives when it refuses to sign (Puppet Server keeps the refused request pending). */
  refuseSign: string | undefined;
  /** The signed certificate cannot be fetched (as when espm dies between the sign and its record). */
  failFetch = false;

  constructor(private readonly signCsr: (csrPem: string) => string) {}

  private check(op: string, certname = "") {
    this.calls.push(`${op} ${certname}`.trim());
    if (this.down)
      throw new BackendError(503, "Puppet Server at https://127.0.0.1:1 cannot be reached: connect ECONNREFUSED");
  }
  async status(certname: string) {
    this.check("status", certname);
    return this.held.get(certname) ?? { state: "absent" as const };
  }
  async submit(certname: string, csr: string) {
    this.check("submit", certname);
    if (this.held.has(certname))
      throw new CaRefusal(certname, `${certname} already has a requested certificate; ignoring certificate request`);
    this.held.set(certname, { state: "requested", csr });
  }
  async sign(certname: string) {
    this.check("sign", certname);
    if (this.failSign) throw new BackendError(502, "sign failed");
    if (this.refuseSign) throw new CaRefusal(certname, this.refuseSign);
    const pem = this.signCsr(this.held.get(certname)!.csr!);
    const { serial, notAfter } = describeCertificate(pem);
    this.held.set(certname, { state: "signed", serial, notAfter, pem });
  }
  async pending() {
    this.check("pending");
    return [...this.held].filter(([, h]) => h.state === "requested").map(([name]) => name);
  }
  async request(certname: string) {
    this.check("request", certname);
    return this.held.get(certname)?.csr;
  }
  async certificate(certname: string) {
    this.check("certificate", certname);
    if (this.failFetch)
      throw new BackendError(503, "Puppet Server at https://127.0.0.1:1 cannot be reached: other side closed");
    return this.held.get(certname)!.pem!;
  }
  async caBundle() {
    return "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
  }
  async crl() {
    return "-----BEGIN X509 CRL-----\nCRL\n-----END X509 CRL-----\n";
  }
  async clean(certname: string) {
    this.check("clean", certname);
    this.held.delete(certname);
  }
  async removeRequest(certname: string) {
    this.check("removeRequest", certname);
    if (this.held.get(certname)?.state === "requested") this.held.delete(certname);
  }
  async health() {
    return { status: "ok" as const };
  }
}

describe("certificate routes (CA test double)", () => {
  let dir: string;
  let store: Store;
  let ca: CaDouble;
  let app: FastifyInstance;
  const key = generateRsaKeyPair(2048).privateKeyPem;
  const csrFor = (name: string) => createCsr(name, key, { pp_role: "web" });
  /** Signs for a registered name: espm issues certificates only for its own live registrations. */
  const post = async (certname: string, body: unknown) => {
    if (!(await store.liveNode(certname)))
      await store.insertNode(
        certname,
        { environment: "production", groups: [], classes: {}, parameters: {} },
        new Date().toISOString(),
      );
    return app.inject({
      method: "POST",
      url: `/v1/certificates/${certname}`,
      headers: { authorization: "Bearer p".padEnd(40, "k"), "content-type": "application/json" },
      payload: JSON.stringify(body),
    });
  };
  const call = (method: "GET" | "DELETE", certname: string) =>
    app.inject({ method, url: `/v1/certificates/${certname}`, headers: { authorization: "Bearer p".padEnd(40, "k") } });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "espm-ca-"));
    store = openSqliteStore(join(dir, "espm.db"));
    ca = new CaDouble(testCa(dir));
    const config = {
      server: {
        body_limit: 65536,
        auth_failures_allowed: 5,
        auth_failure_window_seconds: 60,
        headers_timeout_seconds: 5,
        request_timeout_seconds: 10,
        stop_grace_seconds: 2,
      },
      store: { database: join(dir, "espm.db"), enc_export: dir },
      classifier: { groups: join(dir, "groups.yaml"), default_environment: "production" },
    } as EspmConfig;
    const policy = new CertnamePolicy({ patterns: ["*.example.test"], allowAny: false, deny: [] }, false);
    const ctx = {
      config,
      store,
      idempotency: new Idempotency(store),
      groups: () => new Map(),
      groupsProblem: () => undefined,
      policy,
      export: new EncExport(dir),
      ca,
      version: "test",
      outsidePolicy: [],
    };
    app = buildServer(ctx, { psk: "p".padEnd(33, "k"), logger: false });
  });

  afterEach(async () => {
    await app.close();
    await store.close();
    rmSync(dir, { recursive: true });
  });

  it("signs a CSR and revokes it, idempotently", async () => {
    const res = await post("web-01.example.test", { csr: csrFor("web-01.example.test") });
    assert.equal(res.statusCode, 201, res.body);
    const issued = res.json();
    assert.match(issued.serial, /^[0-9A-F]+$/);
    assert.equal((await call("GET", "web-01.example.test")).json().state, "signed");
    assert.equal((await call("DELETE", "web-01.example.test")).statusCode, 204);
    assert.equal((await call("DELETE", "web-01.example.test")).statusCode, 204);
    assert.equal(
      ca.calls.filter((c) => c === "clean web-01.example.test").length,
      1,
      "the second delete does not touch the CA",
    );
    assert.equal((await call("GET", "web-01.example.test")).json().state, "revoked");
  });

  it("refuses a CSR whose CN is not the certname, or that is not a CSR, before calling the CA", async () => {
    const wrongCn = await post("web-01.example.test", { csr: csrFor("other.example.test") });
    assert.equal(wrongCn.statusCode, 400);
    assert.match(wrongCn.json().error.message, /CN is other.example.test/);
    const garbage = await post("web-01.example.test", {
      csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    });
    assert.equal(garbage.statusCode, 400);
    const missing = await post("web-01.example.test", {});
    assert.equal(missing.statusCode, 400);
    assert.equal(missing.json().error.details[0].field, "csr");
    assert.deepEqual(ca.calls, []);
  });

  it("accepts EC P-256 CSRs and refuses extensions Puppet Server rejects", async () => {
    const ecKey = join(dir, "ec.key");
    execFileSync("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ecKey]);
    const ecCsr = execFileSync("openssl", ["req", "-new", "-key", ecKey, "-subj", "/CN=ec-01.example.test"]).toString();
    assert.equal((await post("ec-01.example.test", { csr: ecCsr })).statusCode, 201);

    const cnf = join(dir, "ku.cnf");
    writeFileSync(cnf, "[req]\ndistinguished_name=dn\nreq_extensions=ext\n[dn]\n[ext]\nkeyUsage=digitalSignature\n");
    const kuCsr = execFileSync("openssl", [
      "req",
      "-new",
      "-key",
      ecKey,
      "-subj",
      "/CN=ku-01.example.test",
      "-config",
      cnf,
    ]).toString();
    const ku = await post("ku-01.example.test", { csr: kuCsr });
    assert.equal(ku.statusCode, 400);
    assert.match(ku.json().error.message, /2\.5\.29\.15/);
  });

  it("answers 409 for a certificate or request at the CA that espm did not make", async () => {
    ca.held.set("taken.example.test", { state: "requested" });
    const res = await post("taken.example.test", { csr: csrFor("taken.example.test") });
    assert.equal(res.statusCode, 409);
    assert.match(res.json().error.message, /pending certificate request .* that espm did not make/);
    assert.equal((await call("DELETE", "taken.example.test")).statusCode, 404, "not espm's to revoke");
    assert.equal((await call("GET", "taken.example.test")).statusCode, 404);
    assert.ok(ca.held.has("taken.example.test"));
  });

  it("cleans its own pending request left by a crash between submit and sign, then signs", async () => {
    ca.failSign = true;
    const first = await post("crash-01.example.test", { csr: csrFor("crash-01.example.test") });
    assert.equal(first.statusCode, 502);
    assert.equal(ca.held.get("crash-01.example.test")?.state, "requested");
    ca.failSign = false;
    const second = await post("crash-01.example.test", { csr: csrFor("crash-01.example.test") });
    assert.equal(second.statusCode, 201, second.body);
    assert.ok(ca.calls.includes("clean crash-01.example.test"));
  });

  it("passes a CA's refusal of the CSR on as 422 with the CA's reason, and removes the refused request", async () => {
    ca.refuseSign = "Found extensions that are not permitted: 1.3.6.1.4.1.34380.1.2.99";
    const res = await post("refused-01.example.test", { csr: csrFor("refused-01.example.test") });
    assert.equal(res.statusCode, 422, res.body);
    assert.match(
      res.json().error.message,
      /the Puppet CA refused the request for refused-01\.example\.test: Found extensions that are not permitted/,
    );
    assert.equal(ca.held.has("refused-01.example.test"), false, "the refused request does not block the name");
    ca.refuseSign = undefined;
    assert.equal((await post("refused-01.example.test", { csr: csrFor("refused-01.example.test") })).statusCode, 201);
  });

  it("keeps one requested record however often signing fails", async () => {
    ca.failSign = true;
    for (let i = 0; i < 3; i++)
      assert.equal((await post("retry-01.example.test", { csr: csrFor("retry-01.example.test") })).statusCode, 502);
    assert.equal(await store.certificateRecordCount("retry-01.example.test"), 1);
    ca.failSign = false;
    assert.equal((await post("retry-01.example.test", { csr: csrFor("retry-01.example.test") })).statusCode, 201);
    assert.equal(await store.certificateRecordCount("retry-01.example.test"), 1);
    assert.equal((await store.certificate("retry-01.example.test"))?.state, "signed");
  });

  it("recognises by its key a certificate the CA signed but espm never recorded, shows it without writing, and revokes it", async () => {
    ca.failFetch = true;
    const lost = await post("lost-01.example.test", { csr: csrFor("lost-01.example.test") });
    assert.equal(lost.statusCode, 502, "signed at the CA, answer lost: espm may have acted");
    assert.equal((await store.certificate("lost-01.example.test"))?.serial, null);
    ca.failFetch = false;
    const status = (await call("GET", "lost-01.example.test")).json();
    assert.equal(status.state, "signed");
    assert.equal(status.serial, ca.held.get("lost-01.example.test")?.serial, "the serial learned from the CA");
    assert.equal((await store.certificate("lost-01.example.test"))?.serial, null, "a GET asks and writes nothing");
    assert.equal((await call("DELETE", "lost-01.example.test")).statusCode, 204);
    assert.ok(ca.calls.includes("clean lost-01.example.test"));
    const revoked = await store.certificate("lost-01.example.test");
    assert.deepEqual([revoked?.state, revoked?.serial], ["revoked", status.serial], "the revoke records the serial");
    assert.equal(
      (await post("lost-01.example.test", { csr: csrFor("lost-01.example.test") })).statusCode,
      201,
      "the name is free again",
    );
  });

  it("never removes a pending request that is not espm's, even under a name espm once requested", async () => {
    ca.failSign = true;
    assert.equal((await post("swap-01.example.test", { csr: csrFor("swap-01.example.test") })).statusCode, 502);
    // Someone removes espm's request and submits their own, with another key.
    const other = generateRsaKeyPair(2048).privateKeyPem;
    ca.held.set("swap-01.example.test", { state: "requested", csr: createCsr("swap-01.example.test", other) });
    ca.failSign = false;
    const res = await post("swap-01.example.test", { csr: csrFor("swap-01.example.test") });
    assert.equal(res.statusCode, 409, res.body);
    assert.match(res.json().error.message, /pending certificate request .* that espm did not make/);
    assert.equal((await call("DELETE", "swap-01.example.test")).statusCode, 204);
    assert.ok(ca.held.has("swap-01.example.test"), "the other request is untouched");
    assert.ok(!ca.calls.includes("clean swap-01.example.test"));
  });

  it("answers 503 naming the CA when it is down, and 409 when espm already signed the name", async () => {
    assert.equal((await post("web-02.example.test", { csr: csrFor("web-02.example.test") })).statusCode, 201);
    const again = await post("web-02.example.test", { csr: csrFor("web-02.example.test") });
    assert.equal(again.statusCode, 409);
    ca.down = true;
    const down = await post("web-03.example.test", { csr: csrFor("web-03.example.test") });
    assert.equal(down.statusCode, 503);
    assert.match(down.json().error.message, /cannot be reached/);
  });

  it("replays a retried sign with the same Idempotency-Key without signing twice", async () => {
    const headers = {
      authorization: "Bearer p".padEnd(40, "k"),
      "content-type": "application/json",
      "idempotency-key": "sign-key-0123456789abcdef",
    };
    const payload = JSON.stringify({ csr: csrFor("web-04.example.test") });
    await store.insertNode(
      "web-04.example.test",
      { environment: "production", groups: [], classes: {}, parameters: {} },
      new Date().toISOString(),
    );
    const [a, b] = await Promise.all([
      app.inject({ method: "POST", url: "/v1/certificates/web-04.example.test", headers, payload }),
      app.inject({ method: "POST", url: "/v1/certificates/web-04.example.test", headers, payload }),
    ]);
    assert.equal(a.statusCode, 201);
    assert.equal(b.body, a.body);
    assert.equal(ca.calls.filter((c) => c === "sign web-04.example.test").length, 1);
  });
});
