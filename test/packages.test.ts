/**
 * The three packages this repository's workspaces make (`npm run pack`): espm-sdk, the wire
 * contract and client both others use; pulumi-espm, the Pulumi library, with only what a Pulumi
 * program runs; espm-agent, the agent for the Puppet server, with no Pulumi. Each manifest is the
 * package's boundary: what it declares is what it gets.
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

function tarball(name: string): string {
  return join(ROOT, `packages/${name}-${VERSION}.tgz`);
}

/** The tarballs an offline install of `name` needs: the package and the espm-sdk it depends on. */
function tarballs(name: string): string[] {
  return [tarball("espm-sdk"), tarball(name)];
}

const VERSION = (JSON.parse(readFileSync(join(ROOT, "sdk/package.json"), "utf8")) as Manifest).version;

describe("the packages (npm run pack)", function () {
  this.timeout(120_000);
  const manifestOf = (dir: string) => JSON.parse(readFileSync(join(ROOT, dir, "package.json"), "utf8")) as Manifest;
  let sdk: { files: string[]; manifest: Manifest };
  let library: { files: string[]; manifest: Manifest };
  let agent: { files: string[]; manifest: Manifest };

  before(async () => {
    // npm test has just built: `npm run pack` is a build and this.
    mkdirSync(join(ROOT, "packages"), { recursive: true });
    await run("npm", ["pack", "--workspaces", "--ignore-scripts", "--pack-destination", "packages"], { cwd: ROOT });
    [sdk, library, agent] = await Promise.all([
      contents(tarball("espm-sdk")),
      contents(tarball("pulumi-espm")),
      contents(tarball("espm-agent")),
    ]);
  });

  it("espm-sdk holds the wire contract and the client, and neither Pulumi nor the agent", () => {
    for (const file of ["dist/index.js", "dist/protocol.js", "dist/client.js", "dist/x509.js"])
      assert.ok(sdk.files.includes(`package/${file}`), file);
    assert.deepEqual(
      sdk.files.filter((f) => !/^package\/(dist\/[\w-]+\.(js|d\.ts|js\.map)|package\.json|README\.md)$/.test(f)),
      [],
      "only the built modules",
    );
    assert.deepEqual(Object.keys(sdk.manifest.dependencies ?? {}).sort(), [
      "@peculiar/asn1-csr",
      "@peculiar/asn1-schema",
      "@peculiar/asn1-x509",
      "undici",
      "zod",
    ]);
  });

  it("pulumi-espm holds the resources, the runtime module old stacks load, and the bootstrap, and no agent", () => {
    for (const file of [
      "dist/provider/index.js",
      "dist/provider/runtime.js",
      "dist/provider/userdata.js",
      "scripts/bootstrap/puppet-bootstrap.sh",
    ]) {
      assert.ok(library.files.includes(`package/${file}`), file);
    }
    assert.deepEqual(
      library.files.filter((f) => /^package\/dist\/(agent|sdk)\//.test(f)),
      [],
    );
    const { manifest } = library;
    assert.equal(manifest.bin, undefined);
    assert.ok(manifest.peerDependencies?.["@pulumi/pulumi"], "@pulumi/pulumi is a peer: a project gets one copy");
    assert.deepEqual(manifest.dependencies, { "espm-sdk": VERSION, zod: sdk.manifest.dependencies?.zod });
    assert.equal(manifest.scripts?.prepack, "tsc -b", "a pack from a fresh clone builds first");
  });

  it("espm-agent holds the agent, its bins and the operator guide, and no Pulumi", () => {
    for (const file of [
      "dist/agent/cli/espm.js",
      "dist/agent/cli/espm-setup.js",
      "dist/agent/reports/worker.js",
      "scripts/operator-guide.sh",
    ]) {
      assert.ok(agent.files.includes(`package/${file}`), file);
    }
    assert.deepEqual(
      agent.files.filter((f) => /^package\/dist\/(provider|sdk)\//.test(f)),
      [],
    );
    const { manifest } = agent;
    assert.deepEqual(manifest.bin, { espm: "dist/agent/cli/espm.js", "espm-setup": "dist/agent/cli/espm-setup.js" });
    assert.ok(manifest.dependencies?.fastify && manifest.dependencies["better-sqlite3"]);
    assert.equal(manifest.dependencies?.["espm-sdk"], VERSION);
    assert.doesNotMatch(JSON.stringify(manifest.dependencies), /pulumi/);
    // One version of each library in the house: what the agent and the harness both name, they name alike.
    const harness = manifestOf(".").devDependencies ?? {};
    for (const [name, range] of Object.entries(manifest.dependencies ?? {})) {
      if (harness[name] !== undefined) assert.equal(range, harness[name], `${name} as the tests have it`);
    }
  });

  it("a project pinning an @pulumi/pulumi outside the peer range gets npm's error, never a second copy", async () => {
    const project = mkdtempSync(join(tmpdir(), "espm-pinned-"));
    writeFileSync(
      join(project, "package.json"),
      JSON.stringify({ name: "pinned", private: true, dependencies: { "@pulumi/pulumi": "3.200.0" } }),
    );
    await assert.rejects(
      run("npm", ["install", "--no-audit", "--no-fund", ...tarballs("pulumi-espm")], { cwd: project }),
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
      await run("npm", ["install", "--no-audit", "--no-fund", ...tarballs("pulumi-espm")], { cwd: project });
      assert.ok(!existsSync(join(project, "node_modules/@aws-sdk/client-ec2")), "npm leaves the optional peer out");
      const checkImage = `
        const { RegisteredImage } = require("pulumi-espm");
        const { imageLifecycle } = require("pulumi-espm/dist/provider/image-lifecycle.js");
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
    for (const name of ["espm-sdk", "espm-agent"]) {
      mkdirSync(join(project, "node_modules", name), { recursive: true });
      await run("tar", ["xzf", tarball(name), "-C", join(project, "node_modules", name), "--strip-components", "1"]);
    }
    const unpacked = join(project, "node_modules/espm-agent");
    const version = await run(process.execPath, [join(unpacked, "dist/agent/cli/espm.js"), "--version"]);
    assert.equal(version.stdout.trim(), VERSION);
    const help = await run(process.execPath, [join(unpacked, "dist/agent/cli/espm-setup.js"), "--help"]);
    assert.match(help.stdout, /--certname-pattern/);
    rmSync(project, { recursive: true, force: true });
  });
});
