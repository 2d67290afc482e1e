/**
 * One registration, for test/rotation-engine.test.ts: what a stack holds when its espm's PSK is
 * rotated between `up` and the next refresh or destroy.
 */
import * as pulumi from "@pulumi/pulumi";
import { PuppetNodeRegistration } from "pulumi-espm";

export async function program() {
  const config = new pulumi.Config("rotation");
  const registration = new PuppetNodeRegistration("node", { name: config.require("nodeName"), groups: ["base"] });
  return { nodeName: registration.nodeName };
}
