/**
 * PuppetFirstRun: waits, after the instance, for the node's first Puppet run as espm learns it from
 * Puppet Server's stored reports. `changed` or `unchanged` succeeds and records the run; `failed`
 * fails `pulumi up` with the run's error lines, as the original espm failed a launch on agent exit
 * codes 1, 4 and 6; no run within the timeout fails saying what to check. delete does nothing remote.
 */
import * as pulumi from "@pulumi/pulumi";
import type { PuppetRun } from "espm-sdk/protocol";
import { keepingSecret, secretConnection, type EspmConnection } from "./connection";
import { EspmDynamicResource, thinProvider } from "./thin-provider";

export interface PuppetFirstRunArgs {
  /** The node whose run to wait for: the registration's `nodeName`. */
  nodeName: pulumi.Input<string>;
  /** The instance that runs Puppet: orders this after it and replaces this with it. */
  instanceId: pulumi.Input<string>;
  /** How long to wait for the run (default 30). */
  timeoutMinutes?: pulumi.Input<number>;
  /**
   * Runs that started before this time are not the first run of this instance (ISO 8601). Default:
   * one minute before this resource's create began, which follows the instance's create.
   */
  notBefore?: pulumi.Input<string>;
  /** This resource's own espm connection instead of the stack's `espm:*` config. Kept secret. */
  connection?: pulumi.Input<EspmConnection>;
}

export interface FirstRunState {
  nodeName: string;
  instanceId: string;
  timeoutMinutes: number;
  notBefore?: string;
  connection?: EspmConnection;
  /** `changed` or `unchanged`. */
  status: string;
  /** When the run started. */
  runAt: string;
  transactionUuid?: string;
  resources: PuppetRun["resources"];
}

/** The provider in this process, as the stored code (`storedProvider`) gets it from the runtime module where it runs. */
export const firstRunProvider = thinProvider("firstRun");

export class PuppetFirstRun extends EspmDynamicResource {
  /** `changed` or `unchanged`. */
  declare readonly status: pulumi.Output<string>;
  declare readonly runAt: pulumi.Output<string>;
  declare readonly transactionUuid: pulumi.Output<string | undefined>;
  declare readonly resources: pulumi.Output<PuppetRun["resources"]>;

  constructor(name: string, args: PuppetFirstRunArgs, opts?: pulumi.CustomResourceOptions) {
    const inputs = {
      ...args,
      connection: secretConnection(args.connection),
      status: undefined,
      runAt: undefined,
      transactionUuid: undefined,
      resources: undefined,
    };
    super("firstRun", "PuppetFirstRun", name, inputs, keepingSecret(opts));
  }
}
