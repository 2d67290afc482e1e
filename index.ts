/**
 * The main program: a Puppet node registered and signed through espm, with the userdata that boots
 * any machine into Puppet. It needs no cloud account, so it runs anywhere espm does; the
 * examples/ec2-puppet-node project hands the same userdata to an EC2 instance.
 */
import * as pulumi from "@pulumi/pulumi";
import { bootstrapUserData, PuppetCertificate, PuppetNodeRegistration } from "pulumi-espm";

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

const config = new pulumi.Config();
const master = config.require("puppetMaster");

const registration = new PuppetNodeRegistration("node", {
  name: config.require("nodeName"),
  environment: config.get("environment"),
  groups: config.getObject<string[]>("groups") ?? [],
  classes: config.getObject<Record<string, Record<string, Json>>>("classes") ?? {},
  parameters: config.getObject<Record<string, Json>>("parameters") ?? {},
});

const certificate = new PuppetCertificate("node", {
  certname: registration.nodeName,
  keyType: config.get<"rsa-2048" | "rsa-3072" | "rsa-4096">("keyType"),
  extensions: config.getObject<Record<string, string>>("extensions") ?? {},
});

const userData = bootstrapUserData({
  registration,
  certificate,
  master,
  masterPort: config.getNumber("puppetMasterPort"),
});

export const nodeName = registration.nodeName;
export const certificateSerial = certificate.serial;
export const certificateNotAfter = certificate.notAfter;
/** The first-boot script (secret: it holds the private key). `pulumi stack output --show-secrets bootstrapScript > boot.sh`. */
export const bootstrapScript = userData.script;
// The size reveals nothing: a plain number, not a secret like the userdata itself.
export const userDataBytes = pulumi.unsecret(userData.bytes);
