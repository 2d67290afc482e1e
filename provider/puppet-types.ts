/**
 * Moved to sdk/puppet-types.ts, where espm's check of groups.yaml uses the same types as `pulumi
 * preview`. Kept as a re-export because Pulumi stores provider code in state and runs delete and
 * refresh with it: a module a release shipped stays resolvable.
 */
export * from "espm-sdk/puppet-types";
