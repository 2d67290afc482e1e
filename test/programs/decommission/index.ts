/**
 * The PuppetDB suite's Pulumi program (test/puppetdb.test.ts): a node registered with a group, its
 * certificate (which depends on the registration, so destroy revokes it first) and its first-boot
 * script, from the stack's config.
 */
import * as pulumi from "@pulumi/pulumi";
import { bootstrapUserData, PuppetCertificate, PuppetNodeRegistration } from "pulumi-espm";

export async function program() {
  const config = new pulumi.Config("decommission");
  const registration = new PuppetNodeRegistration("node", {
    name: config.require("nodeName"),
    groups: ["files"],
    classes: { espm_file: { path: config.require("managedFile") } },
  });
  const certificate = new PuppetCertificate("node", { certname: registration.nodeName });
  const userData = bootstrapUserData({
    registration,
    certificate,
    master: "localhost",
    masterPort: config.requireNumber("masterPort"),
  });
  return { nodeName: registration.nodeName, serial: certificate.serial, bootstrapScript: userData.script };
}
