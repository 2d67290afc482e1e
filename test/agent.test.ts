/** The espm agent as a real process on a loopback port, set up by the real espm-setup. */
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EspmClient } from "espm-sdk/client";
import { EspmError } from "espm-sdk/errors";
import { certificateFingerprint } from "espm-sdk/x509";
import { createSelfSignedCertificate } from "espm-agent/http/self-signed";
import { EspmProcess, GROUPS_YAML, setupEspm } from "./helpers/espm";

describe("espm agent (real process)", function () {
  let espm: EspmProcess;
  let client: EspmClient;

  before(async () => {
    espm = await EspmProcess.start(await setupEspm([], GROUPS_YAML));
    client = new EspmClient({ url: espm.url, psk: espm.setup.psk, certificate: espm.setup.certificate, attempts: 1 });
  });

  after(async () => {
    await client.close();
    assert.equal(await espm.stop(), 0);
    rmSync(espm.setup.dir, { recursive: true });
  });

  describe("health and authentication", () => {
    it("answers health without a PSK with up or down only, and the backends with it", async () => {
      const anonymous = await espm.raw("GET", "/v1/health", { psk: null });
      assert.equal(anonymous.status, 200);
      assert.deepEqual(anonymous.json, { status: "ok" }, "no version, paths or backends without the PSK");
      const res = await espm.raw("GET", "/v1/health");
      const body = res.json as unknown as {
        version: string;
        backends: Record<string, { status: string; detail?: string }>;
      };
      assert.equal(body.backends.ca!.status, "not_configured");
      assert.equal(body.backends.store!.status, "ok");
      assert.match(body.backends.certnames!.detail!, /patterns \*\.example\.test/);
      assert.ok(body.version);
      assert.ok(!res.text.includes(espm.setup.psk));
    });

    it("offers only AEAD ciphers: a client that offers AES128-SHA alone gets no connection", async () => {
      const { connect } = await import("node:tls");
      const outcome = await new Promise<string>((resolve) => {
        const socket = connect(
          {
            host: "127.0.0.1",
            port: espm.setup.port,
            ca: espm.setup.certificate,
            ciphers: "AES128-SHA",
            maxVersion: "TLSv1.2",
          },
          () => {
            resolve(`connected with ${socket.getCipher().name}`);
            socket.end();
          },
        );
        socket.on("error", (err) => resolve(`refused: ${err.message}`));
      });
      assert.match(outcome, /^refused: .*handshake failure|no shared cipher|alert/i);
      const modern = await new Promise<string>((resolve, reject) => {
        const socket = connect(
          { host: "127.0.0.1", port: espm.setup.port, ca: espm.setup.certificate, maxVersion: "TLSv1.2" },
          () => {
            resolve(socket.getCipher().name);
            socket.end();
          },
        );
        socket.on("error", reject);
      });
      assert.match(modern, /GCM|CHACHA20/);
    });

    it("rejects a wrong PSK with 401, then slows the address with 429, never the right PSK", async () => {
      const wrong = await espm.raw("GET", "/v1/groups", { psk: "x".repeat(48) });
      assert.equal(wrong.status, 401);
      assert.equal(wrong.json.error!.code, "unauthorized");
      let throttled = 0;
      for (let i = 0; i < 8; i++) {
        const res = await espm.raw("GET", "/v1/groups", { psk: `wrong-${i}` });
        if (res.status === 429) {
          throttled++;
          assert.ok(Number(res.headers["retry-after"]) >= 1);
        } else assert.equal(res.status, 401);
      }
      assert.ok(throttled >= 3, `expected 429s after repeated failures, got ${throttled}`);
      const right = await espm.raw("GET", "/v1/groups");
      assert.equal(right.status, 200);
      const noHeader = await espm.raw("GET", "/v1/nodes/web-01", { psk: null });
      assert.equal(noHeader.status, 429);
    });

    it("never logs the PSK", () => {
      assert.ok(espm.logLines.length > 0);
      assert.ok(!espm.logLines.some((line) => line.includes(espm.setup.psk)));
    });

    it("refuses to talk to a server whose certificate is not the pinned one", async () => {
      const other = createSelfSignedCertificate({ commonName: "127.0.0.1", altNames: ["127.0.0.1"] });
      const pinnedElsewhere = new EspmClient({
        url: espm.url,
        psk: espm.setup.psk,
        certificate: other.certificatePem,
        attempts: 1,
      });
      await assert.rejects(
        pinnedElsewhere.classes("pinprobe"),
        (err: EspmError) =>
          err instanceof EspmError && err.code === "tls_pin_mismatch" && !err.message.includes(espm.setup.psk),
      );
      await pinnedElsewhere.close();
      // No request reached espm (so no PSK left the client): the handshake was refused first.
      await espm.raw("GET", "/v1/health"); // a request after it, so its log line would have arrived by now
      await new Promise((r) => setTimeout(r, 100));
      assert.ok(espm.logLines.some((l) => l.includes("/v1/health")));
      assert.ok(!espm.logLines.some((l) => l.includes("pinprobe")));
    });

    it("accepts a pin given as a fingerprint in any case, without colons", async () => {
      const fingerprint = certificateFingerprint(espm.setup.certificate).replace(/:/g, "").toLowerCase();
      const byFingerprint = new EspmClient({
        url: espm.url.replace("127.0.0.1", "localhost"),
        psk: espm.setup.psk,
        fingerprint,
      });
      assert.equal((await byFingerprint.health()).status, "ok");
      await byFingerprint.close();
    });
  });

  describe("nodes", () => {
    it("creates, reads, replaces and deletes a node", async () => {
      const created = await client.registerNode({
        name: "web-01.example.test",
        groups: ["web"],
        classes: { motd: { message: "hi" } },
        parameters: { owner: "ops" },
      });
      assert.equal(created.name, "web-01.example.test");
      assert.equal(created.environment, "production");
      assert.deepEqual(created.groups, ["web"]);
      assert.deepEqual(await client.getNode("web-01.example.test"), created);

      const updated = await client.updateNode("web-01.example.test", {
        environment: "staging",
        groups: ["base"],
        classes: {},
        parameters: { owner: "dev" },
      });
      assert.equal(updated.environment, "staging");
      assert.deepEqual(updated.groups, ["base"]);
      assert.deepEqual(updated.parameters, { owner: "dev" });
      assert.equal(updated.createdAt, created.createdAt);

      await client.deleteNode("web-01.example.test");
      assert.equal(await client.getNode("web-01.example.test"), undefined);
      await client.deleteNode("web-01.example.test"); // ours, already deleted: 204
    });

    it("answers 409 for a live name and frees the name once deleted", async () => {
      await client.registerNode({ name: "db-01.example.test", groups: [], classes: { ntp: {} } });
      await assert.rejects(
        client.registerNode({ name: "db-01.example.test", groups: [] }),
        (err: EspmError) => err.status === 409 && err.code === "conflict",
      );
      await client.deleteNode("db-01.example.test");
      const again = await client.registerNode({ name: "db-01.example.test", groups: ["base"] });
      assert.deepEqual(again.groups, ["base"]);
    });

    it("never reads, changes or deletes a node it did not create", async () => {
      await assert.rejects(client.deleteNode("someone-else.example.test"), (err: EspmError) => err.status === 404);
      assert.equal(await client.getNode("someone-else.example.test"), undefined);
      await assert.rejects(
        client.updateNode("someone-else.example.test", { groups: [] }),
        (err: EspmError) => err.status === 404,
      );
      const list = await espm.raw("GET", "/v1/nodes");
      assert.equal(list.status, 404, "there is no listing of nodes");
    });

    it("refuses an unknown group with 422 naming it", async () => {
      await assert.rejects(
        client.registerNode({ name: "x-01.example.test", groups: ["web", "nosuch"] }),
        (err: EspmError) => err.status === 422 && err.message.includes("nosuch"),
      );
      assert.equal(await client.getNode("x-01.example.test"), undefined);
    });

    it("creates once for a retried POST with the same Idempotency-Key, and refuses the key with another body", async () => {
      const body = JSON.stringify({ name: "idem-01.example.test", groups: ["web"] });
      const headers = { "content-type": "application/json", "idempotency-key": "retry-key-0123456789" };
      const [first, second] = await Promise.all([
        espm.raw("POST", "/v1/nodes", { body, headers }),
        espm.raw("POST", "/v1/nodes", { body, headers }),
      ]);
      assert.equal(first.status, 201);
      assert.equal(second.status, 201);
      assert.deepEqual(first.json, second.json);
      const third = await espm.raw("POST", "/v1/nodes", { body, headers });
      assert.deepEqual(third.json, first.json);
      const other = await espm.raw("POST", "/v1/nodes", {
        body: JSON.stringify({ name: "idem-02.example.test", groups: [] }),
        headers,
      });
      assert.equal(other.status, 422);
      assert.equal(await client.getNode("idem-02.example.test"), undefined);
      const fresh = await espm.raw("POST", "/v1/nodes", {
        body,
        headers: { ...headers, "idempotency-key": "another-key-0123456789" },
      });
      assert.equal(fresh.status, 409, "a new key is a new create, and the name is taken");
    });
  });

  describe("bad input", () => {
    const json = { "content-type": "application/json" };

    /** Each hostile body is refused with its own status, creates nothing, and leaves espm answering. */
    const hostileBodies: Array<{
      what: string;
      name: string;
      body: string;
      contentType?: string;
      status: number;
      check?: (error: { code: string; message: string; details?: unknown }) => void;
    }> = [
      {
        what: "malformed JSON",
        name: "a",
        body: '{"name": "a",',
        status: 400,
        check: (e) => assert.equal(e.code, "invalid_request"),
      },
      {
        what: "wrong types, naming each field",
        name: "ok-01",
        body: JSON.stringify({ name: "ok-01", groups: "web", classes: [] }),
        status: 400,
        check: (e) => {
          const fields = (e.details as Array<{ field: string }>).map((d) => d.field);
          assert.ok(fields.includes("groups") && fields.includes("classes"), `fields named: ${fields}`);
        },
      },
      {
        what: "a field the contract does not have",
        name: "ok-02",
        body: JSON.stringify({ name: "ok-02", admin: true }),
        status: 400,
      },
      { what: "__proto__", name: "ok-03", body: '{"name":"ok-03","__proto__":{"x":1}}', status: 400 },
      {
        what: "a body over the limit",
        name: "big-01",
        body: JSON.stringify({ name: "big-01", parameters: { blob: "x".repeat(200_000) } }),
        status: 413,
        check: (e) => {
          assert.equal(e.code, "payload_too_large");
          assert.equal(e.message, "the request body is larger than espm accepts (65536 bytes at most)");
        },
      },
      { what: "a body that is not JSON", name: "x", body: "name=x", contentType: "text/plain", status: 415 },
    ];
    for (const c of hostileBodies) {
      it(`answers ${c.status} to ${c.what}, creates nothing and keeps answering`, async () => {
        const res = await espm.raw("POST", "/v1/nodes", {
          body: c.body,
          headers: { "content-type": c.contentType ?? "application/json" },
        });
        assert.equal(res.status, c.status, res.text);
        c.check?.(res.json.error!);
        assert.equal(await client.getNode(c.name), undefined);
        assert.equal((await client.health()).status, "ok");
        assert.equal(espm.child.exitCode, null);
      });
    }

    for (const name of ["../x", "a;rm -rf", "Web-01", "x".repeat(300), "-lead", "trail.", "a..b", "a b", "$(id)"]) {
      it(`refuses the hostile name ${JSON.stringify(name.length > 20 ? `${name.slice(0, 8)}… (${name.length})` : name)} in a body with 400 naming the field, and in a path`, async () => {
        const viaBody = await espm.raw("POST", "/v1/nodes", {
          body: JSON.stringify({ name, groups: [] }),
          headers: json,
        });
        assert.equal(viaBody.status, 400, `POST name ${name}`);
        assert.ok((viaBody.json.error!.details as Array<{ field: string }>).some((d) => d.field === "name"));
        const viaPath = await espm.raw("GET", `/v1/nodes/${encodeURIComponent(name)}`);
        assert.ok(viaPath.status === 400 || viaPath.status === 404, `GET ${name}: ${viaPath.status}`);
        const del = await espm.raw("DELETE", `/v1/certificates/${encodeURIComponent(name)}`);
        assert.ok(del.status === 400 || del.status === 404, `DELETE certificate ${name}: ${del.status}`);
      });
    }

    it("answers certificate calls with 503 when no CA is configured", async () => {
      const res = await espm.raw("GET", "/v1/certificates/web-01.example.test");
      assert.equal(res.status, 503);
      assert.match(res.json.error!.message, /\[puppetserver\]/);
    });
  });

  describe("groups", () => {
    it("lists groups and reloads them on SIGHUP", async () => {
      assert.deepEqual((await client.groups()).groups.map((g) => g.name).sort(), ["base", "web"]);
      writeFileSync(
        join(espm.setup.configDir, "groups.yaml"),
        `${GROUPS_YAML}  db:\n    classes:\n      postgresql: {}\n`,
      );
      espm.child.kill("SIGHUP");
      const deadline = Date.now() + 5000;
      let names: string[] = [];
      while (Date.now() < deadline) {
        names = (await client.groups()).groups.map((g) => g.name).sort();
        if (names.includes("db")) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(names, ["base", "db", "web"]);
    });

    it("gives a node its own environment, else its first group's that names one, else the default", async () => {
      writeFileSync(
        join(espm.setup.configDir, "groups.yaml"),
        `${GROUPS_YAML}  staged:\n    environment: staging\n    classes:\n      motd: {}\n`,
      );
      espm.child.kill("SIGHUP");
      for (const deadline = Date.now() + 5000; !(await client.groups()).groups.some((g) => g.name === "staged");) {
        assert.ok(Date.now() < deadline, "the staged group loaded");
        await new Promise((r) => setTimeout(r, 50));
      }
      const fromGroup = await client.registerNode({ name: "env-01.example.test", groups: ["web", "staged"] });
      assert.equal(fromGroup.environment, "staging");
      const own = await client.registerNode({ name: "env-02.example.test", groups: ["staged"], environment: "canary" });
      assert.equal(own.environment, "canary");
      const fallback = await client.registerNode({ name: "env-03.example.test", groups: ["web"] });
      assert.equal(fallback.environment, "production");
      for (const name of ["env-01.example.test", "env-02.example.test", "env-03.example.test"])
        await client.deleteNode(name);
    });
  });
});
