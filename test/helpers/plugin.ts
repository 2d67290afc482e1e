/**
 * Pulumi's real dynamic-provider plugin (`@pulumi/pulumi/cmd/dynamic-provider`), started as the
 * engine starts it and driven over gRPC with the engine's own protobuf messages.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Struct } from "google-protobuf/google/protobuf/struct_pb";
import type { Empty } from "google-protobuf/google/protobuf/empty_pb";
import * as rpc from "@pulumi/pulumi/proto/provider_pb";
import { ResourceProviderClient } from "@pulumi/pulumi/proto/provider_grpc_pb";

type Props = Record<string, unknown>;

/** Struct.fromJavaScript refuses undefined values; the engine never sends them either. */
function struct(value: Props): Struct {
  return Struct.fromJavaScript(JSON.parse(JSON.stringify(value)) as Parameters<typeof Struct.fromJavaScript>[0]);
}

export class DynamicProviderPlugin {
  private constructor(
    private readonly child: ChildProcess,
    private readonly client: ResourceProviderClient,
    readonly stderr: () => string,
    readonly stdout: () => string,
  ) {}

  /** Starts the plugin in `projectDir`, where the engine starts it and where its requires resolve. */
  static async start(projectDir: string): Promise<DynamicProviderPlugin> {
    const entry = join(projectDir, "node_modules/@pulumi/pulumi/cmd/dynamic-provider/index.js");
    // The engine address is required but never dialled for these calls.
    const child = spawn(process.execPath, [entry, "127.0.0.1:1"], {
      cwd: projectDir,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, PULUMI_NODEJS_PROJECT: "espm-test" },
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    let out = "";
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`plugin printed no port within 20 s: ${stderr}`)), 20_000);
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        const line = out.split("\n")[0];
        if (out.includes("\n") && line) {
          clearTimeout(timer);
          resolve(Number(line.trim()));
        }
      });
      child.once("exit", (code) => reject(new Error(`plugin exited ${code}: ${stderr}`)));
    });
    const client = new ResourceProviderClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    return new DynamicProviderPlugin(
      child,
      client,
      () => stderr,
      () => out,
    );
  }

  private unary<Req, Res>(
    method: (request: Req, callback: (error: grpc.ServiceError | null, response: Res) => void) => unknown,
    request: Req,
  ): Promise<Res> {
    return new Promise((resolve, reject) =>
      method.call(this.client, request, (error, response) => (error ? reject(error) : resolve(response))),
    );
  }

  async configure(config: Record<string, string>): Promise<void> {
    await this.unary<rpc.ConfigureRequest, rpc.ConfigureResponse>(
      this.client.configure,
      new rpc.ConfigureRequest().setArgs(struct(config)).setAcceptsecrets(false),
    );
  }

  async check(urn: string, olds: Props, news: Props) {
    const res = await this.unary<rpc.CheckRequest, rpc.CheckResponse>(
      this.client.check,
      new rpc.CheckRequest().setUrn(urn).setOlds(struct(olds)).setNews(struct(news)),
    );
    return {
      inputs: res.getInputs()?.toJavaScript() as Props,
      failures: res.getFailuresList().map((f) => ({ property: f.getProperty(), reason: f.getReason() })),
    };
  }

  async diff(urn: string, id: string, olds: Props, news: Props) {
    const res = await this.unary<rpc.DiffRequest, rpc.DiffResponse>(
      this.client.diff,
      new rpc.DiffRequest().setUrn(urn).setId(id).setOlds(struct(olds)).setNews(struct(news)),
    );
    const names: Record<number, string> = {
      [rpc.DiffResponse.DiffChanges.DIFF_NONE]: "none",
      [rpc.DiffResponse.DiffChanges.DIFF_SOME]: "some",
      [rpc.DiffResponse.DiffChanges.DIFF_UNKNOWN]: "unknown",
    };
    const changes = names[res.getChanges()];
    return { changes, replaces: res.getReplacesList(), deleteBeforeReplace: res.getDeletebeforereplace() };
  }

  async create(urn: string, properties: Props) {
    const res = await this.unary<rpc.CreateRequest, rpc.CreateResponse>(
      this.client.create,
      new rpc.CreateRequest().setUrn(urn).setProperties(struct(properties)),
    );
    return { id: res.getId(), properties: res.getProperties()?.toJavaScript() as Props };
  }

  async read(urn: string, id: string, properties: Props, inputs: Props) {
    const res = await this.unary<rpc.ReadRequest, rpc.ReadResponse>(
      this.client.read,
      new rpc.ReadRequest().setUrn(urn).setId(id).setProperties(struct(properties)).setInputs(struct(inputs)),
    );
    return { id: res.getId(), properties: res.getProperties()?.toJavaScript() as Props };
  }

  async update(urn: string, id: string, olds: Props, news: Props) {
    const res = await this.unary<rpc.UpdateRequest, rpc.UpdateResponse>(
      this.client.update,
      new rpc.UpdateRequest().setUrn(urn).setId(id).setOlds(struct(olds)).setNews(struct(news)),
    );
    return { properties: res.getProperties()?.toJavaScript() as Props };
  }

  async delete(urn: string, id: string, properties: Props): Promise<void> {
    await this.unary<rpc.DeleteRequest, Empty>(
      this.client.delete,
      new rpc.DeleteRequest().setUrn(urn).setId(id).setProperties(struct(properties)),
    );
  }

  async stop(): Promise<void> {
    this.client.close();
    if (this.child.exitCode !== null) return;
    const exited = new Promise((done) => this.child.once("exit", done));
    this.child.kill("SIGTERM");
    await exited;
  }
}
