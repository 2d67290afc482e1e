/**
 * The two packages this repository makes (`npm run pack`): pulumi-espm, the Pulumi library, with
 * only what a Pulumi program runs; espm-agent, the agent for the Puppet server, with no Pulumi.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, run } from "./helpers/espm";

interface Manifest {
  name: string;
  version: string;
  bin?: Record<string, string>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  scripts?: Record<string, string>;
}

async function contents(tarball: string): Promise<{ files: string[]; manifest: Manifest }> {
  const { stdout } = await run("tar", ["tzf", tarball]);
  const manifest = JSON.parse((await run("tar", ["xzOf", tarball, "package/package.json"])).stdout) as Manifest;
  return { files: stdout.split("\n").filter(Boolean), manifest };
}

describe("the packages (npm run pack)", function () {
  this.timeout(120_000);
  const root = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as Manifest;
  let library: { files: string[]; manifest: Manifest };
  let agent: { files: string[]; manifest: Manifest };

  before(async () => {
    // npm test has just built: pack what it built.
    await run("sh", [join(ROOT, "scripts/pack.sh")], { env: { ...process.env, ESPM_PACK_NO_BUILD: "1" } });
    library = await contents(join(ROOT, `packages/pulumi-espm-${root.version}.tgz`));
    agent = await contents(join(ROOT, `packages/espm-agent-${root.version}.tgz`));
  });

  it("pulumi-espm holds the resources, the wire contract and the bootstrap, and no agent", () => {
    for (const file of [
      "dist/provider/index.js",
      "dist/provider/runtime.js",
      "dist/sdk/protocol.js",
      "dist/sdk/client.js",
      "scripts/bootstrap/puppet-bootstrap.sh",
    ]) {
      assert.ok(library.files.includes(`package/${file}`), file);
    }
    assert.deepEqual(
      library.files.filter((f) => f.startsWith("package/dist/agent/")),
      [],
    );
    const { manifest } = library;
    assert.equal(manifest.bin, undefined);
    assert.ok(manifest.peerDependencies?.["@pulumi/pulumi"], "@pulumi/pulumi is a peer: a project gets one copy");
    for (const agentOnly of ["@pulumi/pulumi", "fastify", "better-sqlite3", "pg", "ini", "yaml"])
      assert.equal(manifest.dependencies?.[agentOnly], undefined, agentOnly);
    assert.equal(manifest.scripts?.prepack, "npm run build", "a pack from a fresh clone builds first");
  });

  it("espm-agent holds the agent, its bins and the operator guide, and no Pulumi", () => {
    for (const file of [
      "dist/agent/cli/espm.js",
      "dist/agent/cli/espm-setup.js",
      "dist/agent/reports/worker.js",
      "dist/sdk/protocol.js",
      "scripts/operator-guide.sh",
    ]) {
      assert.ok(agent.files.includes(`package/${file}`), file);
    }
    assert.deepEqual(
      agent.files.filter((f) => f.startsWith("package/dist/provider/")),
      [],
    );
    const { manifest } = agent;
    assert.deepEqual(manifest.bin, { espm: "dist/agent/cli/espm.js", "espm-setup": "dist/agent/cli/espm-setup.js" });
    assert.ok(manifest.dependencies?.fastify && manifest.dependencies["better-sqlite3"]);
    assert.doesNotMatch(JSON.stringify(manifest.dependencies), /pulumi/);
    // One source of versions: the agent's dependencies are the ones this checkout builds and tests with.
    const tested = { ...root.dependencies, ...root.devDependencies };
    for (const [name, range] of Object.entries(manifest.dependencies ?? {})) {
      if (name === "light-my-request") continue; // pinned below fastify's range: see agent/package.json in the README
      assert.equal(range, tested[name], `${name} as the checkout has it`);
    }
  });

  it("a project pinning an @pulumi/pulumi outside the peer range gets npm's error, never a second copy", async () => {
    const project = mkdtempSync(join(tmpdir(), "espm-pinned-"));
    writeFileSync(
      join(project, "package.json"),
      JSON.stringify({ name: "pinned", private: true, dependencies: { "@pulumi/pulumi": "3.200.0" } }),
    );
    const tarball = join(ROOT, `packages/pulumi-espm-${root.version}.tgz`);
    await assert.rejects(
      run("npm", ["install", "--no-audit", "--no-fund", tarball], { cwd: project }),
      (err: { stderr: string }) => {
        assert.match(err.stderr, /ERESOLVE/);
        assert.match(err.stderr, /peer @pulumi\/pulumi@"\^3\.248\.0" from pulumi-espm/);
        return true;
      },
    );
    assert.ok(!existsSync(join(project, "node_modules/pulumi-espm")), "nothing was installed");
    rmSync(project, { recursive: true, force: true });
  });

  it("pulumi-espm installs without the AWS SDK, and RegisteredImage's check names the command that adds it", async () => {
    assert.deepEqual(library.manifest.peerDependenciesMeta, { "@aws-sdk/client-ec2": { optional: true } });
    assert.equal(library.manifest.dependencies?.["@aws-sdk/client-ec2"], undefined);
    assert.equal(library.manifest.dependencies?.["node-forge"], undefined, "node-forge is the agent's only");
    const project = mkdtempSync(join(tmpdir(), "espm-no-ec2-"));
    try {
      writeFileSync(join(project, "package.json"), JSON.stringify({ name: "no-ec2", private: true }));
      const tarball = join(ROOT, `packages/pulumi-espm-${root.version}.tgz`);
      await run("npm", ["install", "--no-audit", "--no-fund", tarball], { cwd: project });
      assert.ok(!existsSync(join(project, "node_modules/@aws-sdk/client-ec2")), "npm leaves the optional peer out");
      const checkImage = `
        const { RegisteredImage } = require("pulumi-espm");
        const { imageLifecycle } = require("pulumi-espm/dist/provider/image.js");
        imageLifecycle
          .check({}, { instanceId: "i-0123456789abcdef0", name: "base", scope: "p/s/base" }, { aws: { region: "us-east-1" } })
          .then((r) => console.log(typeof RegisteredImage, JSON.stringify(r.failures ?? [])));`;
      const without = await run(process.execPath, ["-e", checkImage], { cwd: project });
      assert.match(
        without.stdout,
        /^function .*RegisteredImage needs the AWS SDK for EC2.*npm install @aws-sdk\/client-ec2/,
      );
      await run("npm", ["install", "--no-audit", "--no-fund", "@aws-sdk/client-ec2"], { cwd: project });
      assert.equal((await run(process.execPath, ["-e", checkImage], { cwd: project })).stdout.trim(), "function []");
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
  });

  it("espm-agent's bins run from the unpacked package", async () => {
    mkdirSync(join(ROOT, ".tmp"), { recursive: true });
    // Under the checkout, so that its dependencies resolve from this node_modules as npm would hoist them.
    const project = mkdtempSync(join(ROOT, ".tmp/agent-"));
    const unpacked = join(project, "node_modules/espm-agent");
    mkdirSync(unpacked, { recursive: true });
    await run("tar", [
      "xzf",
      join(ROOT, `packages/espm-agent-${root.version}.tgz`),
      "-C",
      unpacked,
      "--strip-components",
      "1",
    ]);
    const version = await run(process.execPath, [join(unpacked, "dist/agent/cli/espm.js"), "--version"]);
    assert.equal(version.stdout.trim(), root.version);
    const help = await run(process.execPath, [join(unpacked, "dist/agent/cli/espm-setup.js"), "--help"]);
    assert.match(help.stdout, /--certname-pattern/);
    rmSync(project, { recursive: true, force: true });
  });
});
