/**
 * One EC2 instance that Puppet configures on first boot, with no autosign-everything and no hand
 * work: espm registers the node with its classification, and then, by `keyMode`:
 *   instance (default): issues a one-time enrollment token; the instance makes its own key and
 *     Puppet Server's autosign policy (espm) signs its CSR for that token. No key leaves the node.
 *   provider: has the Puppet CA sign a key made here; the userdata carries both.
 * The instance's userdata runs Puppet once. `pulumi destroy` terminates the instance, then removes
 * the node and revokes its certificate.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import {
  bootstrapUserData,
  getClasses,
  getGroups,
  PuppetCertificate,
  PuppetEnrollment,
  PuppetFirstRun,
  PuppetNodeRegistration,
} from "pulumi-espm";

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

const config = new pulumi.Config();
const nodeName = config.require("nodeName");
const ami = config.require("ami");
const master = config.require("puppetMaster");
const masterPort = config.getNumber("puppetMasterPort") ?? 8140;
const instanceType = config.get("instanceType") ?? "t3.micro";
const subnetId = config.get("subnetId");
const vpcId = config.get("vpcId");
const sshCidr = config.get("sshCidr");
const role = config.get("role");
const keyMode = config.get("keyMode") ?? "instance";
if (keyMode !== "instance" && keyMode !== "provider")
  throw new Error(`keyMode must be instance (the node makes its own key) or provider, not ${keyMode}`);

// Classification from stack config: `pulumi config set --path 'groups[0]' web`,
// `pulumi config set --path 'classes.ntp.servers[0]' pool.ntp.org`, `pulumi config set --path parameters.tier front`.
const registration = new PuppetNodeRegistration("node", {
  name: nodeName,
  environment: config.get("environment"),
  groups: config.getObject<string[]>("groups") ?? [],
  classes: config.getObject<Record<string, Record<string, Json>>>("classes") ?? {},
  parameters: config.getObject<Record<string, Json>>("parameters") ?? {},
});

const extensions = { pp_image_name: ami, ...(role ? { pp_role: role } : {}) };
const keys =
  keyMode === "instance"
    ? { enrollment: new PuppetEnrollment("node", { certname: registration.nodeName, extensions }) }
    : {
        certificate: new PuppetCertificate("node", { certname: registration.nodeName, extensions, includeCrl: false }),
      };
const issued = keys.enrollment ?? keys.certificate;

// cloud-init installs puppet-agent from the distribution's packages before espm's script runs
// (its cloud-config stage comes before scripts); `pulumi config set installAgent false` for an AMI
// that has it. The userdata becomes a MIME multi-part message, which cloud-init reads.
const cloudConfig =
  config.getBoolean("installAgent") === false ? undefined : "#cloud-config\npackages:\n  - puppet-agent\n";

const userData = bootstrapUserData({ registration, ...keys, master, masterPort, cloudConfig });

// The instance talks to the Puppet master and to package mirrors; SSH in only when asked for.
const masterCidr = /^\d+\.\d+\.\d+\.\d+$/.test(master) ? `${master}/32` : "0.0.0.0/0";
const securityGroup = new aws.ec2.SecurityGroup("node", {
  description: `Puppet node ${nodeName}`,
  vpcId,
  ingress: sshCidr ? [{ description: "SSH", protocol: "tcp", fromPort: 22, toPort: 22, cidrBlocks: [sshCidr] }] : [],
  egress: [
    {
      description: "Puppet Server",
      protocol: "tcp",
      fromPort: masterPort,
      toPort: masterPort,
      cidrBlocks: [masterCidr],
    },
    { description: "HTTPS (packages)", protocol: "tcp", fromPort: 443, toPort: 443, cidrBlocks: ["0.0.0.0/0"] },
    { description: "HTTP (packages)", protocol: "tcp", fromPort: 80, toPort: 80, cidrBlocks: ["0.0.0.0/0"] },
    { description: "DNS", protocol: "udp", fromPort: 53, toPort: 53, cidrBlocks: ["0.0.0.0/0"] },
  ],
});

const instance = new aws.ec2.Instance(
  "node",
  {
    ami,
    instanceType,
    subnetId,
    vpcSecurityGroupIds: [securityGroup.id],
    userDataBase64: userData.base64,
    // A new certificate or token means new userdata, and userdata runs only on first boot: a new instance.
    userDataReplaceOnChange: true,
    metadataOptions: { httpTokens: "required" },
    tags: { Name: nodeName, "espm:node": registration.nodeName },
  },
  // Issued before the instance boots; on destroy the instance goes first, then the certificate is revoked.
  { dependsOn: [registration, issued] },
);

// `pulumi up` ends when the node's first Puppet run has reached the Puppet Server, and fails if that
// run failed (agent exit 1, 4 or 6). `pulumi config set waitForFirstRun false` turns the wait off.
const firstRun =
  config.getBoolean("waitForFirstRun") === false
    ? undefined
    : new PuppetFirstRun("node", {
        nodeName: registration.nodeName,
        instanceId: instance.id,
        timeoutMinutes: config.getNumber("firstRunTimeoutMinutes") ?? 30,
      });

export const node = registration.nodeName;
export const firstRunStatus = firstRun?.status;
export const instanceId = instance.id;
// In the instance key mode the serial is known once the node's CSR is signed (after a refresh).
export const certificateSerial = keys.certificate?.serial ?? keys.enrollment?.serial;
// The size reveals nothing: a plain number, not a secret like the userdata itself.
export const userDataBytes = pulumi.unsecret(userData.bytes);

// What the Puppet server offers, read through espm (`pulumi config set showOffered true`): the groups
// of groups.yaml, and the classes of the node's environment with each parameter's Puppet type.
const showOffered = config.getBoolean("showOffered") ?? false;
export const offeredGroups = showOffered ? getGroups().apply((groups) => groups.map((g) => g.name)) : undefined;
export const offeredClasses = showOffered
  ? getClasses({ environment: config.get("environment") }).apply(({ classes }) =>
      classes.map((c) => `${c.name}(${c.parameters.map((p) => `${p.type ?? "Any"} $${p.name}`).join(", ")})`),
    )
  : undefined;
