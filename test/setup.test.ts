import assert from "node:assert/strict";
import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { parse } from "ini";
import { certificateFingerprint } from "../sdk/x509";
import { ESPM_BIN, run, scratchDir, SETUP_BIN, setupEspm } from "./helpers/espm";

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

  it("refuses to overwrite an existing setup, names the file and changes nothing", async () => {
    const setup = await setupEspm();
    const before = ["espm.ini", "psk", "certs/espm.crt", "certs/espm.key"].map((f) => readFileSync(join(setup.configDir, f), "utf8"));
    await assert.rejects(run(process.execPath, [SETUP_BIN, "-d", setup.configDir, "-p", "9999"]), (err: { code: number; stderr: string }) => {
      assert.notEqual(err.code, 0);
      assert.match(err.stderr, /already exists; espm-setup never overwrites/);
      assert.ok(err.stderr.includes(setup.configDir));
      return true;
    });
    const after = ["espm.ini", "psk", "certs/espm.crt", "certs/espm.key"].map((f) => readFileSync(join(setup.configDir, f), "utf8"));
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

describe("espm puppet-config", () => {
  it("prints the ENC setting for this config and Debian's auth.conf with espm allowed on the CA rules only", async () => {
    const setup = await setupEspm();
    const { stdout } = await run(process.execPath, [ESPM_BIN, "puppet-config", "-c", setup.ini, "--auth-conf", "/etc/puppet/puppetserver/conf.d/auth.conf"]);
    assert.ok(stdout.includes(`external_nodes = ${ESPM_BIN} enc -c ${setup.ini}`));
    const rewritten = stdout.slice(stdout.indexOf("authorization: {"));
    assert.equal(rewritten.match(/allow: \["espm", \{ extensions: \{ pp_cli_auth: "true" \} \}\]/g)?.length, 3);
    assert.match(rewritten, /name: "espm environment classes"/);
    assert.equal(rewritten.match(/"espm"/g)?.length, 4, "espm appears in exactly four rules");
    rmSync(setup.dir, { recursive: true });
  });
});
