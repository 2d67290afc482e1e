/**
 * PuppetNodeRegistration: a node in espm's classifier, with its environment, groups, classes and
 * parameters. Changing the classification updates the node in place; changing the name replaces it.
 * With `onConflict: "suffix"` (the default) a taken name gets a millisecond timestamp on its first
 * label and is tried again, as the original espm did; `nodeName` is the name that was registered.
 */
import * as pulumi from "@pulumi/pulumi";
import { keepingSecret, secretConnection, type EspmConnection } from "./connection";
import { EspmDynamicResource, thinProvider } from "./thin-provider";

type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export interface PuppetNodeRegistrationArgs {
  /** The node name (Puppet's certname): lowercase letters, digits, '.', '_', '-'. */
  name: pulumi.Input<string>;
  /** The Puppet environment; espm's default (usually `production`) when not given. */
  environment?: pulumi.Input<string>;
  /** Groups from espm's groups.yaml. Give groups, classes, or both. */
  groups?: pulumi.Input<pulumi.Input<string>[]>;
  /** Classes with their parameters, e.g. `{ "ntp": { "servers": ["pool.ntp.org"] } }`. */
  classes?: pulumi.Input<Record<string, pulumi.Input<Record<string, JsonValue>>>>;
  /** Node parameters (top-scope variables in manifests). */
  parameters?: pulumi.Input<Record<string, pulumi.Input<JsonValue>>>;
  /** What to do when the name is taken: `suffix` (default) appends a timestamp and retries; `fail` fails. */
  onConflict?: pulumi.Input<"suffix" | "fail">;
  /** This resource's own espm connection instead of the stack's `espm:*` config. Kept secret. */
  connection?: pulumi.Input<EspmConnection>;
}

/** What the provider keeps in state: the inputs as checked, and what espm answered. */
export interface RegistrationState {
  name: string;
  environment?: string;
  groups: string[];
  classes: Record<string, Record<string, JsonValue>>;
  parameters: Record<string, JsonValue>;
  onConflict: "suffix" | "fail";
  connection?: EspmConnection;
  /** The name espm registered: `name`, or `name` with a conflict suffix. */
  nodeName: string;
  /** The environment the node is in (espm's default when `environment` was not given). */
  nodeEnvironment: string;
  createdAt: string;
}

/** The provider in this process, as the stored code (`storedProvider`) gets it from the runtime module where it runs. */
export const registrationProvider = thinProvider("registration");

export class PuppetNodeRegistration extends EspmDynamicResource {
  /**
   * The name espm registered: `name`, or `name` with a conflict suffix. Use this as the certname.
   * It is the resource's id, so it stays known while a preview shows an in-place update (a
   * dynamic resource's other outputs are unknown then, which would show its dependents replaced).
   */
  readonly nodeName: pulumi.Output<string>;
  declare readonly name: pulumi.Output<string>;
  /** The `environment` input (undefined when espm's default applies). */
  declare readonly environment: pulumi.Output<string | undefined>;
  declare readonly nodeEnvironment: pulumi.Output<string>;
  declare readonly groups: pulumi.Output<string[]>;
  declare readonly classes: pulumi.Output<Record<string, Record<string, JsonValue>>>;
  declare readonly parameters: pulumi.Output<Record<string, JsonValue>>;
  declare readonly createdAt: pulumi.Output<string>;

  constructor(name: string, args: PuppetNodeRegistrationArgs, opts?: pulumi.CustomResourceOptions) {
    const inputs = {
      ...args,
      connection: secretConnection(args.connection),
      nodeEnvironment: undefined,
      createdAt: undefined,
    };
    super("registration", "PuppetNodeRegistration", name, inputs, keepingSecret(opts));
    this.nodeName = this.id;
  }
}
