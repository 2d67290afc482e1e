export { runAgent, type Backends } from "./daemon";
export { buildServer, type ServerOptions } from "./server";
export { loadConfig, type EspmConfig } from "./config";
export { Store } from "./store";
export { classify, renderEnc } from "./enc";
export type { CertificateAuthority, ClassDiscovery, CaCertificateStatus } from "./ca";
export { PuppetServerCa, PuppetServerClasses, puppetServerBackends } from "./ca/puppetserver";
