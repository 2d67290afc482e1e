/**
 * espm's provider plugin: Pulumi's ResourceProvider gRPC service over pulumi-espm's lifecycles.
 *
 * Served here rather than through `@pulumi/pulumi`'s `provider.main`, whose service ignores the
 * configuration the engine sends (`configure` answers without reading it), has no CheckConfig or
 * DiffConfig (so a new PSK or URL could not be told from a new provider), and answers a diff
 * without saying which properties changed (so `pulumi preview --diff` could not say why a
 * resource is replaced). Everything else is the lifecycles' own: the same check, diff, create,
 * read, update and delete the dynamic resources run.
 */
import * as grpc from "@grpc/grpc-js";
import { Empty } from "google-protobuf/google/protobuf/empty_pb";
import { Any } from "google-protobuf/google/protobuf/any_pb";
import * as plugin from "@pulumi/pulumi/proto/plugin_pb";
import * as proto from "@pulumi/pulumi/proto/provider_pb";
import * as services from "@pulumi/pulumi/proto/provider_grpc_pb";
import * as status from "@pulumi/pulumi/proto/status_pb";
import { changedProperties, ResourceInitError, UNKNOWN } from "pulumi-espm/lifecycle";
import type { StackSettings } from "pulumi-espm/settings";
import { configFailures, configFrom, settingsFrom } from "./config";
import { functionKind } from "./functions";
import { inputKeys, resourceKind, urnParts, type ResourceKind } from "./resources";
import { packageSchema } from "./schema";
import { fromStruct, secretKeys, toStruct, type Properties } from "./values";

type Handler<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => void;

/** A unary handler from an async function; an error becomes the gRPC error the engine shows. */
function unary<Req, Res>(run: (request: Req) => Promise<Res>): Handler<Req, Res> {
  return (call, callback) => {
    run(call.request).then(
      (response) => callback(null, response),
      (error: unknown) => callback(grpcError(error)),
    );
  };
}

/**
 * The error as the engine takes it. A ResourceInitError (espm acted but the resource did not
 * finish) carries the id and properties in ErrorResourceInitFailed, so the engine records the
 * resource in state instead of forgetting what exists.
 */
function grpcError(error: unknown): Partial<grpc.StatusObject> {
  const message = error instanceof Error ? error.message : String(error);
  const metadata = new grpc.Metadata();
  if (error instanceof ResourceInitError) {
    const detail = new proto.ErrorResourceInitFailed();
    detail.setId(error.id);
    detail.setProperties(toStruct(error.properties));
    detail.setReasonsList(error.reasons);
    const any = new Any();
    any.pack(detail.serializeBinary(), "pulumirpc.ErrorResourceInitFailed");
    const body = new status.Status();
    body.setCode(grpc.status.UNKNOWN);
    body.setMessage(message);
    body.addDetails(any);
    metadata.add("grpc-status-details-bin", Buffer.from(body.serializeBinary()));
  }
  return { code: grpc.status.UNKNOWN, details: message, metadata };
}

export class EspmProvider {
  private settings: StackSettings = settingsFrom({});

  constructor(readonly version: string) {}

  /** The service's handlers; the ones not here answer UNIMPLEMENTED, which the engine expects of them. */
  handlers(): grpc.UntypedServiceImplementation {
    return {
      getPluginInfo: unary(async () => new plugin.PluginInfo().setVersion(this.version)),
      getSchema: unary(async (request: proto.GetSchemaRequest) => {
        if (request.getVersion() !== 0) throw new Error(`unsupported schema version ${request.getVersion()}`);
        return new proto.GetSchemaResponse().setSchema(JSON.stringify(packageSchema(this.version)));
      }),
      checkConfig: unary(async (request: proto.CheckRequest) => this.checkConfig(request)),
      diffConfig: unary(async (request: proto.DiffRequest) => this.diffConfig(request)),
      configure: unary(async (request: proto.ConfigureRequest) => this.configure(request)),
      check: unary(async (request: proto.CheckRequest) => this.check(request)),
      diff: unary(async (request: proto.DiffRequest) => this.diff(request)),
      create: unary(async (request: proto.CreateRequest) => this.create(request)),
      read: unary(async (request: proto.ReadRequest) => this.read(request)),
      update: unary(async (request: proto.UpdateRequest) => this.update(request)),
      delete: unary(async (request: proto.DeleteRequest) => this.delete(request)),
      invoke: unary(async (request: proto.InvokeRequest) => this.invoke(request)),
      cancel: unary(async () => new Empty()),
      attach: unary(async () => new Empty()),
    };
  }

  private checkConfig(request: proto.CheckRequest): proto.CheckResponse {
    // The inputs go back as they came (the engine's own keys among them), checked as espm's.
    const news = fromStruct(request.getNews());
    const response = new proto.CheckResponse().setInputs(toStruct(news, secretKeys(fromStructRaw(request.getNews()))));
    return response.setFailuresList(configFailures(news).map(failure));
  }

  /** A new URL, PSK or pin changes the provider in place: it never replaces a resource. */
  private diffConfig(request: proto.DiffRequest): proto.DiffResponse {
    const olds = fromStruct(request.getOldInputs() ?? request.getOlds());
    const news = fromStruct(request.getNews());
    const changed = changedProperties(olds, news, [...new Set([...Object.keys(olds), ...Object.keys(news)])]);
    return new proto.DiffResponse()
      .setChanges(changed.length ? proto.DiffResponse.DiffChanges.DIFF_SOME : proto.DiffResponse.DiffChanges.DIFF_NONE)
      .setDiffsList(changed);
  }

  private configure(request: proto.ConfigureRequest): proto.ConfigureResponse {
    this.settings = settingsFrom(
      configFrom(
        fromStruct(request.getArgs()),
        request
          .getVariablesMap()
          .toObject()
          .reduce((map, [key, value]) => map.set(key, value), new Map<string, string>()),
      ),
    );
    // Secrets arrive wrapped and go back wrapped (token, key, userdata): the engine keeps them encrypted.
    // With previews, the engine asks create and update what they would answer (see previewOutputs).
    return new proto.ConfigureResponse().setAcceptsecrets(true).setSupportspreview(true);
  }

  private async check(request: proto.CheckRequest): Promise<proto.CheckResponse> {
    const resource = resourceKind(urnParts(request.getUrn()).type);
    const raw = fromStructRaw(request.getNews());
    const news = withScope(resource, request.getUrn(), fromStruct(request.getNews()));
    const result = await resource.lifecycle.check(fromStruct(request.getOlds()), news, this.settings);
    const response = new proto.CheckResponse();
    if (result.inputs) response.setInputs(toStruct(result.inputs as Properties, secretKeys(raw)));
    return response.setFailuresList((result.failures ?? []).map(failure));
  }

  private async diff(request: proto.DiffRequest): Promise<proto.DiffResponse> {
    const resource = resourceKind(urnParts(request.getUrn()).type);
    const olds = fromStruct(request.getOlds());
    const news = fromStruct(request.getNews());
    const result = await resource.lifecycle.diff(request.getId(), olds, news);
    const replaces = result.replaces ?? [];
    const changed = [...new Set([...changedProperties(olds, news, inputKeys(resource)), ...replaces])];
    const response = new proto.DiffResponse()
      .setChanges(result.changes ? proto.DiffResponse.DiffChanges.DIFF_SOME : proto.DiffResponse.DiffChanges.DIFF_NONE)
      .setReplacesList(replaces)
      .setDeletebeforereplace(result.deleteBeforeReplace ?? false)
      .setDiffsList(changed)
      .setHasdetaileddiff(true);
    if (result.changes) {
      const detailed = response.getDetaileddiffMap();
      for (const key of changed) {
        const kind = replaces.includes(key) ? proto.PropertyDiff.Kind.UPDATE_REPLACE : proto.PropertyDiff.Kind.UPDATE;
        detailed.set(key, new proto.PropertyDiff().setKind(kind).setInputdiff(key in news));
      }
    }
    return response;
  }

  private async create(request: proto.CreateRequest): Promise<proto.CreateResponse> {
    const resource = resourceKind(urnParts(request.getUrn()).type);
    const raw = fromStructRaw(request.getProperties());
    if (request.getPreview())
      return new proto.CreateResponse().setProperties(
        toStruct(previewOutputs(resource, fromStruct(request.getProperties()))),
      );
    const result = await resource.lifecycle.create(fromStruct(request.getProperties()), this.settings);
    return new proto.CreateResponse()
      .setId(result.id)
      .setProperties(toStruct(result.outs as Properties, [...resource.secrets, ...secretKeys(raw)]));
  }

  /**
   * Also `pulumi import`: the engine reads by id with no properties, and takes the inputs answered
   * here as the resource's inputs.
   */
  private async read(request: proto.ReadRequest): Promise<proto.ReadResponse> {
    const resource = resourceKind(urnParts(request.getUrn()).type);
    const raw = fromStructRaw(request.getProperties());
    const state = withScope(resource, request.getUrn(), fromStruct(request.getProperties()));
    const result = await resource.lifecycle.read(request.getId(), state, this.settings);
    const response = new proto.ReadResponse().setId(result.id ?? "");
    if (!result.id) return response;
    const props = (result.props ?? {}) as Properties;
    const secrets = [...resource.secrets, ...secretKeys(raw)];
    const inputs = Object.fromEntries(
      inputKeys(resource)
        .filter((key) => key in props)
        .map((key) => [key, props[key]]),
    );
    return response.setProperties(toStruct(props, secrets)).setInputs(toStruct(inputs, secrets));
  }

  private async update(request: proto.UpdateRequest): Promise<proto.UpdateResponse> {
    const resource = resourceKind(urnParts(request.getUrn()).type);
    const raw = fromStructRaw(request.getNews());
    if (request.getPreview()) {
      const olds = fromStruct(request.getOlds());
      const outputs = previewOutputs(resource, fromStruct(request.getNews()), olds);
      return new proto.UpdateResponse().setProperties(toStruct(outputs, [...resource.secrets, ...secretKeys(raw)]));
    }
    const result = await resource.lifecycle.update(
      request.getId(),
      fromStruct(request.getOlds()),
      fromStruct(request.getNews()),
      this.settings,
    );
    return new proto.UpdateResponse().setProperties(
      toStruct(result.outs as Properties, [...resource.secrets, ...secretKeys(raw)]),
    );
  }

  private async delete(request: proto.DeleteRequest): Promise<Empty> {
    const resource = resourceKind(urnParts(request.getUrn()).type);
    await resource.lifecycle.delete(request.getId(), fromStruct(request.getProperties()), this.settings);
    return new Empty();
  }

  private async invoke(request: proto.InvokeRequest): Promise<proto.InvokeResponse> {
    const fn = functionKind(request.getTok());
    const result = await fn.run(fromStruct(request.getArgs()), this.settings);
    return new proto.InvokeResponse().setReturn(toStruct(result, fn.secret ? Object.keys(result) : []));
  }
}

/**
 * What a preview shows a create or an update answering: the new inputs, and every output unknown
 * but those an update leaves as they were.
 */
function previewOutputs(resource: ResourceKind, news: Properties, olds?: Properties): Properties {
  const outputs = Object.keys(resource.outputs).map((key) => [
    key,
    olds && resource.stable.includes(key) ? olds[key] : UNKNOWN,
  ]);
  return { ...news, ...Object.fromEntries(outputs) };
}

function failure({ property, reason }: { property: string; reason: string }): proto.CheckFailure {
  return new proto.CheckFailure().setProperty(property).setReason(reason);
}

/** A Struct's properties with secrets still wrapped, to learn which were secret. */
function fromStructRaw(struct: { toJavaScript(): unknown } | undefined): Properties {
  return (struct?.toJavaScript() ?? {}) as Properties;
}

/** RegisteredImage's create token includes its scope, which the dynamic resource's class passes and the URN gives here. */
function withScope(resource: ResourceKind, urn: string, properties: Properties): Properties {
  if (!("scope" in resource.lifecycle.inputSchema().shape)) return properties;
  const { project, stack, name } = urnParts(urn);
  return { ...properties, scope: `${project}/${stack}/${name}` };
}

/** Serves the provider on a loopback port and prints the port, the first line the engine reads. */
export async function serve(provider: EspmProvider): Promise<grpc.Server> {
  const server = new grpc.Server({ "grpc.max_receive_message_length": 400 * 1024 * 1024 });
  server.addService(services.ResourceProviderService, provider.handlers());
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  process.stdout.write(`${port}\n`);
  return server;
}
