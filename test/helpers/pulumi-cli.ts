/**
 * The Pulumi CLI from the command line, as a user runs it: a project directory, a local file
 * backend, a passphrase secrets provider, its own PULUMI_HOME, the built CLI and Pulumi's YAML
 * language host on PATH, and espm's provider plugin installed the way users install plugins
 * (`pulumi plugin install resource espm VERSION --file TARBALL`).
 */
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { ROOT } from "./espm";
import { PASSPHRASE, pulumiBin } from "./engine";

const execFileP = promisify(execFile);

/** The directory with pulumi-language-yaml (scripts/build-pulumi-yaml.sh), or undefined when none was built. */
export function yamlHostBin(): string | undefined {
  const candidates = [
    process.env.ESPM_PULUMI_YAML_BIN,
    join(process.env.ESPM_PULUMI_CACHE ?? "/var/cache/espm-pulumi", "yaml-v1.25.0", "bin"),
  ];
  return candidates.find((dir): dir is string => !!dir && existsSync(join(dir, "pulumi-language-yaml")));
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class PulumiCli {
  private constructor(
    readonly project: string,
    readonly env: NodeJS.ProcessEnv,
  ) {}

  /**
   * A project directory under `dir` with the Pulumi.yaml of `example` (a directory of examples/) or
   * the text `program`, a stack `stack` selected, and the plugin installed from `pluginTarball`.
   */
  static async create(
    o: { dir: string; stack: string; pluginTarball: string } & ({ example: string } | { program: string }),
  ): Promise<PulumiCli> {
    const bin = pulumiBin();
    const yaml = yamlHostBin();
    if (!bin || !yaml)
      throw new Error(
        "no Pulumi CLI or YAML language host: run scripts/build-pulumi.sh and scripts/build-pulumi-yaml.sh",
      );
    const project = join(o.dir, "project");
    for (const d of [project, join(o.dir, "state"), join(o.dir, "home")]) mkdirSync(d, { recursive: true });
    if ("example" in o) copyFileSync(join(ROOT, "examples", o.example, "Pulumi.yaml"), join(project, "Pulumi.yaml"));
    else writeFileSync(join(project, "Pulumi.yaml"), o.program);
    // Node is what the plugin runs on; nothing of this checkout is on PATH.
    const env: NodeJS.ProcessEnv = {
      PATH: [bin, yaml, dirname(process.execPath), "/usr/sbin", "/usr/bin", "/sbin", "/bin"].join(":"),
      HOME: o.dir,
      PULUMI_HOME: join(o.dir, "home"),
      PULUMI_BACKEND_URL: `file://${join(o.dir, "state")}`,
      PULUMI_CONFIG_PASSPHRASE: PASSPHRASE,
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
      NO_COLOR: "1",
    };
    const cli = new PulumiCli(project, env);
    const version = (JSON.parse(readFileSync(join(ROOT, "plugin/package.json"), "utf8")) as { version: string })
      .version;
    await cli.ok("plugin", "install", "resource", "espm", version, "--file", o.pluginTarball);
    await cli.ok("stack", "init", o.stack);
    return cli;
  }

  /** Runs `pulumi ARGS` in the project; resolves with its exit code and output, whatever the code. */
  async run(...args: string[]): Promise<CliResult> {
    try {
      const { stdout, stderr } = await execFileP(join(pulumiBin()!, "pulumi"), ["--non-interactive", ...args], {
        cwd: this.project,
        env: this.env,
        maxBuffer: 64 * 1024 * 1024,
      });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: typeof e.code === "number" ? e.code : 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
    }
  }

  /** Runs `pulumi ARGS`, and fails with its output when it fails. */
  async ok(...args: string[]): Promise<string> {
    const result = await this.run(...args);
    if (result.code !== 0)
      throw new Error(`pulumi ${args.join(" ")} exited ${result.code}:\n${result.stdout}\n${result.stderr}`);
    return result.stdout;
  }

  /** Sets stack config values; `secret` ones encrypted. */
  async config(values: Record<string, string>, secret = false): Promise<void> {
    for (const [key, value] of Object.entries(values)) {
      // `--` so a value that starts with '-' (a PEM) is not taken for a flag.
      await this.ok("config", "set", ...(secret ? ["--secret"] : []), key, "--", value);
    }
  }

  /** The stack's state file as text, as the file backend keeps it. */
  stateText(projectName: string, stack: string): string {
    return readFileSync(
      join(this.env.PULUMI_BACKEND_URL!.replace("file://", ""), ".pulumi/stacks", projectName, `${stack}.json`),
      "utf8",
    );
  }
}
