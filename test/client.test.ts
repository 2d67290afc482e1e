/**
 * Client behaviour on failures a real espm does not produce on demand (a 503 then success, a dropped
 * connection): a minimal HTTPS stand-in on loopback with a real TLS certificate.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { EspmClient } from "espm-sdk/client";
import { EspmError } from "espm-sdk/errors";
import { createSelfSignedCertificate } from "espm-agent/http/self-signed";

describe("EspmClient retries", () => {
  const tls = createSelfSignedCertificate({ commonName: "127.0.0.1", altNames: ["127.0.0.1"] });
  let server: Server;
  let url: string;
  const keys: string[] = [];
  let failuresLeft = 0;
  let mode: "503" | "drop" = "503";

  before(async () => {
    server = createServer({ key: tls.privateKeyPem, cert: tls.certificatePem }, (req, res) => {
      keys.push(String(req.headers["idempotency-key"]));
      req.resume();
      if (failuresLeft-- > 0) {
        if (mode === "drop") return req.socket.destroy();
        res.writeHead(503, { "content-type": "application/json" });
        return res.end(
          JSON.stringify({ error: { code: "backend_unavailable", message: "Puppet Server is restarting" } }),
        );
      }
      const now = new Date().toISOString();
      res.writeHead(201, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          name: "web-01",
          environment: "production",
          groups: [],
          classes: {},
          parameters: {},
          createdAt: now,
          updatedAt: now,
        }),
      );
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => server.close());
  beforeEach(() => (keys.length = 0));

  it("retries a POST after 5xx and a dropped connection with the same Idempotency-Key", async () => {
    for (const m of ["503", "drop"] as const) {
      keys.length = 0;
      mode = m;
      failuresLeft = 2;
      const client = new EspmClient({
        url,
        psk: "secret-psk-value-that-must-not-leak",
        certificate: tls.certificatePem,
        backoffMs: 10,
      });
      const node = await client.registerNode({ name: "web-01" });
      assert.equal(node.name, "web-01");
      assert.equal(keys.length, 3, `${m}: three attempts`);
      assert.equal(new Set(keys).size, 1, `${m}: one key for all attempts`);
      assert.match(keys[0]!, /^[A-Za-z0-9_-]{24}$/);
      await client.close();
    }
  });

  it("gives up after its attempts with a typed error that carries no PSK", async () => {
    mode = "503";
    failuresLeft = 10;
    const psk = "secret-psk-value-that-must-not-leak";
    const client = new EspmClient({ url, psk, certificate: tls.certificatePem, attempts: 2, backoffMs: 10 });
    await assert.rejects(client.registerNode({ name: "web-01" }), (err: EspmError) => {
      assert.equal(err.status, 503);
      assert.equal(err.code, "backend_unavailable");
      assert.ok(!err.message.includes(psk) && !(err.stack ?? "").includes(psk));
      return true;
    });
    assert.equal(keys.length, 2);
    await client.close();
    failuresLeft = 0;
  });

  it("makes a new key for each logical create", async () => {
    const client = new EspmClient({ url, psk: "p".repeat(40), certificate: tls.certificatePem });
    await client.registerNode({ name: "web-01" });
    await client.registerNode({ name: "web-01" });
    assert.equal(new Set(keys).size, 2);
    await client.close();
  });
});
