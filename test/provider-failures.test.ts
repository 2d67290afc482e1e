/**
 * A create that fails after espm may have acted: the answer is lost. A real espm cannot be made to
 * lose its own answers, so these few cases use an in-process stand-in that speaks espm's HTTPS.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { certificateProvider, registrationProvider } from "pulumi-espm";
import { ResourceInitError } from "pulumi-espm/lifecycle";
import { createSelfSignedCertificate } from "espm-agent/http/self-signed";
import { configuredProvider } from "./helpers/providers";

const PSK = "stand-in-psk-0123456789abcdefghijklmnop";

interface StandIn {
  url: string;
  certificate: string;
  seen: string[];
  server: Server;
}

/** An HTTPS server that records each request line and answers as `answer` says; "drop" closes the socket. */
async function standIn(answer: (method: string, path: string) => number | "drop"): Promise<StandIn> {
  const { certificatePem, privateKeyPem } = createSelfSignedCertificate({
    commonName: "stand-in",
    altNames: ["127.0.0.1"],
  });
  const seen: string[] = [];
  const server = createServer({ cert: certificatePem, key: privateKeyPem }, (req, res) => {
    req.resume();
    req.on("end", () => {
      seen.push(`${req.method} ${req.url}`);
      const what = answer(req.method!, req.url!);
      if (what === "drop") return req.socket.destroy();
      res
        .writeHead(what, { "content-type": "application/json" })
        .end(what >= 400 ? JSON.stringify({ error: { code: "internal", message: "stand-in failure" } }) : undefined);
    });
  });
  await new Promise<void>((ready) => server.listen(0, "127.0.0.1", ready));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    certificate: certificatePem,
    seen,
    server,
  };
}

function configured(provider: typeof registrationProvider, espm: StandIn) {
  return configuredProvider(provider, { "espm:url": espm.url, "espm:psk": PSK, "espm:certificate": espm.certificate });
}

const registration = {
  name: "lost.failures.test",
  groups: ["base"],
  classes: {},
  parameters: {},
  onConflict: "suffix",
};

describe("a create whose answer is lost", function () {
  this.timeout(30_000);
  const servers: Server[] = [];
  after(() => servers.forEach((s) => s.close()));

  it("removes the node it may have made and says nothing was left behind", async () => {
    const espm = await standIn((method) => (method === "POST" ? "drop" : 204));
    servers.push(espm.server);
    const provider = await configured(registrationProvider, espm);
    await assert.rejects(provider.create(registration), (err: Error) => {
      assert.ok(!(err instanceof ResourceInitError));
      assert.match(err.message, /nothing was left behind/);
      assert.ok(!err.message.includes(PSK));
      return true;
    });
    assert.equal(espm.seen.at(-1), "DELETE /v1/nodes/lost.failures.test");
    assert.ok(espm.seen.filter((line) => line === "POST /v1/nodes").length > 1, "the client retried the create first");
  });

  it("records the node in state when it cannot be removed either", async () => {
    const espm = await standIn(() => "drop");
    servers.push(espm.server);
    const provider = await configured(registrationProvider, espm);
    await assert.rejects(provider.create(registration), (err: ResourceInitError) => {
      assert.ok(err instanceof ResourceInitError, String(err));
      assert.equal(err.id, "lost.failures.test");
      assert.equal(err.properties.nodeName, "lost.failures.test");
      assert.match(err.message, /kept in state/);
      return true;
    });
  });

  it("records a certificate it could not revoke after a failed sign, with no key in the record", async () => {
    const espm = await standIn((method) => (method === "POST" ? 500 : "drop"));
    servers.push(espm.server);
    const provider = await configured(certificateProvider, espm);
    await assert.rejects(
      provider.create({ certname: "lost.failures.test", keyType: "rsa-2048", extensions: {} }),
      (err: ResourceInitError) => {
        assert.ok(err instanceof ResourceInitError, String(err));
        assert.equal(err.id, "lost.failures.test");
        assert.ok(!JSON.stringify(err.properties).includes("PRIVATE KEY"));
        return true;
      },
    );
    assert.ok(espm.seen.includes("DELETE /v1/certificates/lost.failures.test"));
  });
});
