/**
 * Turn a prepared builder instance (Puppet agent installed, never bootstrapped) into a registered
 * AMI, then launch a Puppet node from that image, booted by espm's bootstrap in the key mode
 * `keyMode` names: instance (default; the node makes its own key and enrolls with a one-time token)
 * or provider (a key made here, signed in advance, carried in userdata).
 *
 * The builder must never have run the bootstrap: its image would carry that node's key and
 * certificate into every instance launched from it. RegisteredImage refuses such a source.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import {
  bootstrapUserData,
  PuppetCertificate,
  PuppetEnrollment,
  PuppetFirstRun,
  PuppetNodeRegistration,
  RegisteredImage,
} from "pulumi-espm";

const config = new pulumi.Config();
const nodeName = config.require("nodeName");
const master = config.require("puppetMaster");
const keyMode = config.get("keyMode") ?? "instance";
if (keyMode !== "instance" && keyMode !== "provider")
  throw new Error(`keyMode must be instance (the node makes its own key) or provider, not ${keyMode}`);

const image = new RegisteredImage("base", {
  instanceId: config.require("builderInstanceId"),
  name: config.require("imageName"),
  description: "Puppet agent installed, never bootstrapped; registered by espm",
  tags: { role: "puppet-base" },
  snapshotTags: { role: "puppet-base" },
  timeouts: { create: config.get("imageTimeout") ?? "40m" },
});

const registration = new PuppetNodeRegistration("node", {
  name: nodeName,
  groups: config.getObject<string[]>("groups") ?? ["base"],
});
const extensions = { pp_image_name: image.imageId };
const keys =
  keyMode === "instance"
    ? { enrollment: new PuppetEnrollment("node", { certname: registration.nodeName, extensions }) }
    : {
        certificate: new PuppetCertificate("node", { certname: registration.nodeName, extensions, includeCrl: false }),
      };
const userData = bootstrapUserData({
  registration,
  ...keys,
  // The builder's image has puppet-agent; for one that may not, cloud-init installs it from the
  // distribution's packages before espm's script runs (`pulumi config set installAgent true`).
  cloudConfig: config.getBoolean("installAgent") ? "#cloud-config\npackages:\n  - puppet-agent\n" : undefined,
  master,
  masterPort: config.getNumber("puppetMasterPort"),
});

const node = new aws.ec2.Instance(
  "node",
  {
    ami: image.imageId,
    instanceType: config.get("instanceType") ?? "t3.micro",
    subnetId: config.get("subnetId"),
    userDataBase64: userData.base64,
    userDataReplaceOnChange: true,
    metadataOptions: { httpTokens: "required" },
    tags: { Name: nodeName },
  },
  { dependsOn: [keys.enrollment ?? keys.certificate] },
);

// The node launched from the image is only done when its first Puppet run succeeded.
const firstRun = new PuppetFirstRun("node", {
  nodeName: registration.nodeName,
  instanceId: node.id,
  timeoutMinutes: config.getNumber("firstRunTimeoutMinutes") ?? 30,
});

export const imageId = image.imageId;
export const firstRunStatus = firstRun.status;
export const snapshotIds = image.snapshotIds;
export const instanceId = node.id;
export const nodeNameRegistered = registration.nodeName;
