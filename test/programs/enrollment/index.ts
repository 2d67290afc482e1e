/**
 * The instance key mode as a Pulumi program (test/enrollment-engine.test.ts): a registration, its
 * enrollment, the first-boot userdata, and PuppetFirstRun waiting for the node's first run. A file
 * stands in for the EC2 instance: the program writes the userdata there once the engine has it, as
 * EC2 would hand it to a launching instance, and the test boots it.
 */
import { writeFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { bootstrapUserData, PuppetEnrollment, PuppetFirstRun, PuppetNodeRegistration } from "pulumi-espm";

export async function program() {
  const config = new pulumi.Config("enroll");
  const registration = new PuppetNodeRegistration("node", {
    name: config.require("nodeName"),
    groups: ["base"],
    classes: { espm_file: { path: config.require("managedFile"), content: "enrolled by pulumi up" } },
  });
  const enrollment = new PuppetEnrollment("node", {
    certname: registration.nodeName,
    extensions: { pp_role: "engine" },
  });
  const userData = bootstrapUserData({
    registration,
    enrollment,
    master: "localhost",
    masterPort: config.requireNumber("masterPort"),
    maxWaitForCertSeconds: 120,
  });
  const instanceId = userData.apply((rendered) => {
    writeFileSync(config.require("userdataFile"), rendered.script, { mode: 0o600 });
    return "i-0enrollment0test";
  });
  const firstRun = new PuppetFirstRun("node", {
    nodeName: registration.nodeName,
    instanceId,
    timeoutMinutes: 4,
  });
  return {
    nodeName: registration.nodeName,
    firstRun: firstRun.status,
    bootstrapScript: userData.script,
  };
}
