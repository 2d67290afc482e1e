/**
 * The plugin's functions (invokes): espm's groups, an environment's classes, and the bootstrap
 * userdata. Each has a zod contract for its arguments and its result, from which the schema is
 * made and with which the arguments are checked; the groups and classes are espm's wire contract.
 */
import { z } from "zod";
import { schemas } from "espm-sdk/protocol";
import { withClient } from "pulumi-espm/connection";
import { renderBootstrap, type BootstrapInputs } from "pulumi-espm/bootstrap";
import type { StackSettings } from "pulumi-espm/settings";
import type { Properties } from "./values";

export interface FunctionKind {
  token: string;
  description: string;
  inputs: z.ZodObject;
  outputs: z.ZodObject;
  /** The whole result is a secret. */
  secret: boolean;
  /** A sentence per argument, and per property of the result. */
  docs: { arguments: Record<string, string>; result: Record<string, string> };
  run(args: Properties, settings: StackSettings): Promise<Properties>;
}

const text = z.string();

function classesArguments() {
  return z.strictObject({ environment: schemas.environment.optional() });
}

function bootstrapArguments() {
  return z.strictObject({
    nodeName: schemas.name,
    environment: schemas.environment.optional(),
    master: z.string().min(1),
    masterPort: z.number().int().min(1).max(65535).optional(),
    maxWaitForCertSeconds: z.number().int().positive().optional(),
    enrollment: z
      .strictObject({
        certname: schemas.name,
        token: z.string().min(1),
        extensions: z.record(z.string(), z.string()).optional(),
        caCertificatePem: text.optional(),
        caFingerprint: text.optional(),
      })
      .meta({ id: "BootstrapEnrollment" })
      .optional(),
    certificate: z
      .strictObject({
        certname: schemas.name,
        certificatePem: text,
        privateKeyPem: text,
        caCertificatePem: text.optional(),
        caFingerprint: text.optional(),
      })
      .meta({ id: "BootstrapCertificate" })
      .optional(),
    before: text.optional(),
    after: text.optional(),
    onFailure: text.optional(),
    facts: z.record(z.string(), z.string()).optional(),
    script: text.optional(),
    cloudConfig: text.optional(),
    installAgent: z.enum(["distro", "none"]).optional(),
  });
}

/** Parses `args` with `schema`, or throws one message naming every bad argument. */
function parsed<S extends z.ZodObject>(token: string, schema: S, args: Properties): z.output<S> {
  const result = schema.safeParse(args);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const at = issue.path.join(".");
    if (issue.code === "unrecognized_keys") return `${issue.keys.join(", ")}: not an argument of ${token}`;
    return `${at || "(arguments)"}: ${issue.message}`;
  });
  throw new Error(`${token}: ${problems.join("; ")}`);
}

export const FUNCTIONS: readonly FunctionKind[] = [
  {
    token: "espm:index:getGroups",
    description: "espm's groups (groups.yaml), with the classes and parameters each sets.",
    inputs: z.strictObject({}),
    outputs: schemas.groupsResponse,
    secret: false,
    docs: { arguments: {}, result: { groups: "The groups, by name." } },
    async run(_args, settings) {
      return withClient(undefined, settings.espm, async (client) => ({ groups: (await client.groups()).groups }));
    },
  },
  {
    token: "espm:index:getClasses",
    description: "The classes of an environment as Puppet Server knows them, with their parameters' types.",
    inputs: classesArguments(),
    outputs: schemas.classesResponse,
    secret: false,
    docs: {
      arguments: { environment: "The environment (espm's default when not given)." },
      result: {
        environment: "The environment the classes are of.",
        classes: "The environment's classes and their parameters.",
      },
    },
    async run(args, settings) {
      const { environment } = parsed("espm:index:getClasses", classesArguments(), args);
      return withClient(undefined, settings.espm, (client) => client.classes(environment));
    },
  },
  {
    token: "espm:index:bootstrapUserData",
    description:
      "The userdata that boots an instance into Puppet: the bootstrap script with the node name, the master's address, the CA bundle, and an Enrollment's one-time token (the instance key mode) or a Certificate and its key (the provider key mode). The result is secret.",
    inputs: bootstrapArguments(),
    outputs: z.object({
      base64: text,
      script: text,
      multipart: z.boolean(),
      gzipped: z.boolean(),
      bytes: z.number().int(),
    }),
    secret: true,
    docs: {
      arguments: {
        nodeName: "The registration's `nodeName`.",
        environment: "The registration's environment; without one the agent takes the one espm's ENC gives it.",
        master:
          "The Puppet master's host name or IP address as the instance reaches it. An IP gets a hosts entry for `puppet`.",
        masterPort: "Puppet Server's port (default 8140).",
        maxWaitForCertSeconds: "Instance key mode: how long the agent waits for its certificate (default 600).",
        enrollment:
          "The instance key mode (recommended): an Enrollment's certname, token, extensions, and caCertificatePem or (when that is empty) caFingerprint.",
        certificate:
          "The provider key mode: a Certificate's certname, certificatePem, privateKeyPem, and caCertificatePem or (when that is empty) caFingerprint.",
        before: "POSIX sh run first of all.",
        after: "POSIX sh run after a successful first run.",
        onFailure: "POSIX sh run after a failed first run, with `$ESPM_AGENT_EXIT` and `$ESPM_LOG`.",
        facts: "External facts (facts.d/espm.yaml) for the first catalog.",
        script: "Your own script in place of espm's call of the bootstrap, using the ESPM_* variables.",
        cloudConfig: "Your own `#cloud-config`, sent with the script as a MIME multi-part message.",
        installAgent: "`distro` installs puppet-agent from the distribution's packages when the image has none.",
      },
      result: {
        base64: "Base64 of the bytes EC2 should get (for `userDataBase64`).",
        script: "espm's shell script (a part of the message when there is a cloud config).",
        multipart: "True when `base64` holds a MIME multi-part message (with `cloudConfig`).",
        gzipped: "True when the message is gzipped.",
        bytes: "Size in bytes of what EC2 gets, before base64 (EC2's limit is 16 KB).",
      },
    },
    async run(args) {
      const inputs: BootstrapInputs = parsed("espm:index:bootstrapUserData", bootstrapArguments(), args);
      return { ...renderBootstrap(inputs) };
    },
  },
];

export function functionKind(token: string): FunctionKind {
  const found = FUNCTIONS.find((f) => f.token === token);
  if (!found) throw new Error(`espm has no function ${token}; it has ${FUNCTIONS.map((f) => f.token).join(", ")}`);
  return found;
}
