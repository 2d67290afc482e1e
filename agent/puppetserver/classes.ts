/** Class discovery from Puppet Server's `/puppet/v3/environment_classes`. */
import type { BackendStatus, PuppetClass } from "../../sdk/protocol";
import { BackendError, type ClassDiscovery } from "./contract";
import { parseJson, type PuppetServerHttp } from "./http";

interface EnvironmentClassesBody {
  files?: Array<{
    path?: string;
    error?: string;
    classes?: Array<{ name: string; params?: Array<{ name: string; type?: string; default_source?: string }> }>;
  }>;
}

/** Classes from `/puppet/v3/environment_classes`, cached briefly; revalidated with the ETag when the server sends one. */
export class PuppetServerClasses implements ClassDiscovery {
  private readonly cache = new Map<string, { at: number; etag?: string; classes: PuppetClass[] }>();

  constructor(
    private readonly http: PuppetServerHttp,
    private readonly cacheMs: number,
  ) {}

  async classes(environment: string): Promise<PuppetClass[]> {
    const cached = this.cache.get(environment);
    if (cached && Date.now() - cached.at < this.cacheMs) return cached.classes;
    const response = await this.http.call(
      "GET",
      `/puppet/v3/environment_classes?environment=${encodeURIComponent(environment)}`,
      {
        headers: cached?.etag ? { "if-none-match": cached.etag } : {},
        expected: [200, 304, 404],
      },
    );
    if (response.status === 304 && cached) {
      cached.at = Date.now();
      return cached.classes;
    }
    if (response.status === 404) throw new BackendError(502, `Puppet Server has no environment named ${environment}`);
    const body = parseJson(response.text, "environment classes") as EnvironmentClassesBody;
    const classes: PuppetClass[] = [];
    for (const file of body.files ?? []) {
      for (const cls of file.classes ?? []) {
        classes.push({
          name: cls.name,
          parameters: (cls.params ?? []).map((p) => ({
            name: p.name,
            type: p.type,
            default: p.default_source,
            hasDefault: p.default_source !== undefined,
          })),
        });
      }
    }
    classes.sort((a, b) => a.name.localeCompare(b.name));
    const etag = typeof response.headers.etag === "string" ? response.headers.etag : undefined;
    this.cache.set(environment, { at: Date.now(), etag, classes });
    return classes;
  }

  async health(): Promise<BackendStatus> {
    return { status: "ok", detail: `${this.cache.size} environments cached` };
  }
}
