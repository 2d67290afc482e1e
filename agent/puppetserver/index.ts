/**
 * Everything espm asks of Puppet Server, under one name: its CA (ca.ts), its own names (ca.ts), class
 * discovery (classes.ts), all over one HTTP client (http.ts). contract.ts says what espm needs of
 * each, so a test may put a double in their place.
 */
import type { EspmConfig } from "../config/config";
import { PuppetServerCa, PuppetServerNames } from "./ca";
import { PuppetServerClasses } from "./classes";
import type { Backends } from "./contract";
import { PuppetServerHttp, type PuppetServerConfig } from "./http";

export * from "./contract";
export { PuppetServerCa, PuppetServerNames, serialToHex } from "./ca";
export { PuppetServerClasses } from "./classes";

export function puppetServerBackends(config: EspmConfig): Backends {
  const settings: PuppetServerConfig | undefined = config.puppetserver;
  if (!settings) return {};
  const http = new PuppetServerHttp(settings);
  return {
    ca: new PuppetServerCa(http, { bulkSign: settings.bulk_sign }),
    classes: new PuppetServerClasses(http, settings.class_cache_seconds * 1000),
    names: new PuppetServerNames(http),
  };
}
