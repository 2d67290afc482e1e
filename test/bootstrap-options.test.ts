/**
 * The bootstrap's options with a real `puppet agent` against the real Puppet Server: hooks before and
 * after the run (and on failure), a template of the user's own, and external facts the first catalog
 * sees. Each node is registered and signed through espm, as the provider key mode does.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { EspmClient } from "espm-sdk/client";
import type { Classification } from "espm-sdk/protocol";
import type { UserDataInput } from "pulumi-espm/userdata";
import { debianRoot, runInRoot } from "../scripts/lab/debian-root";
import { bootAgent, sharedWorld, signedUserdata, type BootResult, type World } from "./helpers/world";

const DOMAIN = "first-boot.test";

describe("the bootstrap's options, with a real agent", function () {
  this.timeout(240_000);
  let world: World;
  let client: EspmClient;

  before(async () => {
    world = await sharedWorld();
    client = world.client();
  });

  after(async () => {
    await client?.close();
  });

  /** A node registered and signed through espm, and its userdata rendered with the given options. */
  async function provision(short: string, classification: Partial<Classification>, options: Partial<UserDataInput>) {
    const name = `${short}.${DOMAIN}`;
    await client.registerNode({ name, groups: ["base"], ...classification });
    return (await signedUserdata(client, name, { masterPort: world.lab.port, userdata: options })).userdata;
  }

  /** A node provisioned with the given options and booted; returns the boot and its folder. */
  async function boot(
    short: string,
    classification: Partial<Classification>,
    options: Partial<UserDataInput>,
    wrap?: (argv: string[]) => string[],
  ): Promise<BootResult & { dir: string }> {
    const userdata = await provision(short, classification, options);
    const dir = join(world.dir, `agent-${short}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "userdata.sh"), userdata.script, { mode: 0o700 });
    return { ...(await bootAgent(dir, join(dir, "userdata.sh"), wrap)), dir };
  }

  const managed = (short: string) => ({
    classes: { espm_file: { path: join(world.dir, `agent-${short}/managed.txt`), content: short } },
  });

  it("runs the before and after hooks in order, with their output in the first-run log", async () => {
    const order = join(world.dir, "hooks-order.txt");
    const result = await boot("hooks-01", managed("hooks-01"), {
      before: `echo "before hook ran for $ESPM_CERTNAME"\necho before >> ${order}`,
      after: `echo "after hook: agent exit $ESPM_AGENT_EXIT"\necho after >> ${order}`,
    });
    assert.equal(result.code, 0, `${result.stdout}\n${result.log}`);
    assert.match(result.stdout, /agent exit 2/);
    assert.equal(readFileSync(order, "utf8"), "before\nafter\n");
    const log = result.log;
    assert.ok(log.indexOf("before hook ran for hooks-01.first-boot.test") >= 0, log);
    assert.ok(log.indexOf("before hook ran") < log.indexOf("Applied catalog"), "before runs before the agent");
    assert.ok(log.indexOf("after hook: agent exit 2") > log.indexOf("Applied catalog"), "after runs after it");
  });

  it("stops the boot with a failing before hook's own exit code, before the agent runs", async () => {
    const result = await boot("hooks-02", managed("hooks-02"), { before: "echo 'no volume to mount' >&2\nexit 7" });
    assert.equal(result.code, 7, result.stdout);
    assert.match(result.log, /no volume to mount/);
    assert.match(result.log, /the before hook failed \(exit 7\)/);
    assert.equal(existsSync(join(result.dir, "managed.txt")), false, "the agent never ran");
  });

  it("runs the on-failure hook with the agent's exit code when a class does not exist, and exits with that code", async () => {
    const result = await boot(
      "hooks-03",
      { classes: { espm_no_such_class: {} } },
      { onFailure: 'echo "on-failure saw agent exit $ESPM_AGENT_EXIT, log $ESPM_LOG"', after: "echo never" },
    );
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.log, new RegExp(`on-failure saw agent exit 1, log ${result.dir}/bootstrap\\.log`));
    assert.doesNotMatch(result.log, /^never$/m, "after does not run on failure");
  });

  it("boots with a template of the user's own (agent exit 2)", async () => {
    const template = `echo "my own first boot of $ESPM_NODE_NAME"
sh "$ESPM_BOOTSTRAP" --certname "$ESPM_NODE_NAME" --master "$ESPM_MASTER" --port "$ESPM_MASTER_PORT" \\
  --ca "$ESPM_CA_FILE" --cert "$ESPM_CERT_FILE" --key "$ESPM_KEY_FILE" "$@"`;
    const result = await boot("template-01", managed("template-01"), { script: template });
    assert.equal(result.code, 0, `${result.stdout}\n${result.log}`);
    assert.match(result.stdout, /my own first boot of template-01\.first-boot\.test/);
    assert.match(result.stdout, /agent exit 2/);
    assert.equal(readFileSync(join(result.dir, "managed.txt"), "utf8"), "template-01\n");
  });

  it("gives the first catalog the external facts (a class prints one)", async () => {
    // Facter reads /etc/facter/facts.d: the boot runs in a mount namespace with a scratch one there.
    mkdirSync("/etc/facter/facts.d", { recursive: true });
    const factsDir = join(world.dir, "facts-01-facts.d");
    mkdirSync(factsDir, { recursive: true });
    const inNamespace = (argv: string[]) => [
      "unshare",
      "--mount",
      "sh",
      "-c",
      'mount --bind "$0" /etc/facter/facts.d && exec "$@"',
      factsDir,
      ...argv,
    ];
    const path = join(world.dir, "agent-facts-01/fact.txt");
    const result = await boot(
      "facts-01",
      { classes: { espm_fact: { path } } },
      { facts: { espm_role: "web's front" } },
      inNamespace,
    );
    assert.equal(result.code, 0, `${result.stdout}\n${result.log}`);
    assert.equal(readFileSync(path, "utf8"), "role from facts: web's front\n");
    assert.equal(readFileSync(join(factsDir, "espm.yaml"), "utf8").includes("espm_role: 'web''s front'"), true);
  });

  it("installs Debian's puppet-agent in a throw-away Debian root that has none (installAgent: distro), then boots (agent exit 2)", async function () {
    this.timeout(600_000);
    const root = await debianRoot("bookworm");
    if (root.builtInSeconds) console.log(`      built the Debian root in ${root.builtInSeconds} s`);
    const userdata = await provision(
      "distro-01",
      { classes: { espm_file: { path: "/root/managed.txt", content: "installed by the bootstrap" } } },
      { installAgent: "distro" },
    );
    const scratch = mkdtempSync(join(world.dir, "root-"));
    try {
      const result = await runInRoot(
        root.dir,
        scratch,
        ["sh", "-c", "command -v puppet && exit 9; sh /root/userdata.sh"],
        {
          files: { "root/userdata.sh": { text: userdata.script, mode: 0o700 } },
        },
      );
      const log = existsSync(join(result.changes, "var/log/puppet-bootstrap.log"))
        ? readFileSync(join(result.changes, "var/log/puppet-bootstrap.log"), "utf8")
        : "";
      assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}\n${log.slice(-3000)}`);
      const installed = /installed puppet-agent from the distribution's packages in (\d+) s/.exec(result.stdout);
      assert.ok(installed, result.stdout);
      console.log(`      apt installed puppet-agent in ${installed[1]} s`);
      assert.match(result.stdout, /agent exit 2/);
      assert.equal(readFileSync(join(result.changes, "root/managed.txt"), "utf8"), "installed by the bootstrap\n");
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
