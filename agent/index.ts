export { runAgent } from "./daemon";
export type { Backends } from "./puppetserver";
export { buildServer, type ServerOptions } from "./server";
export { loadConfig, type EspmConfig } from "./config";
export { Store } from "./store";
export { classify, renderEnc } from "./enc";
export type { CertificateAuthority, ClassDiscovery, CaCertificateStatus } from "./puppetserver";
export { PuppetServerCa, PuppetServerClasses, puppetServerBackends } from "./puppetserver";
