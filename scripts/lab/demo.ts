/**
 * The main job: a local Puppet Server with a demo module, and espm configured against it with its
 * embedded store, in the foreground. Where the Pulumi CLI can be had (built from Go modules by
 * scripts/build-pulumi.sh), it then runs `pulumi up` on a local demo stack of espm's resources
 * against them and moto's EC2, and boots the node from the stack's output (see demo-stack.ts).
 * Otherwise it prints the stack config that points a Pulumi stack at espm. Ctrl-C (or SIGTERM)
 * destroys the demo stack and stops everything, leaving nothing running.
 *
 *   sudo npm run demo [-- --dir /var/tmp/espm-demo --port 8443 --puppet-port 8140 --no-pulumi]
 */
import { execFileSync, spawn } from "node:child_process";
import { createWriteStream, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { buildPulumi, runDemoStack } from "./demo-stack";
import { LAB_CERTNAME_PATTERNS, startPuppetServer } from "./puppetserver";

const ROOT = resolve(__dirname, "../../..");

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dir: { type: "string", default: "/var/tmp/espm-demo" },
      port: { type: "string", default: "8443" },
      "puppet-port": { type: "string", default: "8140" },
      "no-pulumi": { type: "boolean", default: false },
    },
  });
  if (process.getuid?.() !== 0) throw new Error("run the demo as root (it installs Debian packages and runs Puppet Server)");
  execFileSync(join(ROOT, "scripts/install-deps.sh"), { stdio: "inherit" });

  const dir = resolve(values.dir);
  rmSync(dir, { recursive: true, force: true });
  const configDir = join(dir, "espm/etc");
  mkdirSync(join(configDir, "certs"), { recursive: true });
  const ini = join(configDir, "espm.ini");
  const espmBin = join(ROOT, "dist/agent/cli/espm.js");

  console.log(`Starting Puppet Server in ${dir}/puppetserver (about 30 s)...`);
  const lab = await startPuppetServer({
    dir: join(dir, "puppetserver"),
    port: Number(values["puppet-port"]),
    enc: `${process.execPath} ${espmBin} enc -c ${ini}`,
    modules: [join(ROOT, "scripts/lab/modules/espm_demo")],
  });
  const stopAll: Array<() => Promise<void>> = [lab.stop];
  try {
    const setup = execFileSync(process.execPath, [
      join(ROOT, "dist/agent/cli/espm-setup.js"),
      "-d", configDir, "-p", values.port, "--host", "127.0.0.1", "--host", "localhost", "--listen", "127.0.0.1",
      "--puppetserver-url", lab.url, "--puppetserver-ca", lab.caBundle, "--puppetserver-cert", lab.espmCert, "--puppetserver-key", lab.espmKey, "--puppetserver-reportdir", lab.reportDir,
      ...LAB_CERTNAME_PATTERNS.flatMap((p) => ["--certname-pattern", p]),
    ]).toString();
    writeFileSync(join(configDir, "groups.yaml"), "groups:\n  demo:\n    description: Nodes of the espm demo\n    classes:\n      espm_demo:\n        message: Configured by Puppet through espm\n    parameters:\n      role: demo\n");

    const espm = spawn(process.execPath, [espmBin, "-c", ini], { stdio: ["ignore", "pipe", "inherit"] });
    stopAll.unshift(() => new Promise((done) => (espm.exitCode !== null ? done() : (espm.once("exit", () => done()), espm.kill("SIGTERM")))));
    await new Promise<void>((ready, failed) => {
      espm.stdout!.on("data", (d: Buffer) => d.toString().includes('"espm ready"') && ready());
      espm.once("exit", (code) => failed(new Error(`espm exited with ${code}`)));
    });
    espm.stdout!.pipe(createWriteStream(join(dir, "espm.log")));

    console.log(`\nPuppet Server: ${lab.url} (CA and config in ${lab.dir}; puppet.conf ${lab.confFile})`);
    console.log(`espm: https://127.0.0.1:${values.port} (config ${ini}, log ${join(dir, "espm.log")})\n`);
    console.log(setup);

    const pulumi = values["no-pulumi"] ? { why: "--no-pulumi" } : buildPulumi(ROOT);
    if (pulumi.bin) {
      const demo = await runDemoStack(pulumi.bin, {
        root: ROOT,
        dir,
        espmUrl: `https://127.0.0.1:${values.port}`,
        psk: readFileSync(join(configDir, "psk"), "utf8").trim(),
        certificate: readFileSync(join(configDir, "certs/espm.crt"), "utf8"),
        masterPort: lab.port,
      });
      stopAll.unshift(demo.destroy);
      console.log(demo.summary);
    } else {
      console.log(`No pulumi up in this demo: ${pulumi.why}. Point your own stack at espm with the lines above.`);
    }
    console.log("\nPress Ctrl-C to stop.");
    await new Promise<void>((stop) => {
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
  } finally {
    for (const stop of stopAll) {
      try {
        await stop();
      } catch (err) {
        console.error(`demo: while stopping: ${(err as Error).message}`);
      }
    }
    console.log("Stopped everything the demo started.");
  }
}

main().catch((err: Error) => {
  console.error(`demo: ${err.message}`);
  process.exit(1);
});
