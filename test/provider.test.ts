/**
 * The providers' methods called directly, as the dynamic-provider host calls them, against a real
 * espm backed by the local Puppet Server.
 */
import assert from "node:assert/strict";
import diagnostics from "node:diagnostics_channel";
import { createHash, createPublicKey, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Agent, request } from "undici";
import { certificateProvider, registrationProvider } from "pulumi-espm";
import { renderBootstrap } from "pulumi-espm/bootstrap";
import type { CertificateState } from "pulumi-espm/certificate";
import type { RegistrationState } from "pulumi-espm/registration";
import { configuredProvider } from "./helpers/providers";
import { sharedWorld, type World } from "./helpers/world";

type Provider = typeof registrationProvider;
type Inputs = Record<string, unknown>;

async function configured(
  provider: Provider,
  world: World,
  overrides: Record<string, string | undefined> = {},
): Promise<Provider> {
  return configuredProvider(provider, world.stackConfig(overrides));
}

/** The CA bundle exactly as Puppet Server serves it to an agent that has none. */
async function servedCaBundle(world: World): Promise<string> {
  const dispatcher = new Agent({ connect: { ca: readFileSync(world.lab.caBundle) } });
  try {
    const res = await request(`${world.lab.url}/puppet-ca/v1/certificate/ca`, { dispatcher });
    assert.equal(res.statusCode, 200);
    return await res.body.text();
  } finally {
    await dispatcher.close();
  }
}

async function checked(provider: Provider, news: Inputs): Promise<Inputs> {
  const result = await provider.check!({}, news);
  assert.deepEqual(result.failures ?? [], [], "check passes");
  return result.inputs!;
}

describe("providers against live espm and Puppet Server", function () {
  this.timeout(180_000);
  let world: World;
  let registrations: Provider;
  let certificates: Provider;

  before(async function () {
    world = await sharedWorld();
    registrations = await configured(registrationProvider, world);
    certificates = await configured(certificateProvider, world);
  });

  describe("check", () => {
    it("names the property of each problem", async () => {
      const result = await registrationProvider.check!(
        {},
        { name: "Web_01", groups: [], classes: {}, onConflict: "retry", colour: "blue" },
      );
      const byProperty = new Map((result.failures ?? []).map((f) => [f.property, f.reason]));
      assert.match(byProperty.get("name") ?? "", /lowercase/);
      assert.match(byProperty.get("onConflict") ?? "", /suffix|fail/);
      assert.match(byProperty.get("colour") ?? "", /not an input/);
    });

    it("refuses a registration with neither groups nor classes", async () => {
      const result = await registrationProvider.check!({}, { name: "web-01.example.test" });
      assert.deepEqual(
        result.failures?.map((f) => f.property),
        ["groups"],
      );
      assert.match(result.failures[0]!.reason, /at least one group or one class/);
    });

    it("refuses unknown key types and extensions, and defaults what it may", async () => {
      const bad = await certificateProvider.check!(
        {},
        { certname: "web-01.example.test", keyType: "ec-p384", extensions: { pp_colour: "blue" } },
      );
      const props = bad.failures?.map((f) => f.property).sort();
      assert.deepEqual(props, ["extensions.pp_colour", "keyType"]);
      assert.match(
        bad.failures!.find((f) => f.property === "keyType")!.reason,
        /rsa-2048, rsa-3072, rsa-4096 or ec-p256/,
      );
      assert.match(
        bad.failures!.find((f) => f.property === "extensions.pp_colour")!.reason,
        /unknown Puppet extension; known: pp_uuid/,
      );
      const good = await certificateProvider.check!({}, { certname: "web-01.example.test", __provider: "code" });
      assert.deepEqual(good.inputs, {
        certname: "web-01.example.test",
        keyType: "ec-p256",
        extensions: {},
        includeCrl: true,
        includeCaBundle: true,
      });
      // A certificate made under the old default (RSA-2048) keeps it: the new default replaces nothing.
      const kept = await certificateProvider.check!(good.inputs, { certname: "web-01.example.test" });
      assert.equal(kept.inputs!.keyType, "ec-p256");
      const old = { certname: "web-01.example.test", keyType: "rsa-2048", extensions: {} };
      assert.equal(
        (await certificateProvider.check!(old, { certname: "web-01.example.test" })).inputs!.keyType,
        "rsa-2048",
      );
    });

    it("leaves unknown values for apply time", async () => {
      const unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
      const result = await certificateProvider.check!({}, { certname: unknown });
      assert.deepEqual(result.failures ?? [], []);
      assert.equal(result.inputs!.certname, unknown);
    });
  });

  describe("diff", () => {
    const base = { name: "a.example.test", groups: ["base"], classes: {}, parameters: {}, onConflict: "suffix" };
    it("updates classification in place and replaces on a new name", async () => {
      const olds = { ...base, nodeName: "a.example.test" };
      assert.deepEqual(await registrationProvider.diff!("a.example.test", olds, { ...base }), {
        changes: false,
        replaces: [],
      });
      assert.deepEqual(
        await registrationProvider.diff!("a.example.test", olds, { ...base, parameters: { tier: "front" } }),
        { changes: true, replaces: [] },
      );
      assert.deepEqual(await registrationProvider.diff!("a.example.test", olds, { ...base, name: "b.example.test" }), {
        changes: true,
        replaces: ["name"],
      });
    });

    it("ignores a new connection", async () => {
      const connection = { url: "https://elsewhere:8443", psk: "x".repeat(48), fingerprint: "ab".repeat(32) };
      assert.equal(
        (await registrationProvider.diff!("a.example.test", { ...base }, { ...base, connection })).changes,
        false,
      );
    });

    it("replaces a certificate on any input change, delete before replace", async () => {
      const inputs = { certname: "a.example.test", keyType: "rsa-2048", extensions: {} };
      const olds = {
        ...inputs,
        state: "signed",
        certificatePem: "-----BEGIN CERTIFICATE-----…",
        privateKeyPem: "-----BEGIN PRIVATE KEY-----…",
      };
      assert.deepEqual(await certificateProvider.diff!("a.example.test", olds, { ...inputs }), {
        changes: false,
        replaces: [],
        deleteBeforeReplace: true,
      });
      assert.deepEqual(
        await certificateProvider.diff!("a.example.test", olds, { ...inputs, extensions: { pp_role: "db" } }),
        { changes: true, replaces: ["extensions"], deleteBeforeReplace: true },
      );
      assert.deepEqual(
        (await certificateProvider.diff!("a.example.test", olds, { ...inputs, keyType: "rsa-3072" })).replaces,
        ["keyType"],
      );
    });

    it("replaces a certificate recorded half-made (init-failed: no key, no certificate), delete before replace", async () => {
      const inputs = { certname: "a.example.test", keyType: "rsa-2048", extensions: {} };
      assert.deepEqual(
        await certificateProvider.diff!("a.example.test", { ...inputs, state: "unknown" }, { ...inputs }),
        { changes: true, replaces: ["state"], deleteBeforeReplace: true },
      );
    });
  });

  describe("PuppetNodeRegistration", () => {
    it("creates, updates classification in place, and reads what espm holds", async () => {
      const inputs = await checked(registrations, {
        name: "reg-01.provider.test",
        groups: ["base"],
        classes: { espm_file: { path: "/tmp/x", content: "one" } },
        parameters: { tier: "front" },
      });
      const created = await registrations.create(inputs);
      const state = created.outs as RegistrationState;
      assert.equal(created.id, "reg-01.provider.test");
      assert.equal(state.nodeName, "reg-01.provider.test");
      assert.equal(state.nodeEnvironment, "production");
      assert.equal(state.onConflict, "suffix");

      const news = await checked(registrations, {
        ...inputs,
        classes: { espm_file: { path: "/tmp/x", content: "two" } },
      });
      const updated = await registrations.update!(created.id, state, news);
      assert.equal((updated.outs as RegistrationState).nodeName, state.nodeName);
      const client = world.client();
      const node = await client.getNode("reg-01.provider.test");
      await client.close();
      assert.deepEqual(node?.classes, { espm_file: { path: "/tmp/x", content: "two" } });
      assert.deepEqual(node?.parameters, { tier: "front" });

      const read = await registrations.read!(created.id, updated.outs);
      assert.equal(read.id, created.id);
      assert.deepEqual((read.props as RegistrationState).classes, node?.classes);
      await registrations.delete!(created.id, updated.outs);
    });

    it("suffixes a taken name with a millisecond timestamp, or fails when told to", async () => {
      const inputs = await checked(registrations, { name: "taken.provider.test", groups: ["base"] });
      const first = await registrations.create(inputs);
      const second = await registrations.create(inputs);
      assert.equal(first.id, "taken.provider.test");
      assert.match(second.id, /^taken-\d{13}\.provider\.test$/);
      assert.equal((second.outs as RegistrationState).nodeName, second.id);
      await assert.rejects(
        registrations.create({ ...inputs, onConflict: "fail" }),
        /taken\.provider\.test.*(already|conflict|exists)/i,
      );
      for (const created of [first, second]) await registrations.delete!(created.id, created.outs);
    });

    it("shows a node deleted behind Pulumi's back as gone on refresh, and deletes twice without error", async () => {
      const created = await registrations.create(
        await checked(registrations, {
          name: "oob.provider.test",
          classes: { espm_file: { path: "/tmp/y", content: "y" } },
        }),
      );
      const client = world.client();
      await client.deleteNode(created.id);
      await client.close();
      const read = await registrations.read!(created.id, created.outs);
      assert.equal(read.id, "");
      await registrations.delete!(created.id, created.outs);
      await registrations.delete!(created.id, created.outs);
    });
  });

  describe("PuppetCertificate", () => {
    /** espm signs only for its own live registrations. */
    const registered = async (name: string) => {
      const client = world.client();
      await client.registerNode({ name, groups: [] });
      await client.close();
    };

    it("makes the key here, and returns the certificate, CA bundle, CRL, serial and not-after", async () => {
      await registered("cert-01.provider.test");
      const inputs = await checked(certificates, { certname: "cert-01.provider.test", extensions: { pp_role: "web" } });
      const created = await certificates.create(inputs);
      const state = created.outs as CertificateState;
      const certificate = new X509Certificate(state.certificatePem);
      assert.equal(certificate.subject, "CN=cert-01.provider.test");
      assert.ok(
        certificate.checkPrivateKey(
          createPublicKey(state.privateKeyPem) && (await import("node:crypto")).createPrivateKey(state.privateKeyPem),
        ),
      );
      assert.equal(state.serial, certificate.serialNumber.toUpperCase().replace(/^0+(?=.)/, ""));
      assert.equal(state.notAfter, new Date(certificate.validTo).toISOString());
      assert.match(state.caCertificatePem, /BEGIN CERTIFICATE/);
      assert.match(state.crlPem, /BEGIN X509 CRL/);
      assert.equal(state.state, "signed");
      assert.ok(certificate.checkIssued(new X509Certificate(state.caCertificatePem)));

      const read = await certificates.read!(created.id, state);
      assert.equal((read.props as CertificateState).state, "signed");
      await certificates.delete!(created.id, state);
      await certificates.delete!(created.id, state);
      const client = world.client();
      assert.equal((await client.certificateStatus(created.id))?.state, "revoked");
      await client.close();
    });

    it("keeps no CRL with includeCrl false, and turning it off later empties crlPem in place", async () => {
      await registered("cert-03.provider.test");
      const without = await certificates.create(
        await checked(certificates, { certname: "cert-03.provider.test", includeCrl: false }),
      );
      const lean = without.outs as CertificateState;
      assert.equal(lean.crlPem, "");
      assert.ok(new X509Certificate(lean.certificatePem).checkIssued(new X509Certificate(lean.caCertificatePem)));
      await certificates.delete!(without.id, lean);

      await registered("cert-04.provider.test");
      const inputs = await checked(certificates, { certname: "cert-04.provider.test" });
      assert.equal(inputs.includeCrl, true, "the deprecated default keeps the CRL");
      const created = await certificates.create(inputs);
      const state = created.outs as CertificateState;
      assert.match(state.crlPem, /BEGIN X509 CRL/);
      // A certificate stored before the input existed holds its CRL: the default changes nothing.
      const stored: CertificateState = { ...state };
      delete stored.includeCrl;
      assert.equal((await certificates.diff!(created.id, stored, inputs)).changes, false);

      const off = { ...inputs, includeCrl: false };
      const diff = await certificates.diff!(created.id, state, off);
      assert.equal(diff.changes, true);
      assert.deepEqual(diff.replaces, [], "no new certificate for it");
      const updated = (await certificates.update!(created.id, state, off)).outs as CertificateState;
      assert.equal(updated.crlPem, "");
      assert.equal(updated.includeCrl, false);
      assert.equal(updated.serial, state.serial);
      assert.equal(updated.certificatePem, state.certificatePem);
      const client = world.client();
      assert.equal((await client.certificateStatus(created.id))?.state, "signed", "the CA still holds it, signed");
      await client.close();
      await certificates.delete!(created.id, updated);
    });

    it("boots from the CA bundle's fingerprint alone (includeCaBundle: false), over a stale CA left on the image", async () => {
      const name = "cert-05.provider.test";
      await registered(name);
      const inputs = await checked(certificates, { certname: name, includeCrl: false, includeCaBundle: false });
      const created = await certificates.create(inputs);
      const state = created.outs as CertificateState;
      assert.equal(state.caCertificatePem, "", "no bundle in state");
      const served = await servedCaBundle(world);
      assert.equal(state.caFingerprint, createHash("sha256").update(served).digest("hex"));

      const { certname, certificatePem, privateKeyPem, caCertificatePem, caFingerprint } = state;
      const userdata = renderBootstrap({
        nodeName: name,
        master: "localhost",
        masterPort: world.lab.port,
        certificate: { certname, certificatePem, privateKeyPem, caCertificatePem, caFingerprint },
      });
      assert.equal(userdata.script.match(/BEGIN CERTIFICATE/g)?.length, 1, "the node's own certificate, no bundle");
      // Another site's CA left on the image: the bootstrap removes it, so the agent downloads and checks the real one.
      const localCa = join(world.dir, "agent-cert-05/ssl/certs/ca.pem");
      mkdirSync(dirname(localCa), { recursive: true });
      const stale = readFileSync(
        join(__dirname, "..", "..", "test", "unit", "snapshots", "puppet-ca.cert.txt"),
        "utf8",
      );
      writeFileSync(localCa, stale);
      const boot = await world.boot("cert-05", userdata.script);
      assert.equal(boot.code, 0, `${boot.stdout}\n${boot.stderr}\n${boot.log}`);
      const blocks = (pem: string) => pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
      assert.ok(existsSync(localCa));
      assert.deepEqual(blocks(readFileSync(localCa, "utf8")), blocks(served), "the agent trusts the site's CA");

      await certificates.delete!(created.id, state);
    });

    it("empties the CA bundle in place when includeCaBundle is turned off, and gives a certificate stored before the fingerprint existed one", async () => {
      const name = "cert-07.provider.test";
      await registered(name);
      const inputs = await checked(certificates, { certname: name, includeCrl: false });
      assert.equal(inputs.includeCaBundle, true);
      const created = await certificates.create(inputs);
      const state = created.outs as CertificateState;
      assert.match(state.caCertificatePem, /BEGIN CERTIFICATE/);
      // As 0.1.0 stored it: no includeCaBundle, no fingerprint. The default changes nothing.
      const stored: CertificateState = { ...state };
      delete stored.includeCaBundle;
      delete stored.caFingerprint;
      assert.equal((await certificates.diff!(created.id, stored, inputs)).changes, false);
      const refreshed = (await certificates.read!(created.id, stored)).props as CertificateState;
      assert.equal(refreshed.caFingerprint, state.caFingerprint, "a refresh gives it its fingerprint");

      const off = { ...inputs, includeCaBundle: false };
      const diff = await certificates.diff!(created.id, stored, off);
      assert.equal(diff.changes, true);
      assert.deepEqual(diff.replaces, [], "no new certificate for it");
      const updated = (await certificates.update!(created.id, stored, off)).outs as CertificateState;
      assert.equal(updated.caCertificatePem, "");
      assert.equal(updated.caFingerprint, state.caFingerprint);
      assert.equal(updated.serial, state.serial);
      const on = (await certificates.update!(created.id, updated, inputs)).outs as CertificateState;
      assert.equal(on.caCertificatePem, "", "turning it back on fetches nothing");
      assert.equal(on.caFingerprint, state.caFingerprint);
      await certificates.delete!(created.id, updated);
    });

    it("shows a certificate revoked behind Pulumi's back on refresh, and the next up replaces it", async () => {
      await registered("cert-02.provider.test");
      const created = await certificates.create(await checked(certificates, { certname: "cert-02.provider.test" }));
      const client = world.client();
      await client.revokeCertificate(created.id);
      await client.close();
      const read = await certificates.read!(created.id, created.outs);
      assert.equal((read.props as CertificateState).state, "revoked");
      const diff = await certificates.diff!(created.id, read.props, {
        certname: "cert-02.provider.test",
        keyType: "ec-p256",
        extensions: {},
      });
      assert.deepEqual(diff.replaces, ["state"]);
      await certificates.delete!(created.id, read.props);
    });
  });

  describe("connection and secrets", () => {
    it("reuses one TLS connection to espm for every operation of the process", async () => {
      const connected: unknown[] = [];
      const onConnect = (message: unknown) => connected.push(message);
      diagnostics.subscribe("undici:client:connected", onConnect);
      try {
        for (const i of [1, 2, 3]) {
          const name = `reuse-0${i}.provider.test`;
          const created = await registrations.create(await checked(registrations, { name, groups: ["base"] }));
          await registrations.read!(created.id, created.outs);
          await registrations.delete!(created.id, created.outs);
        }
      } finally {
        diagnostics.unsubscribe("undici:client:connected", onConnect);
      }
      // Nine operations; at most one new connection (none when an earlier test left one open).
      assert.ok(connected.length <= 1, `${connected.length} connections for nine operations`);
    });

    it("deletes with the stack's current PSK after a rotation, and never repeats a PSK in errors", async () => {
      const created = await registrations.create(
        await checked(registrations, { name: "rotate.provider.test", groups: ["base"] }),
      );
      const cert = await certificates.create(await checked(certificates, { certname: "rotate.provider.test" }));
      const oldPsk = world.setup.psk;
      const newPsk = await world.rotatePsk();
      const stale = await configured(registrationProvider, world, { "espm:psk": oldPsk });
      await assert.rejects(stale.delete!(created.id, created.outs), (err: Error) => {
        assert.match(err.message, /401|unauthori[sz]ed|PSK/i);
        assert.ok(!err.message.includes(oldPsk) && !err.message.includes(newPsk), "no PSK in the message");
        return true;
      });
      // State holds no PSK: the providers read the current one from the stack config.
      assert.ok(!JSON.stringify(created.outs).includes(oldPsk));
      registrations = await configured(registrationProvider, world);
      certificates = await configured(certificateProvider, world);
      await registrations.delete!(created.id, created.outs);
      await certificates.delete!(cert.id, cert.outs);
      const client = world.client();
      assert.equal(await client.getNode(created.id), undefined);
      assert.equal((await client.certificateStatus(cert.id))?.state, "revoked");
      await client.close();
    });

    it("says which config keys are missing", async () => {
      const bare = await configured(registrationProvider, world, {
        "espm:url": undefined,
        "espm:certificate": undefined,
      });
      await assert.rejects(
        bare.create({ name: "x.provider.test", groups: ["base"], classes: {}, parameters: {}, onConflict: "suffix" }),
        /espm:url.*espm:certificate or espm:fingerprint/,
      );
    });

    it("uses a resource's own connection over the stack's", async () => {
      const broken = await configured(registrationProvider, world, { "espm:url": "https://127.0.0.1:1" });
      const connection = { url: world.espm.url, psk: world.setup.psk, certificate: world.setup.certificate };
      const created = await broken.create(
        await checked(broken, { name: "own.provider.test", groups: ["base"], connection }),
      );
      assert.equal(created.id, "own.provider.test");
      await broken.delete!(created.id, created.outs);
    });
  });
});
