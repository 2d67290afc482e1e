/**
 * The provider plugin's schema is made from the contracts the code validates with, and the file
 * beside the package (plugin/schema.json, which the SDK generators read) is what the plugin serves:
 * a contract changed without `npm run schema`, or a schema edited by hand, fails here. And the
 * plugin process itself, over gRPC as the engine starts it: its schema, its version, and its
 * configuration's checks (a bad URL named, a new PSK never replacing anything).
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Empty } from "google-protobuf/google/protobuf/empty_pb";
import { Struct } from "google-protobuf/google/protobuf/struct_pb";
import * as rpc from "@pulumi/pulumi/proto/provider_pb";
import type { PluginInfo } from "@pulumi/pulumi/proto/plugin_pb";
import { ResourceProviderClient } from "@pulumi/pulumi/proto/provider_grpc_pb";
import { packageSchema } from "pulumi-resource-espm/dist/plugin/schema";
import { HIDDEN_INPUTS, RESOURCES } from "pulumi-resource-espm/dist/plugin/resources";
import { ROOT } from "./helpers/espm";

const VERSION = (JSON.parse(readFileSync(join(ROOT, "plugin/package.json"), "utf8")) as { version: string }).version;

function call<Req, Res>(
  client: ResourceProviderClient,
  method: (request: Req, callback: (error: grpc.ServiceError | null, response: Res) => void) => unknown,
  request: Req,
): Promise<Res> {
  return new Promise((resolve, reject) =>
    method.call(client, request, (error, response) => (error ? reject(error) : resolve(response))),
  );
}

describe("the provider plugin's schema", () => {
  const schema = packageSchema(VERSION);

  it("plugin/schema.json is what the plugin serves (npm run schema writes it)", () => {
    const committed: unknown = JSON.parse(readFileSync(join(ROOT, "plugin/schema.json"), "utf8"));
    assert.deepEqual(
      committed,
      JSON.parse(JSON.stringify(schema)),
      "plugin/schema.json is stale: run npm run schema in plugin/",
    );
  });

  it("has every input of each lifecycle's contract, its required inputs, the inputs that replace, and the secret outputs", () => {
    for (const resource of RESOURCES) {
      const spec = schema.resources[resource.token]!;
      const shape = resource.lifecycle.inputSchema().shape as Record<
        string,
        { safeParse(v: unknown): { success: boolean } }
      >;
      const inputs = Object.keys(shape).filter((key) => !(HIDDEN_INPUTS as readonly string[]).includes(key));
      assert.deepEqual(Object.keys(spec.inputProperties).sort(), [...inputs].sort(), resource.token);
      const required = inputs.filter((key) => !shape[key]!.safeParse(undefined).success);
      assert.deepEqual([...spec.requiredInputs].sort(), required.sort(), `${resource.token}: required inputs`);
      const replacing = Object.entries(spec.inputProperties).filter(([, p]) => p.willReplaceOnChanges);
      assert.deepEqual(
        replacing.map(([key]) => key).sort(),
        [...resource.lifecycle.replacing].sort(),
        `${resource.token}: replacing`,
      );
      for (const key of resource.secrets)
        assert.equal(spec.properties[key]?.secret, true, `${resource.token}.${key} secret`);
      for (const [key, property] of Object.entries({ ...spec.inputProperties, ...spec.properties }))
        assert.ok(property.description.length > 0, `${resource.token}.${key} has a description`);
    }
    assert.equal(schema.config.variables.psk?.secret, true);
  });

  it("takes its types from the contract: what the code refuses, the schema's type refuses too", () => {
    const registration = schema.resources["espm:index:NodeRegistration"]!;
    assert.deepEqual(registration.inputProperties.groups, {
      type: "array",
      items: { type: "string" },
      description: registration.inputProperties.groups!.description,
    });
    assert.deepEqual(registration.inputProperties.classes!.additionalProperties, {
      type: "object",
      additionalProperties: { $ref: "pulumi.json#/Any" },
    });
    assert.equal(schema.resources["espm:index:Enrollment"]!.inputProperties.ttlMinutes!.type, "integer");
    assert.match(
      registration.inputProperties.onConflict!.description,
      /One of: "suffix", "fail"\. Default: "suffix"\./,
    );
    assert.deepEqual(Object.keys(schema.functions).sort(), [
      "espm:index:bootstrapUserData",
      "espm:index:getClasses",
      "espm:index:getGroups",
    ]);
    assert.equal(schema.functions["espm:index:bootstrapUserData"]!.outputs.properties.base64!.secret, true);
    assert.ok(schema.types["espm:index:PuppetClass"], "named by the wire contract's own id");
  });
});

describe("the provider plugin process (pulumi-resource-espm)", function () {
  this.timeout(30_000);
  let child: ChildProcess;
  let client: ResourceProviderClient;

  before(async () => {
    const started = process.hrtime.bigint();
    child = spawn(join(ROOT, "plugin/pulumi-resource-espm"), [], { stdio: ["ignore", "pipe", "inherit"] });
    const port = await new Promise<number>((resolve, reject) => {
      let out = "";
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("\n")) resolve(Number(out.split("\n")[0]));
      });
      child.once("exit", (code) => reject(new Error(`the plugin exited ${code}`)));
    });
    console.log(
      `      (the plugin printed its port ${Number(process.hrtime.bigint() - started) / 1e6} ms after it was started)`,
    );
    client = new ResourceProviderClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  after(() => {
    client?.close();
    child?.kill();
  });

  it("serves the schema and its version", async () => {
    const response = await call<rpc.GetSchemaRequest, rpc.GetSchemaResponse>(
      client,
      client.getSchema,
      new rpc.GetSchemaRequest(),
    );
    assert.deepEqual(JSON.parse(response.getSchema()), JSON.parse(JSON.stringify(packageSchema(VERSION))));
    const info = await call<Empty, PluginInfo>(client, client.getPluginInfo, new Empty());
    assert.equal(info.getVersion(), VERSION);
  });

  it("names a bad setting in its configuration, and a new PSK or URL changes the provider without replacing it", async () => {
    const check = await call<rpc.CheckRequest, rpc.CheckResponse>(
      client,
      client.checkConfig,
      new rpc.CheckRequest()
        .setUrn("urn:pulumi:s::p::pulumi:providers:espm::default")
        .setNews(Struct.fromJavaScript({ url: "http://plain.example.test", pks: "x" })),
    );
    assert.deepEqual(
      check.getFailuresList().map((f) => [f.getProperty(), f.getReason()]),
      [
        ["url", "must be an https:// URL"],
        ["(configuration)", "pks: not a setting of espm"],
      ],
    );
    const diff = await call<rpc.DiffRequest, rpc.DiffResponse>(
      client,
      client.diffConfig,
      new rpc.DiffRequest()
        .setUrn("urn:pulumi:s::p::pulumi:providers:espm::default")
        .setOlds(Struct.fromJavaScript({ url: "https://a.example.test:8443", psk: "p".repeat(32) }))
        .setNews(Struct.fromJavaScript({ url: "https://b.example.test:8443", psk: "q".repeat(32) })),
    );
    assert.equal(diff.getChanges(), rpc.DiffResponse.DiffChanges.DIFF_SOME);
    assert.deepEqual(diff.getDiffsList().sort(), ["psk", "url"]);
    assert.deepEqual(diff.getReplacesList(), []);
  });
});
