/**
 * pulumi-espm: Puppet first-boot provisioning as Pulumi resources.
 */
import { requireOnePulumi } from "./one-pulumi";

requireOnePulumi();

export {
  PuppetNodeRegistration,
  registrationProvider,
  type PuppetNodeRegistrationArgs,
  type RegistrationState,
} from "./registration";
export {
  PuppetCertificate,
  certificateProvider,
  type PuppetCertificateArgs,
  type CertificateState,
  type CertificateKeyType,
} from "./certificate";
export { PuppetEnrollment, enrollmentProvider, type PuppetEnrollmentArgs, type EnrollmentState } from "./enrollment";
export { RegisteredImage, imageProvider, type RegisteredImageArgs, type ImageState } from "./image";
export { PuppetFirstRun, firstRunProvider, type PuppetFirstRunArgs, type FirstRunState } from "./first-run";
export { bootstrapUserData, type BootstrapUserDataArgs } from "./bootstrap";
export { getClasses, getGroups } from "./discovery";
export {
  renderUserData,
  USERDATA_LIMIT,
  USERDATA_VARIABLES,
  type CloudInitPart,
  type RenderedUserData,
  type UserDataInput,
} from "./userdata";
export { type EspmConnection } from "./connection";
