import assert from "node:assert/strict";
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "ini";
import { X509Certificate } from "node:crypto";
import { certificateFingerprint } from "espm-sdk/x509";
import { createSelfSignedCertificate, positiveSerial } from "espm-agent/http/self-signed";
import { findJava } from "../scripts/lab/puppetserver";
import { ESPM_BIN, installedAgent, run, scratchDir, SETUP_BIN, setupEspm } from "./helpers/espm";

describe("espm-setup", () => {
  it("writes a 48-character PSK and a key readable by its owner only, and prints the stack config", async () => {
    const setup = await setupEspm();
    assert.match(setup.psk, /^[A-Za-z0-9_-]{48}$/);
    assert.equal(statSync(join(setup.configDir, "psk")).mode & 0o777, 0o600);
    assert.equal(statSync(join(setup.configDir, "certs/espm.key")).mode & 0o777, 0o600);
    const ini = readFileSync(setup.ini, "utf8");
    assert.ok(!ini.includes(setup.psk), "espm.ini must not hold the PSK");
    assert.equal(statSync(setup.ini).mode & 0o777, 0o644);
    assert.equal(parse(ini).server.port, String(setup.port));
    assert.ok(setup.stdout.includes(`pulumi config set espm:url https://127.0.0.1:${setup.port}`));
    assert.ok(setup.stdout.includes(`pulumi config set --secret espm:psk ${setup.psk}`));
    assert.ok(setup.stdout.includes(`pulumi config set espm:certificate -- "-----BEGIN CERTIFICATE-----`));
    assert.ok(setup.stdout.includes(certificateFingerprint(setup.certificate)));
    rmSync(setup.dir, { recursive: true });
  });

  it("gives its certificate a serial that strict DER parsers accept, whatever the random bytes", () => {
    // A serial whose first byte came out 0x00 was once written with a leading zero byte, which
    // Node's X509Certificate refuses ("illegal padding"): about one espm-setup in 128 failed.
    for (const first of [0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0xff]) {
      const random = Buffer.alloc(16, 0);
      random[0] = first;
      const hex = positiveSerial(random);
      assert.match(hex, /^[4-7][0-9a-f]0{30}$/, `from 0x${first.toString(16)}: ${hex}`);
    }
    const { certificatePem } = createSelfSignedCertificate({ commonName: "espm.example.test", altNames: [] });
    assert.match(new X509Certificate(certificatePem).serialNumber, /^[4-7][0-9A-F]{31}$/);
  });

  it("refuses to overwrite an existing setup, names the file and changes nothing", async () => {
    const setup = await setupEspm();
    const before = ["espm.ini", "psk", "certs/espm.crt", "certs/espm.key"].map((f) =>
      readFileSync(join(setup.configDir, f), "utf8"),
    );
    await assert.rejects(
      run(process.execPath, [SETUP_BIN, "-d", setup.configDir, "-p", "9999"]),
      (err: { code: number; stderr: string }) => {
        assert.notEqual(err.code, 0);
        assert.match(err.stderr, /already exists; espm-setup never overwrites/);
        assert.ok(err.stderr.includes(setup.configDir));
        return true;
      },
    );
    const after = ["espm.ini", "psk", "certs/espm.crt", "certs/espm.key"].map((f) =>
      readFileSync(join(setup.configDir, f), "utf8"),
    );
    assert.deepEqual(after, before);
    rmSync(setup.dir, { recursive: true });
  });

  it("names a missing directory", async () => {
    const dir = scratchDir("espm-missing");
    const missing = join(dir, "nope");
    await assert.rejects(run(process.execPath, [SETUP_BIN, "-d", missing]), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 1);
      assert.ok(err.stderr.includes(`the directory ${missing} does not exist`));
      return true;
    });
    rmSync(dir, { recursive: true });
  });
});

describe("espm-setup's defaults and the systemd unit", () => {
  it("puts the store and the ENC export in systemd's StateDirectory, /var/lib/espm", async () => {
    const dir = scratchDir("espm-defaults");
    mkdirSync(join(dir, "certs"), { recursive: true });
    await run(process.execPath, [SETUP_BIN, "-d", dir, "--certname-pattern", "*.nodes.example.com"]);
    const ini = parse(readFileSync(join(dir, "espm.ini"), "utf8"));
    assert.equal(ini.store.database, "/var/lib/espm/espm.db");
    assert.equal(ini.store.enc_export, "/var/lib/espm/enc-nodes");
    assert.deepEqual(ini.certnames.allow, ["*.nodes.example.com"]);
    rmSync(dir, { recursive: true });
  });

  it("says exactly which state directory to create when espm may not create it (a first start without the guide)", async () => {
    const dir = scratchDir("espm-state");
    const setup = await setupEspm([], undefined, dir);
    const state = join(dir, "locked/state");
    mkdirSync(join(dir, "locked"), { mode: 0o755 });
    writeFileSync(
      setup.ini,
      readFileSync(setup.ini, "utf8").replaceAll(`${setup.configDir}/enc-nodes`, `${state}/enc-nodes`),
    );
    const espmUid = Number((await run("id", ["-u", "espm"])).stdout.trim());
    for (const f of ["psk", "certs/espm.key"]) chownSync(join(setup.configDir, f), espmUid, -1);
    // As espm's user, from an installed copy (the checkout may sit where other users cannot enter).
    const { espm } = installedAgent(dir);
    const argv = ["--reuid=espm", "--regid=espm", "--init-groups", process.execPath, espm, "-c", setup.ini];
    const result = await run("setpriv", argv).catch((err: { stderr: string; code: number }) => err);
    assert.ok("code" in result && result.code === 1, "espm exits 1");
    assert.match(
      (result as { stderr: string }).stderr,
      new RegExp(
        `cannot create the state directory ${state}/enc-nodes as user espm \\(EACCES\\): as root, create it for espm's user: install -d -o espm -g \\d+ -m 0750 ${state}/enc-nodes`,
      ),
    );
    rmSync(dir, { recursive: true });
  });
});

describe("espm puppet-config", () => {
  it("prints the ENC setting and Debian's auth.conf with espm's own rules first, limited to the certname patterns", async () => {
    const setup = await setupEspm([
      "--certname-pattern",
      "*.nodes.example.com",
      "--certname-pattern",
      "db-01.example.org",
      "--deny-certname",
      "old.nodes.example.com",
    ]);
    const { stdout } = await run(process.execPath, [
      ESPM_BIN,
      "puppet-config",
      "-c",
      setup.ini,
      "--auth-conf",
      "/etc/puppet/puppetserver/conf.d/auth.conf",
    ]);
    assert.ok(stdout.includes(`external_nodes = ${ESPM_BIN} enc -c ${setup.ini}`));
    const rewritten = stdout.slice(stdout.indexOf("authorization: {"));
    assert.ok(
      rewritten.includes(
        'path: "^/puppet-ca/v1/certificate_status/(?!(?:ca|espm|puppet|puppetmaster|localhost|old\\\\.nodes\\\\.example\\\\.com)$)(?:[a-z0-9_-]+\\\\.nodes\\\\.example\\\\.com|db-01\\\\.example\\\\.org)$", type: regex, method: [get, put, delete] }',
      ),
      rewritten.slice(0, 1200),
    );
    assert.match(rewritten, /name: "espm certificates"/);
    assert.match(rewritten, /name: "espm certificate list"/);
    assert.match(rewritten, /name: "espm environment classes"/);
    assert.equal(rewritten.match(/"espm"/g)?.length, 3, "espm appears in its own three rules and no stock rule");
    assert.match(
      rewritten,
      /allow: \["espm", \{ extensions: \{ pp_cli_auth: "true" \} \}\]\s+sort-order: 400\s+name: "espm certificates"/,
      "the CA CLI keeps its access",
    );
    assert.doesNotMatch(rewritten, /\/puppet-ca\/v1\/clean[^\n]*\n[^}]*"espm"/, "no rule lets espm use /clean");
    rmSync(setup.dir, { recursive: true });
  });

  it("refuses to add a rule whose name the site's auth.conf already uses (Puppet Server would stop on the reload)", async () => {
    const setup = await setupEspm(["--certname-pattern", "*.nodes.example.com"]);
    const site = join(setup.dir, "auth.conf");
    const stock = readFileSync("/etc/puppet/puppetserver/conf.d/auth.conf", "utf8");
    // The site's own rule, named like one of espm's.
    writeFileSync(
      site,
      stock.replace(
        /rules:\s*\[/,
        (m) =>
          `${m}\n        {\n            match-request: { path: "/puppet/v3/environment_classes", type: path, method: get }\n            allow: ["reporting.site.test"]\n            sort-order: 450\n            name: "espm environment classes"\n        },`,
      ),
    );
    await assert.rejects(
      run(process.execPath, [
        ESPM_BIN,
        "puppet-config",
        "-c",
        setup.ini,
        "--auth-conf",
        site,
        "--write",
        `${site}.espm`,
      ]),
      (err: { stderr: string }) => {
        assert.match(
          err.stderr,
          /already has a rule named "espm environment classes" with other content than espm's; Puppet Server refuses two rules of one name/,
        );
        return true;
      },
    );
    assert.equal(existsSync(`${site}.espm`), false, "nothing written");
    rmSync(setup.dir, { recursive: true });
  });

  it("gives back an auth.conf that has espm's rules already unchanged, and check-auth-conf reads files as Puppet Server does", async () => {
    const setup = await setupEspm(["--certname-pattern", "*.nodes.example.com"]);
    const stock = join(setup.dir, "auth.conf");
    writeFileSync(stock, readFileSync("/etc/puppet/puppetserver/conf.d/auth.conf", "utf8"));
    const espm = (...args: string[]) => run(process.execPath, [ESPM_BIN, ...args]);
    await espm("puppet-config", "-c", setup.ini, "--auth-conf", stock, "--write", `${stock}.1`);
    await espm("puppet-config", "-c", setup.ini, "--auth-conf", `${stock}.1`, "--write", `${stock}.2`);
    assert.equal(readFileSync(`${stock}.2`, "utf8"), readFileSync(`${stock}.1`, "utf8"), "a second pass adds nothing");
    const java = ["--java", findJava()];
    assert.match((await espm("check-auth-conf", `${stock}.1`, ...java)).stdout, /Puppet Server would take it/);
    // Two rules of one name, as a hand edit could leave them: Puppet Server's own refusal, before any reload.
    const rule = (path: string) =>
      `{\n match-request: { path: "${path}", type: path }\n allow: ["a"]\n sort-order: 400\n name: "twice"\n},\n`;
    writeFileSync(
      `${stock}.3`,
      readFileSync(stock, "utf8").replace("rules: [", `rules: [\n${rule("/x")}${rule("/y")}`),
    );
    await assert.rejects(espm("check-auth-conf", `${stock}.3`, ...java), (err: { stderr: string; code: number }) => {
      assert.equal(err.code, 1);
      assert.match(
        err.stderr,
        /Puppet Server would refuse .*auth\.conf\.3, and stop on a reload:\nDuplicate rules named 'twice'/,
      );
      return true;
    });
    writeFileSync(`${stock}.4`, readFileSync(stock, "utf8").replace("rules: [", "rules: [ {"));
    await assert.rejects(espm("check-auth-conf", `${stock}.4`, ...java), /Puppet Server would refuse/);
    rmSync(setup.dir, { recursive: true });
  });

  it("with --puppetdb-url: names PuppetDB with the Puppet Server's files, reads runs there, and prints PuppetDB's steps", async () => {
    const dir = scratchDir("espm-puppetdb-setup");
    const cert = join(dir, "client.crt");
    writeFileSync(cert, createSelfSignedCertificate({ commonName: "espm-site-a", altNames: [] }).certificatePem);
    const puppet = ["--puppetserver-url", "https://puppet:8140", "--puppetserver-ca", join(dir, "ca.pem")];
    puppet.push("--puppetserver-cert", cert, "--puppetserver-key", join(dir, "client.key"));
    const setup = await setupEspm([...puppet, "--puppetdb-url", "https://puppetdb:8081"]);
    const ini = parse(readFileSync(setup.ini, "utf8"));
    assert.deepEqual(
      { ...ini.puppetdb },
      {
        url: "https://puppetdb:8081",
        ca_bundle: join(dir, "ca.pem"),
        cert,
        key: join(dir, "client.key"),
      },
    );
    assert.equal(ini.puppetserver.reportdir, undefined, "runs come from PuppetDB");
    const { stdout } = await run(process.execPath, [ESPM_BIN, "puppet-config", "-c", setup.ini]);
    assert.match(stdout, /reports = puppetdb\n/);
    assert.match(stdout, /storeconfigs_backend = puppetdb\n/);
    assert.match(stdout, /server_urls = https:\/\/puppetdb:8081\n/);
    assert.match(stdout, /then restart PuppetDB:\nespm-site-a\n/, "the allowlist line is the certificate's CN");
    assert.match(stdout, /lets espm submit ANY command/);

    await assert.rejects(
      run(process.execPath, [SETUP_BIN, "-d", join(dir, "x"), "--puppetdb-url", "https://puppetdb:8081"]),
      (err: { stderr: string }) => /--puppetdb-url needs the --puppetserver-\* options/.test(err.stderr),
    );
    await assert.rejects(
      run(process.execPath, [SETUP_BIN, "-d", join(dir, "x"), ...puppet, "--puppetdb-url", "http://puppetdb:8080"]),
      (err: { stderr: string }) => /--puppetdb-url http:\/\/puppetdb:8080: must be an https:\/\/ URL/.test(err.stderr),
    );
    // The rules are espm.ini's own (the config schema), named by the option that set the value.
    for (const [args, says] of [
      [["--port", "70000"], /--port 70000: must be a number from 1 to 65535/],
      [["--certname-pattern", "web*.example.test"], /--certname-pattern web\*\.example\.test: .*whole label/],
      [
        ["--store-url", "postgres://espm:secret@db/espm"],
        /--store-url .*: must be postgres:\/\/USER@HOST:PORT\/DATABASE, without a password/,
      ],
    ] as const) {
      await assert.rejects(
        run(process.execPath, [SETUP_BIN, "-d", join(dir, "x"), ...args]),
        (err: { stderr: string }) => says.test(err.stderr),
      );
    }
    rmSync(setup.dir, { recursive: true });
    rmSync(dir, { recursive: true });
  });

  it("turns patterns into regexes that match exactly one label for each '*'", async () => {
    const { certnamePathRegex } = await import("espm-agent/puppetserver/config");
    const regex = new RegExp(certnamePathRegex({ patterns: ["*.nodes.example.com"], allowAny: false, deny: [] }));
    const path = (name: string) => `/puppet-ca/v1/certificate_status/${name}`;
    assert.ok(regex.test(path("web-01.nodes.example.com")));
    for (const name of [
      "a.b.nodes.example.com",
      "nodes.example.com",
      "webXnodes.example.com",
      "web.nodes.example.com.evil",
      "puppet",
    ]) {
      assert.ok(!regex.test(path(name)), name);
    }
    const any = new RegExp(certnamePathRegex({ patterns: [], allowAny: true, deny: [] }));
    assert.ok(any.test(path("anything.example.org")));
    for (const name of ["puppet", "ca", "localhost", "espm", "puppetmaster"]) assert.ok(!any.test(path(name)), name);
    assert.ok(any.test(path("puppet.example.org")), "only the exact reserved names are excluded");
  });
});
