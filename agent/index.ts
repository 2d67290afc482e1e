export { runAgent } from "./daemon";
export type { Backends } from "./puppetserver";
export { buildServer, type ServerOptions } from "./http/server";
export { loadConfig, type EspmConfig } from "./config/config";
export { Store } from "./store/store";
export { classify, renderEnc } from "./enc/enc";
export type { CertificateAuthority, ClassDiscovery, CaCertificateStatus } from "./puppetserver";
export { PuppetServerCa, PuppetServerClasses, puppetServerBackends } from "./puppetserver";
