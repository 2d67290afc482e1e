/**
 * The demo's Pulumi part, when the Pulumi CLI can be had (scripts/build-pulumi.sh builds it from Go
 * modules): `pulumi up` of a local stack made only of espm's resources (a node registration, its
 * enrollment in the recommended instance key mode, or with --provider-key its certificate, and a
 * registered image on moto's EC2), then the node's first boot from the stack's output in a sandbox
 * directory: in the instance mode the node makes its own key, and Puppet Server signs it through
 * espm's autosign policy the moment the node asks. The @pulumi/aws provider plugin cannot be had here, so there is no
 * EC2 instance; examples/ec2-puppet-node is covered by its mocks tests.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { EC2Client, RunInstancesCommand } from "@aws-sdk/client-ec2";
import * as automation from "@pulumi/pulumi/automation";
import {
  bootstrapUserData,
  PuppetCertificate,
  PuppetEnrollment,
  PuppetNodeRegistration,
  RegisteredImage,
} from "pulumi-espm";
import { motoServerCommand, startMotoServer } from "./moto";

const execFileP = promisify(execFile);
const PASSPHRASE = "espm-demo";
const NODE = "demo-01.espm.demo";
/** The certname pattern the demo's espm may sign (and the demo's Puppet Server allows espm). */
export const DEMO_CERTNAMES = "*.espm.demo";

export interface DemoStackOptions {
  root: string;
  dir: string;
  espmUrl: string;
  psk: string;
  certificate: string;
  masterPort: number;
  /** "instance" (the node makes its own key; the recommended mode) or "provider" (the key in state). */
  keyMode: "instance" | "provider";
  /** Called for each thing the demo stack starts or creates, as soon as it does, so the demo can stop it however it is stopped. */
  onStop(what: string, stop: () => Promise<void>): void;
}

export interface DemoStack {
  summary: string;
}

/** The Pulumi CLI directory from scripts/build-pulumi.sh, or why there is none. */
export function buildPulumi(root: string): { bin?: string; why?: string } {
  try {
    execFileSync("go", ["version"], { stdio: "ignore" });
  } catch {
    return { why: "Go is not installed, so the Pulumi CLI cannot be built" };
  }
  try {
    return {
      bin: execFileSync(join(root, "scripts/build-pulumi.sh"), { stdio: ["ignore", "pipe", "inherit"] })
        .toString()
        .trim(),
    };
  } catch (err) {
    return { why: `building the Pulumi CLI failed: ${(err as Error).message}` };
  }
}

export async function runDemoStack(bin: string, o: DemoStackOptions): Promise<DemoStack> {
  process.env.AWS_ACCESS_KEY_ID ??= "demo";
  process.env.AWS_SECRET_ACCESS_KEY ??= "demo";
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const moto = await startMotoServer(motoServerCommand());
  o.onStop("moto", moto.stop);
  const ec2 = new EC2Client({ region: "us-east-1", endpoint: moto.url });
  const builder = await ec2.send(
    new RunInstancesCommand({ ImageId: "ami-12c6146b", InstanceType: "t3.micro", MinCount: 1, MaxCount: 1 }),
  );
  ec2.destroy();
  const builderId = builder.Instances![0]!.InstanceId!;

  const state = join(o.dir, "pulumi-state");
  // Inside the checkout: the engine starts the dynamic-provider host here, and it needs this node_modules.
  const work = join(o.root, ".tmp/demo-stack");
  rmSync(work, { recursive: true, force: true });
  for (const d of [state, work, join(o.dir, "pulumi-home")]) mkdirSync(d, { recursive: true });
  const program: automation.PulumiFn = async () => {
    const registration = new PuppetNodeRegistration("node", {
      name: NODE,
      groups: ["demo"],
      classes: { espm_demo: { path: join(o.dir, "node/demo.txt") } },
    });
    const extensions = { pp_role: "demo" };
    const keys =
      o.keyMode === "instance"
        ? { enrollment: new PuppetEnrollment("node", { certname: registration.nodeName, extensions }) }
        : { certificate: new PuppetCertificate("node", { certname: registration.nodeName, extensions }) };
    const image = new RegisteredImage("base", {
      instanceId: builderId,
      name: "espm-demo-base",
      tags: { demo: "espm" },
    });
    const userData = bootstrapUserData({ registration, ...keys, master: "localhost", masterPort: o.masterPort });
    return {
      nodeName: registration.nodeName,
      certificateSerial: keys.certificate?.serial ?? "",
      imageId: image.imageId,
      bootstrapScript: userData.script,
    };
  };
  const env = {
    PULUMI_CONFIG_PASSPHRASE: PASSPHRASE,
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PATH: `${bin}:${process.env.PATH ?? ""}`,
  };
  const stack = await automation.LocalWorkspace.createOrSelectStack(
    { stackName: "demo", projectName: "espm-demo-local", program },
    {
      workDir: work,
      pulumiHome: join(o.dir, "pulumi-home"),
      pulumiCommand: await automation.PulumiCommand.get({ root: join(bin, "..") }),
      projectSettings: { name: "espm-demo-local", runtime: "nodejs", backend: { url: `file://${state}` } },
      secretsProvider: "passphrase",
      envVars: env,
    },
  );
  await stack.setAllConfig({
    "espm:url": { value: o.espmUrl },
    "espm:psk": { value: o.psk, secret: true },
    "espm:certificate": { value: o.certificate },
    "aws:region": { value: "us-east-1" },
    "espm:ec2Endpoint": { value: moto.url },
  });

  // Registered before the up starts: an up that a Ctrl-C cuts short may have created resources.
  o.onStop("the demo stack (pulumi destroy)", async () => {
    await stack.destroy({ onOutput: (line) => process.stdout.write(line) });
  });
  console.log("\npulumi up (local file backend, passphrase secrets)...");
  const up = await stack.up({ onOutput: (line) => process.stdout.write(line) });
  const script = String(up.outputs.bootstrapScript!.value);
  const nodeDir = join(o.dir, "node");
  mkdirSync(nodeDir, { recursive: true });
  writeFileSync(join(nodeDir, "userdata.sh"), script, { mode: 0o700 });

  console.log(`\nFirst boot of ${NODE} from the stack's bootstrapScript output, in ${nodeDir}...`);
  const log = join(nodeDir, "bootstrap.log");
  const argv = [
    join(nodeDir, "userdata.sh"),
    "--confdir",
    join(nodeDir, "conf"),
    "--vardir",
    join(nodeDir, "var"),
    "--ssldir",
    join(nodeDir, "ssl"),
    "--logdest",
    log,
  ];
  let exit = 0;
  let output = "";
  const bootStarted = Date.now();
  try {
    output = (await execFileP("sh", argv, { timeout: 180_000 })).stdout;
  } catch (err) {
    exit = (err as { code: number }).code;
    output = (err as { stdout: string }).stdout;
  }
  const bootSeconds = Math.round((Date.now() - bootStarted) / 1000);
  const file = join(nodeDir, "demo.txt");
  // Each time puppet agent found no certificate yet, it logged this and waited.
  const waits = existsSync(log) ? (readFileSync(log, "utf8").match(/Couldn't fetch certificate/g) ?? []).length : 0;
  const keys =
    o.keyMode === "instance"
      ? `  enrollment: the node made its own key and asked for a certificate with its one-time token; Puppet Server signed it through espm's autosign policy ${waits === 0 ? "when the node asked, with no wait" : `after ${waits} waits`}`
      : `  certificate serial ${up.outputs.certificateSerial!.value} signed by the Puppet CA; its private key only in the stack's state, encrypted`;
  const lines = [
    "",
    "Provisioned through `pulumi up`:",
    `  node ${up.outputs.nodeName!.value} registered in espm (group demo, class espm_demo)`,
    keys,
    `  image ${up.outputs.imageId!.value} made from ${builderId} on moto's EC2 and tagged espm:registered=true`,
    `  first boot in ${bootSeconds} s: bootstrap exit ${exit} (${output.trim().split("\n").pop() ?? ""}); ${existsSync(file) ? `${file} says: ${readFileSync(file, "utf8").trim()}` : `no ${file}; see ${log}`}`,
    "",
    "Ctrl-C runs `pulumi destroy` on this stack (node removed, certificate revoked, image deregistered),",
    "then stops moto, espm and Puppet Server. The same by hand, while this demo runs:",
    `  cd ${work} && PATH=${bin}:$PATH PULUMI_CONFIG_PASSPHRASE=${PASSPHRASE} PULUMI_HOME=${join(o.dir, "pulumi-home")} \\`,
    `    AWS_ACCESS_KEY_ID=${process.env.AWS_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY=${process.env.AWS_SECRET_ACCESS_KEY} pulumi destroy --stack demo --yes`,
  ];
  return { summary: lines.join("\n") };
}
