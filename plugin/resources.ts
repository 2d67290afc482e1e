/**
 * The plugin's resources: each is a lifecycle of pulumi-espm (the same check, diff, create, read,
 * update and delete its dynamic resource runs) with what the schema adds to it: a description, the
 * outputs' types, which outputs are secret, and a sentence per property. The inputs' types and
 * which inputs replace come from the lifecycle itself (its zod contract and `replacing`), and the
 * types below make the compiler refuse an output or a description that the state type lacks or
 * adds: the schema cannot drift from the code.
 */
import { z } from "zod";
import { schemas } from "espm-sdk/protocol";
import type { Lifecycle } from "pulumi-espm/thin-provider";
import { registrationLifecycle } from "pulumi-espm/registration-lifecycle";
import type { RegistrationState } from "pulumi-espm/registration";
import { enrollmentLifecycle } from "pulumi-espm/enrollment-lifecycle";
import type { EnrollmentState } from "pulumi-espm/enrollment";
import { certificateLifecycle } from "pulumi-espm/certificate-lifecycle";
import type { CertificateState } from "pulumi-espm/certificate";
import { CA_FINGERPRINT_DOC, INCLUDE_CA_BUNDLE_DOC } from "pulumi-espm/ca-trust";
import { firstRunLifecycle } from "pulumi-espm/first-run-lifecycle";
import type { FirstRunState } from "pulumi-espm/first-run";
import { imageLifecycle } from "pulumi-espm/image-lifecycle";
import type { ImageState } from "pulumi-espm/image";

/**
 * Inputs of the dynamic resources that the plugin does not take: `connection` (a program holds one
 * explicit provider per espm server instead) and `scope` (the plugin knows the resource's URN).
 */
export const HIDDEN_INPUTS = ["connection", "scope"] as const;
type Hidden = (typeof HIDDEN_INPUTS)[number];

type InputKeys<L extends { inputSchema(): z.ZodObject }> = keyof ReturnType<L["inputSchema"]>["shape"];

export interface ResourceKind {
  token: string;
  description: string;
  lifecycle: Lifecycle<object>;
  /** The outputs that are not inputs, by name. */
  outputs: Record<string, z.ZodType>;
  /** Outputs the engine keeps encrypted. */
  secrets: readonly string[];
  /**
   * Outputs an update in place leaves as they were: a preview shows them known, so what is built
   * from them (an enrollment from a registration's nodeName) is not shown replaced for nothing.
   */
  stable: readonly string[];
  /** A sentence per property, inputs and outputs. */
  docs: Record<string, string>;
}

/** A resource kind whose outputs and docs are checked, by the compiler, against its state type. */
function kind<State extends object, L extends Lifecycle<State>>(spec: {
  token: string;
  description: string;
  lifecycle: L;
  outputs: { [K in Exclude<keyof State, InputKeys<L>>]-?: z.ZodType<State[K]> };
  secrets: readonly (keyof State & string)[];
  stable: readonly Exclude<keyof State, InputKeys<L>>[];
  docs: { [K in Exclude<keyof State, Hidden>]-?: string };
}): ResourceKind {
  return spec as unknown as ResourceKind; // the checked spec, seen from outside without its state type
}

const pem = z.string();

export const RESOURCES: readonly ResourceKind[] = [
  kind<RegistrationState, typeof registrationLifecycle>({
    token: "espm:index:NodeRegistration",
    description:
      "A node in espm's classifier, with its environment, groups, classes and parameters. A change of classification updates the node in place; a change of name replaces it. Its id is the registered name.",
    lifecycle: registrationLifecycle,
    outputs: {
      nodeName: schemas.name,
      nodeEnvironment: schemas.environment,
      createdAt: z.string(),
    },
    secrets: [],
    stable: ["nodeName", "createdAt"],
    docs: {
      name: "The node name (Puppet's certname): lowercase letters, digits, '.', '_', '-'.",
      environment: "The Puppet environment; espm's default (usually `production`) when not given.",
      groups: "Groups from espm's groups.yaml. Give groups, classes, or both.",
      classes: 'Classes with their parameters, e.g. `{ "ntp": { "servers": ["pool.ntp.org"] } }`.',
      parameters: "Node parameters (top-scope variables in manifests).",
      onConflict:
        "What to do when the name is taken: `suffix` appends a timestamp to the first label and retries; `fail` fails.",
      nodeName: "The name espm registered: `name`, or `name` with a conflict suffix. Use it as the certname.",
      nodeEnvironment: "The environment the node is in (espm's default when `environment` was not given).",
      createdAt: "When espm registered the node.",
    },
  }),
  kind<EnrollmentState, typeof enrollmentLifecycle>({
    token: "espm:index:Enrollment",
    description:
      "A one-time token with which a registered node has the key it makes itself signed (the instance key mode): no private key leaves the node. Destroy revokes whatever certificate was signed through it.",
    lifecycle: enrollmentLifecycle,
    outputs: {
      token: z.string(),
      caCertificatePem: pem,
      caFingerprint: z.string(),
      expiresAt: z.string(),
      state: schemas.enrollment.shape.state,
      serial: z.string().optional(),
    },
    secrets: ["token"],
    stable: ["token", "caFingerprint", "state", "serial"],
    docs: {
      certname: "The certname: the registration's `nodeName`.",
      ttlMinutes: "Minutes until an unused token expires. A change extends an unused token.",
      extensions:
        "The `pp_*` extensions the node's CSR may carry, with their values, e.g. `{ pp_role: web }`. pp_instance_id is always allowed.",
      includeCaBundle: INCLUDE_CA_BUNDLE_DOC,
      token: "The node's one-time token (secret).",
      caCertificatePem:
        "The Puppet CA's certificate bundle, for the node to trust from its first connection; empty when `includeCaBundle` is false.",
      caFingerprint: CA_FINGERPRINT_DOC,
      expiresAt: "When an unused token expires.",
      state: "issued, used, signed, refused, expired or revoked; after a refresh, what espm says now.",
      serial: "The serial of the certificate signed through the enrollment, once espm has learned it.",
    },
  }),
  kind<CertificateState, typeof certificateLifecycle>({
    token: "espm:index:Certificate",
    description:
      "A Puppet client certificate signed by the Puppet CA through espm, for a key made by the provider (the provider key mode): the key is a secret output. Any change replaces it; destroy revokes it.",
    lifecycle: certificateLifecycle,
    outputs: {
      certificatePem: pem,
      privateKeyPem: pem,
      caCertificatePem: pem,
      caFingerprint: z.string(),
      crlPem: pem,
      serial: z.string(),
      notAfter: z.string(),
      state: z.string(),
    },
    secrets: ["privateKeyPem"],
    stable: ["certificatePem", "privateKeyPem", "caFingerprint", "serial", "notAfter", "state"],
    docs: {
      certname: "The certname: the registration's `nodeName`.",
      keyType: "`ec-p256`, `rsa-2048`, `rsa-3072` or `rsa-4096`.",
      extensions: "Puppet's `pp_*` extension requests, e.g. `{ pp_role: web }`.",
      includeCrl:
        "Whether `crlPem` holds the CA's CRL as it was at signing. Deprecated default `true`; set `false`: the CRL grows with every revocation on the site, it is rewritten with the state after every step, and the bootstrap does not use it. Turning it off empties `crlPem` in place.",
      certificatePem: "The signed certificate (PEM).",
      privateKeyPem: "The node's private key (PEM, secret).",
      includeCaBundle: INCLUDE_CA_BUNDLE_DOC,
      caCertificatePem: "The Puppet CA's certificate bundle (PEM); empty when `includeCaBundle` is false.",
      caFingerprint: CA_FINGERPRINT_DOC,
      crlPem:
        "The CA's certificate revocation list when the certificate was signed (PEM); empty when `includeCrl` is false.",
      serial: "The certificate's serial: hex, uppercase, no leading zeros.",
      notAfter: "When the certificate expires.",
      state:
        "`signed`; after a refresh, `revoked`, `requested` or `superseded` when the CA changed behind Pulumi's back.",
    },
  }),
  kind<FirstRunState, typeof firstRunLifecycle>({
    token: "espm:index:FirstRun",
    description:
      "Waits, after the instance, for the node's first Puppet run as espm learns it from Puppet Server's stored reports; a failed run or none within the timeout fails the update.",
    lifecycle: firstRunLifecycle,
    outputs: {
      status: z.string(),
      runAt: z.string(),
      transactionUuid: z.string().optional(),
      resources: schemas.puppetRun.shape.resources,
    },
    secrets: [],
    stable: ["status", "runAt", "transactionUuid", "resources"],
    docs: {
      nodeName: "The node whose run to wait for: the registration's `nodeName`.",
      instanceId: "The instance that runs Puppet: orders this after it, and replaces this with it.",
      timeoutMinutes: "How long to wait for the run.",
      notBefore:
        "Runs that started before this time (ISO 8601) are not the first run of this instance. Default: a minute before the create began.",
      status: "`changed` or `unchanged`.",
      runAt: "When the run started.",
      transactionUuid: "The run's transaction UUID.",
      resources: "The run's resource counts: total, changed, failed, skipped, outOfSync.",
    },
  }),
  kind<ImageState, typeof imageLifecycle>({
    token: "espm:index:RegisteredImage",
    description:
      "An AMI made from a prepared instance and marked trusted (tagged `espm:registered=true` with its snapshots); destroy deregisters it and deletes its snapshots.",
    lifecycle: imageLifecycle,
    outputs: {
      imageId: z.string(),
      snapshotIds: z.array(z.string()),
      region: z.string(),
      registeredAt: z.string(),
      state: z.string(),
      appliedTags: z.record(z.string(), z.string()),
      appliedSnapshotTags: z.record(z.string(), z.string()),
    },
    secrets: [],
    stable: ["imageId", "snapshotIds", "region", "registeredAt", "state"],
    docs: {
      instanceId: "The prepared instance to image: Puppet agent installed, never bootstrapped.",
      name: "The AMI name: 3 to 128 of letters, digits, `( ) [ ] . / - ' @ _` and spaces; unique in the region.",
      description: "The AMI's description.",
      noReboot: "Image without stopping the instance (the file systems may then be inconsistent).",
      tags: "Tags for the image, beside `espm:registered=true`.",
      snapshotTags: "Tags for the image's snapshots, beside `espm:registered=true`.",
      timeouts: "How long create waits for the image and delete for its snapshots: `40m`, `90s`, `1h`.",
      allowBootstrappedSource:
        "Image an instance whose userdata is espm's bootstrap anyway (its node's key would be in every instance launched from the image).",
      imageId: "The AMI's id.",
      snapshotIds: "The image's snapshots.",
      region: "The region the image is in.",
      registeredAt: "When the image was marked trusted.",
      state: "`available`; `pending` or `failed` when create could not finish (the next up replaces it).",
      appliedTags: "The tags the image carries, espm's among them.",
      appliedSnapshotTags: "The tags its snapshots carry, espm's among them.",
    },
  }),
];

export function resourceKind(token: string): ResourceKind {
  const found = RESOURCES.find((r) => r.token === token);
  if (!found) throw new Error(`espm has no resource type ${token}; it has ${RESOURCES.map((r) => r.token).join(", ")}`);
  return found;
}

/** The resource type in a URN: `urn:pulumi:STACK::PROJECT::[PARENT$]TYPE::NAME`. */
export function urnParts(urn: string): { stack: string; project: string; type: string; name: string } {
  const [, stack = "", project = "", qualified = "", ...rest] = urn.replace(/^urn:pulumi:/, "::").split("::");
  return { stack, project, type: qualified.split("$").pop() ?? "", name: rest.join("::") };
}

/** The inputs the plugin takes: the lifecycle's, without the hidden ones. */
export function inputKeys(resource: ResourceKind): string[] {
  return Object.keys(resource.lifecycle.inputSchema().shape).filter(
    (key) => !(HIDDEN_INPUTS as readonly string[]).includes(key),
  );
}
