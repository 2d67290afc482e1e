/**
 * The engine tests' Pulumi program (test/engine.test.ts), as a program of its own: a registration,
 * its certificate, a registered image and the node's first-boot script, all from the stack's config.
 * The tests change the config between `up`s, as a user would.
 */
import * as pulumi from "@pulumi/pulumi";
import { bootstrapUserData, PuppetCertificate, PuppetNodeRegistration, RegisteredImage } from "pulumi-espm";

export async function program() {
  const config = new pulumi.Config("engine");
  const registration = new PuppetNodeRegistration("node", {
    name: config.require("nodeName"),
    groups: ["base"],
    classes: { espm_file: { path: config.require("managedFile"), content: config.require("content") } },
  });
  const certificate = new PuppetCertificate("node", {
    certname: registration.nodeName,
    extensions: { pp_role: "engine" },
  });
  const image = new RegisteredImage("base", {
    instanceId: config.require("builderInstanceId"),
    name: "engine-base",
    tags: { team: "espm" },
  });
  const userData = bootstrapUserData({
    registration,
    certificate,
    master: "localhost",
    masterPort: config.requireNumber("masterPort"),
  });
  return {
    nodeName: registration.nodeName,
    serial: certificate.serial,
    imageId: image.imageId,
    snapshotIds: image.snapshotIds,
    bootstrapScript: userData.script,
  };
}
