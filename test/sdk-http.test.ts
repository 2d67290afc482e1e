/**
 * espm-sdk/http: undici's Agent and request without the rest of undici, against a real HTTP server
 * on a loopback port; and the processes that talk to espm or Puppet Server load no more of undici.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import * as undici from "undici";
import { Agent, LEAN_MODULES, loadHttpCore, request, type HttpCore } from "espm-sdk/http";
import { ROOT } from "./helpers/espm";

describe("espm-sdk/http", () => {
  let server: Server;
  let base: string;
  const seen: { method?: string; url?: string; body: string; type?: string }[] = [];

  before(async () => {
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString()));
      req.on("end", () => {
        seen.push({ method: req.method, url: req.url, body, type: req.headers["content-type"] });
        res.writeHead(req.method === "PUT" ? 201 : 200, { "content-type": "text/plain" });
        res.end(`${req.method} ${req.url}`);
      });
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => new Promise<void>((done) => server.close(() => done())));

  /** A GET with a query and a PUT with a body through `core`, as espm's callers make them. */
  async function roundTrip(core: HttpCore) {
    seen.length = 0;
    const dispatcher = new core.Agent();
    try {
      const got = await core.request(`${base}/puppet-ca/v1/certificate_status/a.example?x=1`, { dispatcher });
      const put = await core.request(`${base}/v1/nodes`, {
        dispatcher,
        method: "PUT",
        body: "csr",
        headers: { "content-type": "text/plain" },
      });
      return { got: [got.statusCode, await got.body.text()], put: [put.statusCode, await put.body.text()] };
    } finally {
      await dispatcher.close();
    }
  }

  it("loads undici's own Agent from its two modules, and requests through it as undici's index does", async () => {
    assert.equal(loadHttpCore().loaded, "lean", `undici ${undici.Agent.name} moved ${JSON.stringify(LEAN_MODULES)}`);
    assert.equal(Agent, undici.Agent, "the same class undici's index exports");
    assert.deepEqual(await roundTrip({ Agent, request, loaded: "lean" }), {
      got: [200, "GET /puppet-ca/v1/certificate_status/a.example?x=1"],
      put: [201, "PUT /v1/nodes"],
    });
    assert.deepEqual(seen[1], { method: "PUT", url: "/v1/nodes", body: "csr", type: "text/plain" });
    // A body without a method is a PUT, as undici's index makes it, so both ways of loading agree.
    const dispatcher = new Agent();
    try {
      const put = await request(`${base}/v1/unnamed`, { dispatcher, body: "x" });
      assert.equal(await put.body.text(), "PUT /v1/unnamed");
    } finally {
      await dispatcher.close();
    }
  });

  it("falls back to undici's index when the modules are not where undici 7 keeps them", async () => {
    const core = loadHttpCore({ agent: "undici/lib/moved/agent", request: "undici/lib/moved/request" });
    assert.equal(core.loaded, "index");
    assert.deepEqual((await roundTrip(core)).put, [201, "PUT /v1/nodes"]);
  });

  it("a provider host's client and the daemon's Puppet Server client load none of undici's fetch, WebSocket or cache", () => {
    for (const [where, specifier] of [
      ["provider", "espm-sdk/client"],
      ["agent", "./dist/agent/puppetserver/http.js"],
    ]) {
      const loaded = execFileSync(
        process.execPath,
        ["-e", `require(${JSON.stringify(specifier)}); console.log(Object.keys(require.cache).join("\\n"))`],
        { cwd: join(ROOT, where!), encoding: "utf8" },
      )
        .split("\n")
        .filter((path) => path.includes("/undici/"));
      assert.ok(loaded.length > 0, `${specifier} loads undici`);
      assert.deepEqual(
        loaded.filter((path) => /\/undici\/(index\.js|lib\/web\/|lib\/cache\/|lib\/mock\/)/.test(path)),
        [],
        specifier,
      );
    }
  });
});
