/**
 * The one module that serialized providers `require` (as `pulumi-espm/dist/provider/runtime.js`):
 * a public contract from the first release. Pulumi stores each dynamic provider's code in state
 * and runs refresh and destroy with it, so that code is only thin calls into this module (see
 * thin-provider.ts); the lifecycles behind these names can change between releases, and existing
 * stacks use the installed version. Moving or renaming what this module exports would break
 * `pulumi destroy` of existing stacks. It only re-exports.
 */
export { stackSettings } from "./settings";
export { registrationLifecycle as registration } from "./registration-lifecycle";
export { certificateLifecycle as certificate } from "./certificate-lifecycle";
export { imageLifecycle as image } from "./image-lifecycle";
export { firstRunLifecycle as firstRun } from "./first-run-lifecycle";
export { enrollmentLifecycle as enrollment } from "./enrollment-lifecycle";
// Stacks stored by earlier releases load these from here too.
export {
  espmRuntime,
  RUNTIME_MODULE,
  runtimeModuleSpecifier,
  thinProvider,
  type LifecycleName,
  type ThinProvider,
} from "./thin-provider";
