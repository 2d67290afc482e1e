/**
 * espm as an attacker holding the PSK meets it, against a real espm and the real Puppet Server:
 * the certname policy (and Puppet Server enforcing it a second time), CSRs read the way Puppet
 * reads them, no takeover of a node the site's own ENC knows, deadlines no client can outlast,
 * reports that cannot stall espm, and a seeded fuzz that gets no 5xx and changes nothing it did not
 * acknowledge. Every refusal is checked at the CA too: the name must be absent from Puppet Server's
 * access log.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import Database from "better-sqlite3";
import { Agent, request } from "undici";
import { espmDispatcher } from "../scripts/lab/puppetserver";
import forge from "node-forge";
import { registrationProvider } from "pulumi-espm";
import { createCsr, generateRsaKeyPair } from "espm-sdk/x509";
import { ESPM_BIN, EspmProcess, puppetServerArgs, run, scratchDir, SETUP_BIN, setupEspm } from "./helpers/espm";
import { configuredProvider } from "./helpers/providers";
import { csrWithRepeatedExtension } from "./helpers/csr";
import { caState, sharedWorld, type World } from "./helpers/world";

const KEY = generateRsaKeyPair(2048).privateKeyPem;

/** A deterministic pseudo-random sequence (mulberry32), so that a failing fuzz run can be replayed. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Resolves with the milliseconds until the server closed the connection. */
function closedAfter(
  socket: { once(event: "close", listener: () => void): unknown },
  started: number,
): Promise<number> {
  return new Promise((resolve) => socket.once("close", () => resolve(Date.now() - started)));
}

describe("security: what the PSK can and cannot do", function () {
  this.timeout(240_000);
  let world: World;
  let espm: EspmProcess;
  let accessLog: string;
  const fallbackLog = () => readFileSync(join(espm.setup.dir, "fallback.log"), "utf8");

  before(async function () {
    world = await sharedWorld();
    accessLog = join(world.lab.dir, "log/puppetserver-access.log");
    // A compile master: a certificate the CA signed with dns_alt_names.
    await run(
      "puppetserver",
      [
        "ca",
        "generate",
        "--certname",
        "compile-01.lab.test",
        "--subject-alt-names",
        "compile.lab.test",
        "--config",
        world.lab.confFile,
      ],
      { timeout: 120_000 },
    );
    const dir = scratchDir("espm-security");
    // The site's own classifier: it knows legacy-01 and is slow for slow-enc.
    const fallback = join(dir, "fallback-enc.sh");
    writeFileSync(
      fallback,
      `#!/bin/sh\necho "$1" >> ${join(dir, "fallback.log")}\ncase "$1" in\n  legacy-01.example.test) printf -- '---\\nclasses:\\n  legacy: {}\\n' ;;\n  slow-enc.example.test) sleep 30 ;;\n  failing-enc.example.test) echo "site ENC: database down" >&2; exit 1 ;;\n  *) printf -- '---\\nclasses: {}\\n' ;;\nesac\n`,
      { mode: 0o755 },
    );
    const { lab } = world;
    const setup = await setupEspm(
      [
        ...puppetServerArgs(lab),
        "--fallback-enc",
        fallback,
        "--certname-pattern",
        "*.example.test",
        "--certname-pattern",
        "*.lab.test",
        "--certname-pattern",
        "web-01.exact.test",
        "--deny-certname",
        "denied.example.test",
      ],
      "groups:\n  base:\n    parameters:\n      managed_by: espm\n",
      dir,
    );
    espm = await EspmProcess.start(setup);
  });

  after(async () => {
    await espm?.stop();
  });

  /** Asserts that Puppet Server never received a request from espm (its User-Agent) naming `certname` on a CA path. */
  function caNeverSaw(certname: string): void {
    const log = existsSync(accessLog) ? readFileSync(accessLog, "utf8") : "";
    assert.ok(log.includes('"espm/'), "Puppet Server's access log has espm's requests");
    const escaped = certname.replace(/[.]/g, "\\.");
    // `certificate/ca` is the CA bundle every client fetches: for `ca` only the per-certname paths count.
    const paths = certname === "ca" ? "certificate_(?:status|request)" : "certificate(?:_status|_request)?";
    const seen = new RegExp(`/puppet-ca/v1/${paths}/${escaped}[ ?].*"espm/`).exec(log);
    assert.equal(seen, null, `the CA saw a request from espm for ${certname}: ${seen?.[0]}`);
  }

  const post = (path: string, body: unknown) =>
    espm.raw("POST", path, { body: JSON.stringify(body), headers: { "content-type": "application/json" } });

  describe("the certname policy", () => {
    const refused: Array<[string, RegExp]> = [
      ["puppet", /reserved/],
      ["puppetmaster", /reserved/],
      ["localhost", /reserved/],
      ["ca", /reserved/],
      ["espm", /reserved/],
      ["puppet.lab.test", /server-names/],
      ["127.0.0.1", /server-names|patterns/],
      ["compile-01.lab.test", /alt-names/],
      ["compile.lab.test", /alt-names/],
      ["denied.example.test", /deny/],
      ["web-01.elsewhere.test", /patterns/],
      ["a.b.example.test", /patterns/],
    ];
    for (const [name, rule] of refused) {
      it(`refuses ${name} for registration and signing (${rule.source}), and the CA never hears of it`, async () => {
        const node = await post("/v1/nodes", { name, classes: { motd: {} } });
        assert.equal(node.status, 403, node.text);
        assert.match(node.json.error!.message, rule);
        const cert = await post(`/v1/certificates/${name}`, { csr: createCsr(name, KEY) });
        assert.equal(cert.status, 403, cert.text);
        assert.equal(cert.json.error!.code, "forbidden");
        caNeverSaw(name);
      });
    }

    it("refuses a conflict-suffixed name that leaves the patterns, with the rule named in Pulumi's error", async () => {
      const provider = await configuredProvider(registrationProvider, {
        "espm:url": espm.url,
        "espm:psk": espm.setup.psk,
        "espm:certificate": espm.setup.certificate,
      });
      const inputs = {
        name: "web-01.exact.test",
        groups: [],
        classes: { motd: {} },
        parameters: {},
        onConflict: "suffix",
      };
      const first = await provider.create(inputs);
      assert.equal(first.id, "web-01.exact.test");
      await assert.rejects(provider.create(inputs), (err: Error) => {
        assert.match(err.message, /web-01-\d+\.exact\.test matches none of the certname patterns/);
        return true;
      });
      const log = readFileSync(accessLog, "utf8");
      assert.doesNotMatch(log, /web-01-\d+\.exact\.test/);
      await provider.delete!("web-01.exact.test", first.outs);
    });

    it("refuses Puppet's own names even where any certname is allowed, and says so loudly", async () => {
      const { lab } = world;
      const open = await EspmProcess.start(
        await setupEspm([...puppetServerArgs(lab, { reports: false }), "--allow-any-certname"], "groups: {}\n"),
      );
      try {
        assert.ok(
          open.logLines.some((l) => l.includes("ANY CERTNAME MAY BE SIGNED")),
          "the log warns",
        );
        for (const name of ["puppet", "localhost", "127.0.0.1", "puppet.lab.test", "compile.lab.test"]) {
          const res = await open.raw("POST", "/v1/nodes", {
            body: JSON.stringify({ name, classes: { motd: {} } }),
            headers: { "content-type": "application/json" },
          });
          assert.equal(res.status, 403, `${name}: ${res.text}`);
        }
        const anything = await open.raw("POST", "/v1/nodes", {
          body: JSON.stringify({ name: "any-01.example.test", classes: { motd: {} } }),
          headers: { "content-type": "application/json" },
        });
        assert.equal(anything.status, 201, anything.text);
        // Outside the patterns Puppet Server's auth.conf allows, the CA refuses espm itself: defence in depth.
        const outside = await open.raw("POST", "/v1/nodes", {
          body: JSON.stringify({ name: "anything.else.test", classes: { motd: {} } }),
          headers: { "content-type": "application/json" },
        });
        assert.equal(outside.status, 502, outside.text);
        assert.match(outside.json.error!.message, /auth\.conf does not allow espm this path/);
      } finally {
        await open.stop();
      }
    });

    it("refuses to start without a certname pattern, naming the flag", async () => {
      const dir = scratchDir("espm-nopattern");
      mkdirSync(join(dir, "etc/certs"), { recursive: true });
      await assert.rejects(run(process.execPath, [SETUP_BIN, "-d", join(dir, "etc")]), (err: { stderr: string }) => {
        assert.match(err.stderr, /--certname-pattern '\*\.nodes\.example\.com'/);
        return true;
      });
      const setup = await setupEspm(["--allow-any-certname"]);
      const ini = readFileSync(setup.ini, "utf8").replace("allow_any=true", "allow_any=false");
      writeFileSync(setup.ini, ini);
      await assert.rejects(EspmProcess.start(setup), /names no certname patterns.*--certname-pattern/s);
    });
  });

  describe("Puppet Server enforces the policy a second time", () => {
    const asEspm = () => espmDispatcher(world.lab);
    const sign = async (name: string) => {
      const res = await request(`${world.lab.url}/puppet-ca/v1/certificate_status/${name}`, {
        method: "PUT",
        body: JSON.stringify({ desired_state: "signed" }),
        headers: { "content-type": "application/json" },
        dispatcher: asEspm(),
      });
      await res.body.text();
      return res.statusCode;
    };

    it("refuses espm's own certificate a sign for a name outside the patterns, for Puppet's names, and /clean", async () => {
      // A pending request for each, so that only authorization can refuse the sign.
      for (const name of ["evil.other.test", "puppet"]) {
        const res = await request(`${world.lab.url}/puppet-ca/v1/certificate_request/${name}`, {
          method: "PUT",
          body: createCsr(name, KEY),
          headers: { "content-type": "text/plain" },
          dispatcher: new Agent({ connect: { ca: readFileSync(world.lab.caBundle) } }),
        });
        await res.body.text();
      }
      assert.equal(await sign("evil.other.test"), 403);
      assert.equal(await sign("puppet"), 403);
      const clean = await request(`${world.lab.url}/puppet-ca/v1/clean`, {
        method: "PUT",
        body: JSON.stringify({ certnames: ["evil.other.test"] }),
        headers: { "content-type": "application/json" },
        dispatcher: asEspm(),
      });
      await clean.body.text();
      assert.equal(clean.statusCode, 403);
      const status = await request(`${world.lab.url}/puppet-ca/v1/certificate_status/evil.other.test`, {
        dispatcher: asEspm(),
      });
      await status.body.text();
      assert.equal(status.statusCode, 403, "espm cannot even read the status of a name outside its patterns");
    });
  });

  describe("the operator's CA command keeps working beside espm's rules", () => {
    it("lists (pending and --all) and signs with puppetserver ca: espm's rules shadow no stock rule", async () => {
      const { lab } = world;
      const name = "operator-01.site.test";
      const res = await request(`${lab.url}/puppet-ca/v1/certificate_request/${name}`, {
        method: "PUT",
        body: createCsr(name, KEY),
        headers: { "content-type": "text/plain" },
        dispatcher: new Agent({ connect: { ca: readFileSync(lab.caBundle) } }),
      });
      await res.body.text();
      const ca = (args: string[]) => {
        const argv = lab.command(["puppetserver", "ca", ...args, "--config", lab.confFile]);
        return run(argv[0]!, argv.slice(1), { timeout: 120_000 });
      };
      const pending = await ca(["list"]);
      assert.match(pending.stdout, /operator-01\.site\.test/);
      const all = await ca(["list", "--all"]);
      assert.match(all.stdout, new RegExp(lab.certname.replaceAll(".", "\\.")));
      await ca(["sign", "--certname", name]);
      assert.match((await ca(["list", "--all"])).stdout, /operator-01\.site\.test/);
    });
  });

  describe("CSRs are read the way Puppet reads them", () => {
    function openssl(args: string[], input?: string): string {
      return execFileSync("openssl", args, { input, stdio: ["pipe", "pipe", "ignore"] }).toString();
    }
    const keyFile = () => {
      const file = join(espm.setup.dir, "csr.key");
      if (!existsSync(file)) writeFileSync(file, KEY, { mode: 0o600 });
      return file;
    };

    it("refuses a CSR with two CNs, whichever comes first", async () => {
      for (const subject of ["/CN=two-cn.example.test/CN=puppet", "/CN=puppet/CN=two-cn.example.test"]) {
        const csr = openssl(["req", "-new", "-key", keyFile(), "-subj", subject, "-multivalue-rdn"]);
        const res = await post("/v1/certificates/two-cn.example.test", { csr });
        assert.equal(res.status, 400, res.text);
        assert.match(res.json.error!.message, /2 CNs; it must have exactly one/);
      }
      caNeverSaw("two-cn.example.test");
    });

    it("refuses a CSR whose signature does not verify (no proof of possession)", async () => {
      const pem = createCsr("forged.example.test", KEY);
      const der = Buffer.from(forge.pem.decode(pem)[0]!.body, "binary");
      der[der.length - 5] = der[der.length - 5]! ^ 0xff;
      const forged = forge.pem.encode({ type: "CERTIFICATE REQUEST", body: der.toString("binary") });
      const res = await post("/v1/certificates/forged.example.test", { csr: forged });
      assert.equal(res.status, 400, res.text);
      assert.match(res.json.error!.message, /signature does not verify/);
      caNeverSaw("forged.example.test");
    });

    it("refuses a subjectAltName other than exactly DNS:<certname>", async () => {
      const csr = openssl([
        "req",
        "-new",
        "-key",
        keyFile(),
        "-subj",
        "/CN=san.example.test",
        "-addext",
        "subjectAltName=DNS:san.example.test,DNS:puppet",
      ]);
      const res = await post("/v1/certificates/san.example.test", { csr });
      assert.equal(res.status, 400, res.text);
      assert.match(res.json.error!.message, /exactly DNS:san\.example\.test/);
      caNeverSaw("san.example.test");
    });
  });

  describe("no takeover of a node the site's own ENC knows", () => {
    it("refuses a node the fallback ENC classifies (409 naming it), and accepts one it does not", async () => {
      const known = await post("/v1/nodes", { name: "legacy-01.example.test", classes: { motd: {} } });
      assert.equal(known.status, 409, known.text);
      assert.match(known.json.error!.message, /fallback ENC .* already classifies legacy-01\.example\.test/);
      const fresh = await post("/v1/nodes", { name: "fresh-01.example.test", classes: { motd: {} } });
      assert.equal(fresh.status, 201, fresh.text);
      assert.match(fallbackLog(), /^fresh-01\.example\.test$/m);
    });

    it("answers 503 when the fallback ENC does not answer within 5 s, never a silent yes", async () => {
      const started = Date.now();
      const slow = await post("/v1/nodes", { name: "slow-enc.example.test", classes: { motd: {} } });
      assert.equal(slow.status, 503, slow.text);
      assert.match(slow.json.error!.message, /gave no answer .* within 5 s/);
      assert.ok(Date.now() - started < 8000, `answered after ${Date.now() - started} ms`);
      assert.equal((await espm.raw("GET", "/v1/nodes/slow-enc.example.test")).status, 404);
    });
  });

  describe("one gate: espm acts only on names it registered", () => {
    it("signs and enrolls no name it never registered, and the CA never hears of it", async () => {
      for (const name of ["never-01.example.test", "legacy-01.example.test"]) {
        const cert = await post(`/v1/certificates/${name}`, { csr: createCsr(name, KEY) });
        assert.equal(cert.status, 422, cert.text);
        assert.match(cert.json.error!.message, /espm has no node .*: register it/);
        const enrollment = await post(`/v1/enrollments/${name}`, {});
        assert.equal(enrollment.status, 422, enrollment.text);
        caNeverSaw(name);
      }
      // legacy-01 is the site ENC's: its registration is refused, so no certificate can follow.
      const known = await post("/v1/nodes", { name: "legacy-01.example.test", classes: { motd: {} } });
      assert.equal(known.status, 409, known.text);
      const cert = await post("/v1/certificates/legacy-01.example.test", {
        csr: createCsr("legacy-01.example.test", KEY),
      });
      assert.equal(cert.status, 422, cert.text);
      caNeverSaw("legacy-01.example.test");
    });

    it("answers 503 when the fallback ENC fails (exit 1), never a yes, and creates nothing", async () => {
      const res = await post("/v1/nodes", { name: "failing-enc.example.test", classes: { motd: {} } });
      assert.equal(res.status, 503, res.text);
      assert.match(
        res.json.error!.message,
        /fallback ENC .* failed for failing-enc\.example\.test \(exit 1: site ENC: database down\)/,
      );
      assert.equal((await espm.raw("GET", "/v1/nodes/failing-enc.example.test")).status, 404);
      caNeverSaw("failing-enc.example.test");
    });

    it("refuses a CSR that repeats an extension (400), before the CA sees it", async () => {
      const name = "dup-ext.example.test";
      assert.equal((await post("/v1/nodes", { name, classes: { motd: {} } })).status, 201);
      const res = await post(`/v1/certificates/${name}`, {
        csr: csrWithRepeatedExtension(name, KEY, "pp_role", ["web", "db"]),
      });
      assert.equal(res.status, 400, res.text);
      assert.match(res.json.error!.message, /requests extension pp_role more than once/);
      // The registration looked the name up at the CA; the CSR itself never went there.
      assert.doesNotMatch(readFileSync(accessLog, "utf8"), /certificate_request\/dup-ext\.example\.test/);
      assert.equal((await espm.raw("DELETE", `/v1/nodes/${name}`)).status, 204);
    });
  });

  describe("no request can hold espm", () => {
    it("closes a slowloris connection, a slow body and a silent TLS client within their deadlines", async () => {
      const started = Date.now();
      const port = espm.setup.port;
      // Headers one byte a second: the header deadline (5 s) closes it.
      const loris = tlsConnect({ host: "127.0.0.1", port, ca: espm.setup.certificate });
      const lorisClosed = closedAfter(loris, started);
      loris.on("error", () => {});
      loris.once("secureConnect", () => loris.write("GET /v1/health HTTP/1.1\r\nHost: x\r\n"));
      const drip = setInterval(() => loris.writable && loris.write("X"), 1000);
      // An authenticated POST whose body never completes: the request deadline (10 s) closes it.
      const body = tlsConnect({ host: "127.0.0.1", port, ca: espm.setup.certificate });
      const bodyClosed = closedAfter(body, started);
      body.on("error", () => {});
      body.once("secureConnect", () =>
        body.write(
          `POST /v1/nodes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${espm.setup.psk}\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{"name":`,
        ),
      );
      const bodyDrip = setInterval(() => body.writable && body.write(" "), 500);
      // TCP only, never a TLS handshake: the handshake deadline (5 s) closes it.
      const silent = tcpConnect({ host: "127.0.0.1", port });
      silent.on("error", () => {});
      const silentClosed = closedAfter(silent, started);
      try {
        const [lorisMs, bodyMs, silentMs] = await Promise.all([lorisClosed, bodyClosed, silentClosed]);
        // Deadlines of 5 s (headers, handshake) and 10 s (whole request), checked every second; the
        // bounds leave room for a loaded machine, and are far below the minutes a stalled client held espm.
        assert.ok(lorisMs < 10_000, `slowloris closed after ${lorisMs} ms`);
        assert.ok(bodyMs < 15_000, `slow body closed after ${bodyMs} ms`);
        assert.ok(silentMs < 10_000, `silent TLS client closed after ${silentMs} ms`);
        console.log(
          `      closed after: slowloris ${lorisMs} ms, slow body ${bodyMs} ms, silent TLS client ${silentMs} ms`,
        );
      } finally {
        clearInterval(drip);
        clearInterval(bodyDrip);
      }
    });

    it("exits within 5 s of SIGTERM with slow clients connected", async () => {
      const victim = await EspmProcess.start(await setupEspm([], "groups: {}\n"));
      const port = victim.setup.port;
      const sockets = [
        tlsConnect({ host: "127.0.0.1", port, ca: victim.setup.certificate }),
        tlsConnect({ host: "127.0.0.1", port, ca: victim.setup.certificate }),
        tcpConnect({ host: "127.0.0.1", port }),
      ];
      for (const s of sockets) s.on("error", () => {});
      sockets[0]!.once("secureConnect", () => sockets[0]!.write("GET /v1/health HTTP/1.1\r\nHost: x\r\n"));
      sockets[1]!.once("secureConnect", () =>
        sockets[1]!.write(
          `POST /v1/nodes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${victim.setup.psk}\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{`,
        ),
      );
      await new Promise((r) => setTimeout(r, 500));
      const started = Date.now();
      const code = await victim.stop("SIGTERM");
      const took = Date.now() - started;
      for (const s of sockets) s.destroy();
      assert.equal(code, 0);
      assert.ok(took < 5000, `espm exited ${took} ms after SIGTERM`);
      assert.ok(victim.logLines.some((l) => l.includes("closing the connections still open after the grace period")));
      console.log(`      espm exited ${took} ms after SIGTERM with 3 slow clients connected`);
    });
  });

  describe("input limits", () => {
    it("answers 400 for JSON nested deeper than 32 on every route that takes a body", async () => {
      const deep = `${"[".repeat(2000)}${"]".repeat(2000)}`;
      const body = `{"name":"deep.example.test","classes":{"motd":{"x":${deep}}}}`;
      const headers = { "content-type": "application/json" };
      for (const [method, path] of [
        ["POST", "/v1/nodes"],
        ["PUT", "/v1/nodes/fresh-01.example.test"],
        ["POST", "/v1/certificates/deep.example.test"],
      ] as const) {
        const res = await espm.raw(method, path, { body, headers });
        assert.equal(res.status, 400, `${method} ${path}: ${res.text}`);
        assert.match(res.json.error!.message, /nested deeper than 32 levels/);
      }
    });

    it("accepts what espm enc can render: 30 levels of parameters come back intact", async () => {
      let value: unknown = "bottom";
      for (let i = 0; i < 27; i++) value = { [`level${i}`]: value };
      const res = await post("/v1/nodes", { name: "nested.example.test", classes: { motd: { deep: value } } });
      assert.equal(res.status, 201, res.text);
      const { stdout } = await run(process.execPath, [ESPM_BIN, "enc", "-c", espm.setup.ini, "nested.example.test"]);
      const { parse } = await import("yaml");
      assert.deepEqual((parse(stdout) as { classes: Record<string, unknown> }).classes.motd, { deep: value });
    });
  });

  describe("reports cannot stall espm", () => {
    it("keeps /v1/health under 100 ms while a 16 MB report and a 3.5 MB one are read", async () => {
      const name = "big-report.example.test";
      assert.equal((await post("/v1/nodes", { name, classes: { motd: {} } })).status, 201);
      const nodeDir = join(world.lab.reportDir, name);
      mkdirSync(nodeDir, { recursive: true });
      const logs = (n: number, size: number) =>
        Array.from(
          { length: n },
          (_, i) =>
            `- !ruby/object:Puppet::Util::Log\n  level: err\n  message: ${`failure ${i} `.padEnd(size, "x")}\n  source: Puppet\n`,
        ).join("");
      const report = (time: string, body: string) =>
        `--- !ruby/object:Puppet::Transaction::Report\nhost: ${name}\ntime: '${time}'\nstatus: failed\nlogs:\n${body}`;
      // Runs after the registration (espm shows no earlier ones), named as Puppet's store processor names them.
      const minute = (offset: number) => new Date(Math.ceil(Date.now() / 60_000) * 60_000 + offset * 60_000);
      const file = (at: Date) => `${at.toISOString().replace(/[-T:]/g, "").slice(0, 12)}.yaml`;
      const [older, newer] = [minute(1), minute(2)];
      writeFileSync(
        join(nodeDir, file(newer)),
        report(newer.toISOString(), logs(30_000, 3500)).slice(0, 16 * 1024 * 1024),
      );
      writeFileSync(join(nodeDir, file(older)), report(older.toISOString(), logs(9_000, 280)));
      let worst = 0;
      let polling = true;
      const poll = (async () => {
        while (polling) {
          const started = process.hrtime.bigint();
          const res = await espm.raw("GET", "/v1/health", { psk: null });
          worst = Math.max(worst, Number(process.hrtime.bigint() - started) / 1e6);
          assert.deepEqual(res.json, { status: "ok" }, "unauthenticated health says only up or down");
          await new Promise((r) => setTimeout(r, 10));
        }
      })();
      const runs = await espm.raw("GET", `/v1/nodes/${name}/runs`);
      polling = false;
      await poll;
      assert.equal(runs.status, 200, runs.text);
      const listed = (runs.json as unknown as { runs: Array<{ time: string; status: string }> }).runs;
      assert.deepEqual(
        listed.map((r) => r.time),
        [older.toISOString()],
        "the 3.5 MB report is read, the 16 MB one skipped",
      );
      assert.ok(worst < 100, `the slowest health answer took ${worst.toFixed(1)} ms`);
      console.log(`      slowest health answer while the reports were read: ${worst.toFixed(1)} ms`);
    });
  });

  describe("a seeded fuzz of 2,000 requests", () => {
    it("gets no 5xx and leaves exactly what it acknowledged in the store, the export and the CA", async () => {
      const random = seeded(20261127);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
      const names = [
        "fz-1.example.test",
        "fz-2.example.test",
        "fz-3.lab.test",
        "puppet",
        "ca",
        "FZ.example.test",
        "a..b.example.test",
        "fz-4.other.test",
        "x".repeat(300),
        "-fz.example.test",
        "fz_5.example.test",
        "compile.lab.test",
        "%2e%2e",
        "fz-6.example.test",
      ];
      const values = [
        null,
        true,
        1,
        -1.5,
        "s",
        "",
        [],
        {},
        [1, "a"],
        { a: { b: [null] } },
        "x".repeat(5000),
        "\u0000",
        "😀",
      ];
      const randomValue = () => pick(values);
      const randomBody = (name: string): string => {
        switch (Math.floor(random() * 9)) {
          case 0:
            return JSON.stringify({
              name,
              classes: { motd: { message: randomValue() } },
              parameters: { p: randomValue() },
            });
          case 1:
            return JSON.stringify({
              name,
              groups: [pick(["base", "nope", ""])],
              environment: pick(["production", "Prod", "x".repeat(80)]),
            });
          case 2:
            return JSON.stringify({ name: randomValue(), classes: randomValue(), extra: randomValue() });
          case 3:
            return JSON.stringify({
              csr: pick([
                createCsr(name, KEY),
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                "",
                "x".repeat(40_000),
              ]),
            });
          case 4:
            return `${"{".repeat(Math.floor(random() * 60))}`;
          case 8:
            return JSON.stringify({
              ttlMinutes: pick([5, 60, 0, -1, "x", 10_000_000]),
              extensions: pick([{}, { pp_role: "web" }, { pp_role: 1 }, { not_an_extension: "x" }]),
            });
          case 5:
            return JSON.stringify({ constructor: { prototype: {} }, name }).replace(
              '"name"',
              '"__proto__":{"x":1},"name"',
            );
          case 6:
            return pick(["", "null", "[]", '"str"', '{"name":', "\u0000"]);
          default:
            return JSON.stringify({ name, classes: { [pick(["motd", "Bad-Class", "a::b", ""])]: {} } });
        }
      };
      const acknowledged = new Set<string>();
      const signed = new Set<string>();
      const enrolled = new Set<string>();
      const statuses = new Map<number, number>();
      // Requests for one name run one at a time, so answers arrive in the order espm acted on them.
      const busy = new Set<string>();
      const keysUsed = new Set<string>();
      let sent = 0;
      const worker = async () => {
        while (sent < 2000) {
          const name = pick(names);
          if (busy.has(name)) {
            await new Promise((r) => setImmediate(r));
            continue;
          }
          busy.add(name);
          sent++;
          const method = pick(["POST", "POST", "PUT", "GET", "DELETE"] as const);
          const route = pick(["nodes", "nodes", "certificates", "certificates", "enrollments", "runs"] as const);
          const query = random() < 0.05 ? "?x=%ff" : route === "runs" ? pick(["", "?limit=3", "?limit=0"]) : "";
          const path =
            method === "POST" && route === "nodes"
              ? "/v1/nodes"
              : route === "runs"
                ? `/v1/nodes/${encodeURIComponent(name)}/runs${query}`
                : `/v1/${route}/${encodeURIComponent(name)}${query}`;
          const headers: Record<string, string> = {};
          if (random() < 0.9)
            headers["content-type"] = pick([
              "application/json",
              "application/json",
              "text/plain",
              "application/json; charset=latin1",
            ]);
          // A key that already made something replays that answer and creates nothing: count only its first 201.
          let key: string | undefined;
          if (random() < 0.2) {
            key = pick(["short", "fuzz-key-0000000000000001", "fuzz-key-0000000000000002", "x".repeat(200)]);
            headers["idempotency-key"] = key;
          }
          const replay = key !== undefined && keysUsed.has(key);
          const psk = random() < 0.05 ? pick([null, "wrong", `${espm.setup.psk}x`]) : undefined;
          const body = method === "POST" || method === "PUT" ? randomBody(name) : undefined;
          try {
            const res = await espm.raw(method, path, { body, headers, psk });
            statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
            assert.ok(
              res.status < 500,
              `${method} ${path} ${body?.slice(0, 200)} -> ${res.status} ${res.text.slice(0, 300)}`,
            );
            const sets = { nodes: acknowledged, certificates: signed, enrollments: enrolled, runs: undefined };
            if (res.status === 201 && !replay) sets[route]?.add(name);
            if (res.status === 201 && key !== undefined) keysUsed.add(key);
            if (res.status === 204 && method === "DELETE") sets[route]?.delete(name);
            // A registration's end is its certificate's end, and its enrollment's.
            if (res.status === 204 && method === "DELETE" && route === "nodes") {
              signed.delete(name);
              enrolled.delete(name);
            }
            // Runs, certificates and enrollments exist only for live registrations.
            if (res.status === 200 && route === "runs") assert.ok(acknowledged.has(name), `runs of ${name}`);
            if (res.status === 201 && route !== "nodes") assert.ok(acknowledged.has(name), `${route} for ${name}`);
          } finally {
            busy.delete(name);
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
      // The fuzz's names are the only ones it could have touched; compare what espm holds of them.
      const db = new Database(join(espm.setup.configDir, "espm.db"), { readonly: true });
      const fuzzNames = new Set(names);
      const live = (db.prepare("SELECT name FROM nodes WHERE deleted_at IS NULL").all() as Array<{ name: string }>)
        .map((r) => r.name)
        .filter((n) => fuzzNames.has(n));
      const certified = (
        db
          .prepare(
            "SELECT certname FROM certificates WHERE state = 'signed' AND id IN (SELECT max(id) FROM certificates GROUP BY certname)",
          )
          .all() as Array<{ certname: string }>
      )
        .map((r) => r.certname)
        .filter((n) => fuzzNames.has(n));
      const tokens = (
        db.prepare("SELECT certname FROM enrollments WHERE state <> 'revoked'").all() as Array<{ certname: string }>
      )
        .map((r) => r.certname)
        .filter((n) => fuzzNames.has(n));
      db.close();
      assert.deepEqual(live.sort(), [...acknowledged].sort(), "live nodes are exactly the acknowledged creates");
      assert.deepEqual(tokens.sort(), [...enrolled].sort(), "live enrollments are exactly the acknowledged ones");
      for (const name of [...signed, ...enrolled])
        assert.ok(acknowledged.has(name), `${name} holds a certificate or an enrollment without a registration`);
      assert.deepEqual(certified.sort(), [...signed].sort(), "signed certificates are exactly the acknowledged signs");
      for (const name of fuzzNames) {
        const exported = existsSync(join(espm.setup.configDir, "enc-nodes", `${name}.json`));
        assert.equal(exported, acknowledged.has(name), `export of ${name}`);
      }
      for (const name of ["puppet", "ca", "compile.lab.test", "fz-4.other.test"]) caNeverSaw(name);
      // At the CA: a signed certificate exactly for the acknowledged signs, and no request left pending.
      for (const name of [
        "fz-1.example.test",
        "fz-2.example.test",
        "fz-3.lab.test",
        "fz_5.example.test",
        "fz-6.example.test",
      ]) {
        const state = await caState(world.lab, name);
        assert.equal(state === "signed", signed.has(name), `${name} is ${state} at the CA`);
        assert.notEqual(state, "requested", `${name} left pending at the CA`);
      }
      console.log(`      fuzz statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
    });
  });
});
