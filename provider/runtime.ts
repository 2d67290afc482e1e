/**
 * The one module that serialized providers `require` (as `pulumi-espm/dist/provider/runtime.js`).
 *
 * Pulumi stores each dynamic provider's code in state and runs refresh and destroy with it, so the
 * code it stores is only thin calls into this module: the lifecycles themselves can change between
 * releases and existing stacks use the installed version. Moving or renaming what this module
 * exports would break `pulumi destroy` of existing stacks: it is a public contract.
 */
export { stackConnection } from "./connection";
export { registrationLifecycle as registration } from "./registration";
export { certificateLifecycle as certificate } from "./certificate";
