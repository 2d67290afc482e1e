/**
 * The whole first boot through the Pulumi side: registration and certificate made by the providers,
 * userdata from bootstrapUserData, the bootstrap run in a sandbox against the local Puppet Server;
 * then delete through the providers, and the agent is refused.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { bootstrapUserData, certificateProvider, registrationProvider } from "pulumi-espm";
import type { CertificateState } from "pulumi-espm/certificate";
import type { RegistrationState } from "pulumi-espm/registration";
import { valueOf } from "./helpers/mocks";
import { configuredProvider } from "./helpers/providers";
import { sharedWorld, type World } from "./helpers/world";

describe("first boot through the providers", function () {
  this.timeout(240_000);
  let world: World;

  before(async () => {
    world = await sharedWorld();
  });

  it("boots a node the providers made (agent exit 2), and after delete the agent is refused", async () => {
    const registrations = await configuredProvider(registrationProvider, world.stackConfig());
    const certificates = await configuredProvider(certificateProvider, world.stackConfig());
    const managed = join(world.dir, "agent-pboot/managed.txt");

    const regInputs = await registrations.check!(
      {},
      {
        name: "pboot-01.first-boot.test",
        groups: ["base"],
        classes: { espm_file: { path: managed, content: "made by the providers" } },
      },
    );
    const registration = await registrations.create(regInputs.inputs);
    const reg = registration.outs as RegistrationState;
    const certInputs = await certificates.check!({}, { certname: reg.nodeName, extensions: { pp_role: "web" } });
    const certificate = await certificates.create(certInputs.inputs);
    const cert = certificate.outs as CertificateState;

    const userData = await valueOf(
      bootstrapUserData({ registration: reg, certificate: cert, master: "localhost", masterPort: world.lab.port }),
    );
    const first = await world.boot("pboot", userData.script);
    assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}\n${first.log}`);
    assert.match(first.stdout, /agent exit 2/);
    assert.equal(readFileSync(managed, "utf8"), "made by the providers\n");

    await certificates.delete!(certificate.id, cert);
    await registrations.delete!(registration.id, reg);
    const refused = await world.boot("pboot", userData.script);
    assert.equal(refused.code, 1, refused.stdout);
    assert.match(refused.log, /certificate unknown|certificate revoked|SSL/i);
  });
});
