/**
 * The providers as Pulumi stores them: the code each resource stores (storedProvider), loaded in
 * another process as the dynamic-provider host loads it (from text, in the project's directory),
 * and run against live espm. Once from this checkout, once from an installed copy of the package
 * as users get it from npm. The code earlier versions stored (Pulumi's serialization of the
 * provider object) is run by previous-layout.test.ts.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { storedProvider } from "pulumi-espm/thin-provider";
import { run, ROOT } from "./helpers/espm";
import { sharedMoto, type Moto } from "./helpers/moto";
import { sharedWorld, type World } from "./helpers/world";

const HOST = join(ROOT, "dist/test/helpers/provider-host.js");

/** Runs provider-host.js in `cwd`, with the request on stdin; resolves its parsed stdout. */
function host<T>(cwd: string, args: string[], stdin = ""): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HOST, ...args], { cwd, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    // The result is the last line; progress lines a provider prints come before it.
    child.on("exit", (code) =>
      code === 0
        ? resolve(JSON.parse(stdout.trimEnd().split("\n").at(-1)!) as T)
        : reject(new Error(`provider host exited ${code}: ${stderr}`)),
    );
    child.stdin.end(stdin);
  });
}

function config(world: World): Record<string, string> {
  return { "espm:url": world.espm.url, "espm:psk": world.setup.psk, "espm:certificate": world.setup.certificate };
}

describe("serialized providers in a fresh process", function () {
  this.timeout(180_000);
  let world: World;
  let moto: Moto;

  before(async () => {
    [world, moto] = await Promise.all([sharedWorld(), sharedMoto()]);
  });

  it("runs the stored code's create in one process and delete in another, from this checkout", async () => {
    const text = storedProvider("registration");
    assert.ok(!text.includes(world.setup.psk), "no PSK in the provider text");
    const inputs = { name: "ser-01.serialization.test", groups: ["base"] };
    const [checked, created] = await host<
      [{ inputs: Record<string, unknown> }, { id: string; outs: Record<string, unknown> }]
    >(
      ROOT,
      ["call"],
      JSON.stringify({
        text,
        config: config(world),
        steps: [
          { method: "check", props: inputs },
          {
            method: "create",
            props: { ...inputs, groups: ["base"], classes: {}, parameters: {}, onConflict: "suffix" },
          },
        ],
      }),
    );
    assert.equal(checked.inputs?.onConflict, "suffix", JSON.stringify([checked, created]));
    assert.equal(created.id, "ser-01.serialization.test", JSON.stringify(created));
    const client = world.client();
    assert.equal((await client.getNode(created.id))?.name, created.id);
    const [deleted] = await host<[string]>(
      ROOT,
      ["call"],
      JSON.stringify({
        text,
        config: config(world),
        steps: [{ method: "delete", id: created.id, props: created.outs }],
      }),
    );
    assert.equal(deleted, "deleted");
    assert.equal(await client.getNode(created.id), undefined);

    // espm signs only for its own live registrations: the name is registered again for the certificate.
    await client.registerNode({ name: "ser-01.serialization.test", groups: [] });
    const certText = storedProvider("certificate");
    const [cert] = await host<[{ id: string; outs: { privateKeyPem: string; serial: string } }]>(
      ROOT,
      ["call"],
      JSON.stringify({
        text: certText,
        config: config(world),
        steps: [
          { method: "create", props: { certname: "ser-01.serialization.test", keyType: "rsa-2048", extensions: {} } },
          { method: "delete", id: "ser-01.serialization.test", props: {} },
        ],
      }),
    );
    assert.match(cert.outs.privateKeyPem, /BEGIN PRIVATE KEY/);
    assert.equal((await client.certificateStatus(cert.id))?.state, "revoked");
    await client.deleteNode("ser-01.serialization.test");
    await client.close();
  });

  it("runs the image provider's create and delete in fresh processes against moto", async () => {
    await moto.reset();
    const text = storedProvider("image");
    const props = {
      scope: "espm-test/test/base",
      instanceId: await moto.runInstance(),
      name: "serialized-image",
      noReboot: false,
      tags: {},
      snapshotTags: {},
      timeouts: { create: "5m", delete: "5m" },
      allowBootstrappedSource: false,
    };
    const [created] = await host<[{ id: string; outs: { snapshotIds: string[] } }]>(
      ROOT,
      ["call"],
      JSON.stringify({ text, config: moto.config(), steps: [{ method: "create", props }] }),
    );
    assert.match(created.id, /^ami-/, JSON.stringify(created));
    const [deleted, read] = await host<[string, { id: string }]>(
      ROOT,
      ["call"],
      JSON.stringify({
        text,
        config: moto.config(),
        steps: [
          { method: "delete", id: created.id, props: created.outs },
          { method: "read", id: created.id, props: created.outs },
        ],
      }),
    );
    assert.equal(deleted, "deleted");
    assert.equal(read.id, "");
  });

  describe("from an installed copy of the package", () => {
    let project: string;

    before(async () => {
      // Inside the checkout, so the copy's own dependencies resolve from this node_modules, as npm
      // would have hoisted them; the package itself is what `npm pack` puts in the tarball.
      mkdirSync(join(ROOT, ".tmp"), { recursive: true });
      project = mkdtempSync(join(ROOT, ".tmp/installed-"));
      // A project of its own, as a user's is; without it this checkout's package.json would be the
      // package scope and "pulumi-espm" would resolve to the checkout itself.
      writeFileSync(join(project, "package.json"), JSON.stringify({ name: "espm-installed-test", private: true }));
      // The library and the wire contract it depends on, each from its workspace's tarball.
      for (const [workspace, name] of [
        ["provider", "pulumi-espm"],
        ["sdk", "espm-sdk"],
      ] as const) {
        const installed = join(project, "node_modules", name);
        mkdirSync(installed, { recursive: true });
        // --ignore-scripts: npm test has just built.
        const { stdout } = await run(
          "npm",
          ["pack", "--silent", "--ignore-scripts", "--workspace", workspace, "--pack-destination", project],
          { cwd: ROOT },
        );
        await run("tar", ["xzf", join(project, stdout.trim()), "-C", installed, "--strip-components", "1"]);
      }
    });

    after(() => rmSync(project, { recursive: true, force: true }));

    it("stores one line that loads the stable runtime module by its package path, and runs", async () => {
      const stored = await host<Record<"registration" | "certificate" | "image", string>>(project, [
        "serialize",
        "pulumi-espm/thin-provider",
      ]);
      for (const [name, text] of Object.entries(stored)) {
        assert.equal(
          text,
          `exports.handler = () => require("pulumi-espm/dist/provider/runtime.js").thinProvider("${name}");\n`,
          name,
        );
      }
      // espm signs only for its own live registrations.
      const client = world.client();
      await client.registerNode({ name: "installed.serialization.test", groups: [] });
      const [created, read, deleted] = await host<
        [{ id: string; outs: { certificatePem: string } }, { id: string }, string]
      >(
        project,
        ["call"],
        JSON.stringify({
          text: stored.certificate,
          config: config(world),
          steps: [
            {
              method: "create",
              props: { certname: "installed.serialization.test", keyType: "rsa-2048", extensions: { pp_role: "web" } },
            },
            { method: "read", id: "installed.serialization.test", props: {} },
            { method: "delete", id: "installed.serialization.test", props: {} },
          ],
        }),
      );
      assert.match(created.outs.certificatePem, /BEGIN CERTIFICATE/);
      assert.equal(read.id, "installed.serialization.test");
      assert.equal(deleted, "deleted");
      await client.deleteNode("installed.serialization.test");
      await client.close();
    });
  });
});
