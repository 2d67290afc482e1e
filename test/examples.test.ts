/**
 * The example programs under `pulumi.runtime.setMocks`: what the instance receives, and the order
 * the engine will create and destroy things in. The providers are serialized here as in a real
 * run, so a provider Pulumi cannot serialize fails these tests.
 */
import assert from "node:assert/strict";
import { gunzipSync } from "node:zlib";
import * as pulumi from "@pulumi/pulumi";
import { createSelfSignedCertificate } from "espm-agent/http/self-signed";
import { mockProgram, unwrapSecret, valueOf, type Registered } from "./helpers/mocks";

const REGISTRATION = "pulumi-nodejs:dynamic/espm:PuppetNodeRegistration";
const CERTIFICATE = "pulumi-nodejs:dynamic/espm:PuppetCertificate";
const ENROLLMENT = "pulumi-nodejs:dynamic/espm:PuppetEnrollment";
const IMAGE = "pulumi-nodejs:dynamic/espm:RegisteredImage";
const FIRST_RUN = "pulumi-nodejs:dynamic/espm:PuppetFirstRun";

/** What espm would answer, without espm: the providers' create never runs under mocks. */
function espmState(args: pulumi.runtime.MockResourceArgs): Record<string, unknown> {
  const inputs = args.inputs as Record<string, unknown>;
  if (args.type === REGISTRATION)
    return { ...inputs, id: inputs.name, nodeName: inputs.name, nodeEnvironment: inputs.environment ?? "production" };
  if (args.type === CERTIFICATE) {
    const ca = createSelfSignedCertificate({ commonName: "Puppet CA: mock", altNames: [] });
    const leaf = createSelfSignedCertificate({ commonName: String(inputs.certname), altNames: [] });
    return {
      ...inputs,
      id: inputs.certname,
      certificatePem: leaf.certificatePem,
      privateKeyPem: leaf.privateKeyPem,
      caCertificatePem: ca.certificatePem,
      serial: "1f",
      notAfter: "2031-01-01T00:00:00.000Z",
      state: "signed",
    };
  }
  if (args.type === ENROLLMENT) {
    const ca = createSelfSignedCertificate({ commonName: "Puppet CA: mock", altNames: [] });
    return {
      ...inputs,
      id: inputs.certname,
      token: "0123456789abcdef".repeat(4),
      caCertificatePem: ca.certificatePem,
      expiresAt: "2031-01-01T00:00:00.000Z",
      state: "issued",
    };
  }
  if (args.type === IMAGE)
    return {
      ...inputs,
      id: "ami-0fedcba9876543210",
      imageId: "ami-0fedcba9876543210",
      snapshotIds: ["snap-0123456789abcdef0"],
      region: "us-east-1",
      state: "available",
    };
  if (args.type === "aws:ec2/instance:Instance") return { ...inputs, id: "i-0123456789abcdef0" };
  if (args.type === FIRST_RUN) return { ...inputs, status: "changed", runAt: "2026-11-27T00:00:00.000Z" };
  return { ...inputs };
}

function script(userDataBase64: unknown): string {
  const bytes = Buffer.from(String(unwrapSecret(userDataBase64).value), "base64");
  return (bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes) : bytes).toString("utf8");
}

function one(registered: Registered[], type: string): Registered {
  const found = registered.filter((r) => r.type === type);
  assert.equal(found.length, 1, `one ${type}`);
  return found[0]!;
}

// First: later runs of the same program keep the config keys earlier ones set, and this one sets no keyMode.
describe("examples/ec2-puppet-node under mocks, in the instance key mode (the default)", function () {
  this.timeout(60_000);
  let registered: Registered[];

  before(async () => {
    registered = await mockProgram(
      "ec2-puppet-node",
      { nodeName: "web-02.example.test", ami: "ami-0123456789abcdef0", puppetMaster: "10.0.0.5", role: "web" },
      espmState,
    );
    delete require.cache[require.resolve("../examples/ec2-puppet-node/index")];
    const program = await import("../examples/ec2-puppet-node/index");
    assert.equal(await valueOf(program.instanceId), "i-0123456789abcdef0");
  });

  it("enrolls the node with the extensions its CSR may carry, and makes no key", () => {
    const enrollment = one(registered, ENROLLMENT);
    assert.deepEqual(enrollment.inputs.extensions, { pp_image_name: "ami-0123456789abcdef0", pp_role: "web" });
    assert.equal(registered.filter((r) => r.type === CERTIFICATE).length, 0);
  });

  it("gives the instance the token and the CA bundle, and no key", () => {
    const instance = one(registered, "aws:ec2/instance:Instance");
    assert.equal(unwrapSecret(instance.inputs.userDataBase64).secret, true, "userdata is secret: it holds the token");
    const text = script(instance.inputs.userDataBase64);
    assert.match(text, /'ESPM_ENROLLMENT_TOKEN'\n0123456789abcdef/);
    assert.match(text, /--extension 'pp_image_name=ami-0123456789abcdef0' --extension 'pp_role=web'/);
    assert.match(text, /-----BEGIN CERTIFICATE-----/, "the CA bundle");
    assert.match(text, /^Content-Type: multipart\/mixed/, "a cloud-init multi-part message");
    assert.match(
      text,
      /Content-Type: text\/cloud-config[^]*packages:\n {2}- puppet-agent\n/,
      "cloud-init installs the agent",
    );
    assert.doesNotMatch(text, /PRIVATE KEY/);
    assert.ok(instance.dependencies.includes(one(registered, ENROLLMENT).urn), "enrolled before the instance boots");
  });
});

describe("examples/ec2-puppet-node under mocks, in the provider key mode", function () {
  this.timeout(60_000);
  let registered: Registered[];
  let program: typeof import("../examples/ec2-puppet-node/index");

  before(async () => {
    registered = await mockProgram(
      "ec2-puppet-node",
      {
        nodeName: "web-01.example.test",
        ami: "ami-0123456789abcdef0",
        puppetMaster: "10.0.0.5",
        sshCidr: "192.0.2.0/24",
        groups: ["web"],
        classes: { ntp: { servers: ["pool.ntp.org"] } },
        parameters: { tier: "front" },
        role: "web",
        keyMode: "provider",
      },
      espmState,
    );
    delete require.cache[require.resolve("../examples/ec2-puppet-node/index")];
    program = await import("../examples/ec2-puppet-node/index");
    assert.equal(await valueOf(program.instanceId), "i-0123456789abcdef0");
  });

  it("registers the node with the classification from stack config", () => {
    const registration = one(registered, REGISTRATION);
    assert.equal(registration.inputs.name, "web-01.example.test");
    assert.deepEqual(registration.inputs.groups, ["web"]);
    assert.deepEqual(registration.inputs.classes, { ntp: { servers: ["pool.ntp.org"] } });
    assert.deepEqual(registration.inputs.parameters, { tier: "front" });
    const certificate = one(registered, CERTIFICATE);
    assert.deepEqual(certificate.inputs.extensions, { pp_image_name: "ami-0123456789abcdef0", pp_role: "web" });
  });

  it("gives the instance userdata with the node name, master and certificate, secret and under 16 KB", async () => {
    const instance = one(registered, "aws:ec2/instance:Instance");
    assert.equal(unwrapSecret(instance.inputs.userDataBase64).secret, true, "userdata is secret: it holds the key");
    const text = script(instance.inputs.userDataBase64);
    assert.match(text, /web-01\.example\.test/);
    assert.match(text, /10\.0\.0\.5/);
    assert.match(text, /-----BEGIN CERTIFICATE-----/);
    assert.match(text, /-----BEGIN PRIVATE KEY-----/);
    assert.ok(!text.includes("X509 CRL"), "the CRL is not embedded");
    assert.ok(Buffer.from(String(unwrapSecret(instance.inputs.userDataBase64).value), "base64").length < 16 * 1024);
    assert.ok((await valueOf(program.userDataBytes)) < 16 * 1024);
    assert.equal(await pulumi.isSecret(program.userDataBytes), false, "the size is a plain number");
    assert.equal(instance.inputs.userDataReplaceOnChange, true);
    assert.equal(instance.inputs.ami, "ami-0123456789abcdef0");
  });

  it("lets SSH in only from the given CIDR, and out only to Puppet, packages and DNS", () => {
    const group = one(registered, "aws:ec2/securityGroup:SecurityGroup");
    const rule = (r: Record<string, unknown>) =>
      `${r.protocol} ${r.fromPort}-${r.toPort} ${(r.cidrBlocks as string[]).join(",")}`;
    assert.deepEqual((group.inputs.ingress as Record<string, unknown>[]).map(rule), ["tcp 22-22 192.0.2.0/24"]);
    assert.deepEqual((group.inputs.egress as Record<string, unknown>[]).map(rule), [
      "tcp 8140-8140 10.0.0.5/32",
      "tcp 443-443 0.0.0.0/0",
      "tcp 80-80 0.0.0.0/0",
      "udp 53-53 0.0.0.0/0",
    ]);
  });

  it("orders the certificate before the instance, so it is revoked only after the instance is gone", () => {
    const instance = one(registered, "aws:ec2/instance:Instance");
    const certificate = one(registered, CERTIFICATE);
    const registration = one(registered, REGISTRATION);
    assert.ok(
      instance.dependencies.includes(certificate.urn),
      `instance depends on ${certificate.urn}: ${instance.dependencies}`,
    );
    assert.ok(instance.dependencies.includes(registration.urn));
    assert.ok(certificate.dependencies.includes(registration.urn), "the certname comes from the registration");
  });

  it("waits for the node's first Puppet run after the instance", async () => {
    const firstRun = one(registered, FIRST_RUN);
    const instance = one(registered, "aws:ec2/instance:Instance");
    assert.equal(firstRun.inputs.nodeName, "web-01.example.test");
    assert.equal(firstRun.inputs.instanceId, "i-0123456789abcdef0");
    assert.equal(firstRun.inputs.timeoutMinutes, 30);
    assert.ok(firstRun.dependencies.includes(instance.urn), "ordered after the instance and replaced with it");
    assert.equal(await valueOf(program.firstRunStatus!), "changed");
  });

  it("exports the node name and certificate serial, and stores a small provider without secrets", async () => {
    assert.equal(await valueOf(program.node), "web-01.example.test");
    assert.equal(await valueOf(program.certificateSerial!), "1f");
    for (const type of [REGISTRATION, CERTIFICATE, FIRST_RUN]) {
      const provider = one(registered, type).inputs.__provider;
      assert.equal(typeof provider, "string", "the provider serialized");
      assert.ok(String(provider).length < 8192);
      assert.ok(!/PRIVATE KEY|psk/i.test(String(provider).replace(/espm:psk/g, "")));
    }
  });
});

describe("the main program (index.ts) under mocks", function () {
  this.timeout(60_000);
  let registered: Registered[];
  let program: typeof import("../index");

  before(async () => {
    registered = await mockProgram(
      "espm-demo",
      {
        nodeName: "demo-01.example.test",
        puppetMaster: "puppet.example.test",
        groups: ["base"],
        keyType: "rsa-3072",
        extensions: { pp_role: "demo" },
      },
      espmState,
    );
    program = await import("../index");
  });

  it("registers and signs the node and exports its first-boot script as a secret", async () => {
    assert.equal(one(registered, REGISTRATION).inputs.name, "demo-01.example.test");
    assert.equal(one(registered, CERTIFICATE).inputs.keyType, "rsa-3072");
    assert.equal(await valueOf(program.nodeName), "demo-01.example.test");
    assert.equal(await pulumi.isSecret(program.bootstrapScript), true);
    const text = await valueOf(program.bootstrapScript);
    assert.match(text, /^#!\/bin\/sh/);
    assert.match(text, /demo-01\.example\.test/);
    assert.match(text, /puppet\.example\.test/);
  });
});

describe("examples/register-image under mocks", function () {
  this.timeout(60_000);
  let registered: Registered[];
  let program: typeof import("../examples/register-image/index");

  before(async () => {
    registered = await mockProgram(
      "register-image",
      {
        builderInstanceId: "i-0aaaaaaaaaaaaaaaa",
        imageName: "puppet-base-2026.11",
        nodeName: "img-01.example.test",
        puppetMaster: "puppet.example.test",
      },
      espmState,
    );
    program = await import("../examples/register-image/index");
    assert.equal(await valueOf(program.instanceId), "i-0123456789abcdef0");
  });

  it("images the builder, scoped to project, stack and name for the create token", () => {
    const image = one(registered, IMAGE);
    assert.equal(image.inputs.instanceId, "i-0aaaaaaaaaaaaaaaa");
    assert.equal(image.inputs.name, "puppet-base-2026.11");
    assert.equal(image.inputs.scope, "register-image/test/base");
    assert.deepEqual(image.inputs.tags, { role: "puppet-base" });
  });

  it("launches the node from the registered image with the bootstrap userdata", async () => {
    const node = one(registered, "aws:ec2/instance:Instance");
    const image = one(registered, IMAGE);
    assert.equal(node.inputs.ami, "ami-0fedcba9876543210");
    assert.ok(node.dependencies.includes(image.urn));
    assert.ok(node.dependencies.includes(one(registered, ENROLLMENT).urn));
    assert.match(script(node.inputs.userDataBase64), /img-01\.example\.test/);
    assert.doesNotMatch(script(node.inputs.userDataBase64), /PRIVATE KEY/, "the instance key mode by default");
    assert.deepEqual(one(registered, ENROLLMENT).inputs.extensions, { pp_image_name: "ami-0fedcba9876543210" });
    assert.deepEqual(await valueOf(program.snapshotIds), ["snap-0123456789abcdef0"]);
    assert.ok(one(registered, FIRST_RUN).dependencies.includes(node.urn));
  });
});
