/**
 * espm's SDKs for the other Pulumi languages, generated from plugin/schema.json by Pulumi's own
 * code generators (scripts/gen-sdks.sh): Go's and Node.js's compile, and Python's runs the Python
 * program of examples/python-node through Pulumi's Automation API for Python, with an explicit
 * provider, against the real espm and Puppet Server: up, destroy, nothing left.
 */
import assert from "node:assert/strict";
import { copyFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { engineDir, PASSPHRASE, pulumiBin, requirePulumi } from "./helpers/engine";
import { ROOT, run } from "./helpers/espm";
import { pluginTarball } from "./helpers/plugin-package";
import { sharedWorld, type World } from "./helpers/world";

describe("the SDKs generated from the schema", function () {
  this.timeout(600_000);
  let dir: string;
  let sdks: string;

  before(async function () {
    requirePulumi(this, "the generated SDKs");
    dir = engineDir("sdks");
    sdks = (await run("sh", [join(ROOT, "scripts/gen-sdks.sh"), join(dir, "sdks")])).stdout.trim();
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("Go's compiles against Pulumi's Go SDK of the CLI's release", async () => {
    const go = join(sdks, "go");
    writeFileSync(
      join(go, "go.mod"),
      "module espm.invalid/pulumi-espm/sdk/go\n\ngo 1.25\n\nrequire github.com/pulumi/pulumi/sdk/v3 v3.248.0\n",
    );
    // The checksums the CLI's build verified cover the Go SDK's modules.
    copyFileSync(join(ROOT, "scripts/pulumi-cli/go.sum"), join(go, "go.sum"));
    await run("go", ["build", "-mod=mod", "./..."], { cwd: go });
    const source = readFileSync(join(go, "espm/nodeRegistration.go"), "utf8");
    assert.match(source, /func NewNodeRegistration\(ctx \*pulumi\.Context,/);
  });

  it("Node.js's type-checks against @pulumi/pulumi", async () => {
    await run(join(ROOT, "node_modules/.bin/tsc"), ["-p", join(sdks, "nodejs"), "--noEmit"]);
  });

  describe("Python's, running examples/python-node through the Automation API", () => {
    let world: World;
    let python: string;
    let env: NodeJS.ProcessEnv;
    const nodeName = "py-01.python.test";
    const runner = join(ROOT, "test/programs/python/run.py");

    before(async () => {
      world = await sharedWorld();
      python = (await run("sh", [join(ROOT, "scripts/python-pulumi.sh")])).stdout.trim();
      const site = join(dir, "site-packages");
      await run(python, ["-m", "pip", "install", "--quiet", "--no-deps", "--target", site, join(sdks, "python")]);
      env = {
        ...process.env,
        PYTHONPATH: site,
        PATH: `${pulumiBin()}:${process.env.PATH}`,
        ESPM_PULUMI_ROOT: join(pulumiBin()!, ".."),
        PULUMI_HOME: join(dir, "home"),
        PULUMI_BACKEND_URL: `file://${join(dir, "state")}`,
        PULUMI_CONFIG_PASSPHRASE: PASSPHRASE,
        PULUMI_SKIP_UPDATE_CHECK: "true",
      };
      for (const d of ["home", "state", "work"]) await run("mkdir", ["-p", join(dir, d)]);
      const version = (JSON.parse(readFileSync(join(ROOT, "plugin/package.json"), "utf8")) as { version: string })
        .version;
      await run(
        join(pulumiBin()!, "pulumi"),
        ["plugin", "install", "resource", "espm", version, "--file", await pluginTarball()],
        { env },
      );
    });

    async function program(command: "up" | "destroy", input = "") {
      const child = run(python, [runner, command, join(dir, "work")], { env, maxBuffer: 16 * 1024 * 1024 });
      child.child.stdin!.end(input);
      const { stdout } = await child;
      return JSON.parse(stdout.trim().split("\n").pop()!) as {
        result: string;
        changes: Record<string, number>;
        outputs?: Record<string, string>;
      };
    }

    it("up registers and enrolls the node through an explicit provider, with the token only encrypted in state; destroy leaves nothing", async () => {
      const up = await program(
        "up",
        JSON.stringify({
          espmUrl: { value: world.espm.url },
          espmPsk: { value: world.setup.psk, secret: true },
          espmCertificate: { value: world.setup.certificate },
          nodeName: { value: nodeName },
          puppetMaster: { value: "localhost" },
          masterPort: { value: String(world.lab.port) },
        }),
      );
      assert.equal(up.result, "succeeded");
      assert.deepEqual(up.changes, { create: 4 }, "the stack, the provider, the registration and the enrollment");
      assert.equal(up.outputs?.nodeName, nodeName);
      const token = /<<'ESPM_ENROLLMENT_TOKEN'\n(\w+)\n/.exec(up.outputs?.userDataScript ?? "")?.[1] ?? "";
      assert.ok(token.length >= 32, "the userdata carries the token");
      const client = world.client();
      assert.deepEqual((await client.getNode(nodeName))?.groups, ["base"]);
      assert.equal((await client.enrollment(nodeName))?.state, "issued");
      const state = readFileSync(join(dir, "state/.pulumi/stacks/espm-python-node/test.json"), "utf8");
      assert.ok(!state.includes(token) && !state.includes(world.setup.psk), "token and PSK only encrypted");

      const destroy = await program("destroy");
      assert.equal(destroy.result, "succeeded");
      assert.deepEqual(destroy.changes, { delete: 4 });
      assert.equal(await client.getNode(nodeName), undefined);
      assert.equal(await client.enrollment(nodeName), undefined);
      await client.close();
    });
  });
});
