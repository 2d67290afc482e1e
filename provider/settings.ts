/**
 * What every provider operation gets from the current stack's config (never from state): how to
 * reach espm, and where EC2 is. The dynamic-provider host hands the stack's config to `configure`
 * once per process; a PSK rotated in the config is what the next refresh or destroy uses.
 */
import { stackConnection, type PartialConnection, type StackConfig } from "./connection";

/** Where EC2 is: the stack's `aws:region` (else the AWS_REGION environment), and an endpoint for tests. */
export interface AwsSettings {
  region?: string;
  profile?: string;
  /** `espm:ec2Endpoint`: another EC2 API endpoint, such as moto's for tests. */
  endpoint?: string;
}

export interface StackSettings {
  espm: PartialConnection;
  aws: AwsSettings;
  /** `espm:validateClassification` (default true): check groups, classes and parameters against espm in `check`. */
  validateClassification: boolean;
}

export function stackSettings(config: StackConfig): StackSettings {
  return {
    espm: stackConnection(config),
    validateClassification: config.get("espm:validateClassification") !== "false",
    aws: {
      region: config.get("aws:region") ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION,
      profile: config.get("aws:profile"),
      endpoint: config.get("espm:ec2Endpoint"),
    },
  };
}
