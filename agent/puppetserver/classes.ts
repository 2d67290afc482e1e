/** Class discovery from Puppet Server's `/puppet/v3/environment_classes`. */
import type { BackendStatus, PuppetClass } from "espm-sdk/protocol";
import { BackendError, type ClassDiscovery } from "./contract";
import { parseJson, type PuppetServerHttp } from "./http";
import { AnswerCache, type Cached } from "espm-sdk/cache";

interface EnvironmentClassesBody {
  files?: Array<{
    path?: string;
    error?: string;
    classes?: Array<{ name: string; params?: Array<{ name: string; type?: string; default_source?: string }> }>;
  }>;
}

/**
 * Classes from `/puppet/v3/environment_classes`. One request per environment at a time, however
 * many callers arrive: the first answer is awaited by all of them; after that, an answer older than
 * the cache time is served as it is while one refresh (revalidated with the ETag) runs behind it.
 * Puppet Server takes about a second to answer, so callers never queue behind one another's refreshes.
 */
export class PuppetServerClasses implements ClassDiscovery {
  private readonly cache: AnswerCache<string, PuppetClass[]>;

  constructor(
    private readonly http: PuppetServerHttp,
    cacheMs: number,
  ) {
    this.cache = new AnswerCache({ ttlMs: cacheMs, serveStale: true }, (environment, previous) =>
      this.fetch(environment, previous),
    );
  }

  classes(environment: string): Promise<PuppetClass[]> {
    return this.cache.get(environment);
  }

  private async fetch(
    environment: string,
    previous: Cached<PuppetClass[]> | undefined,
  ): Promise<Cached<PuppetClass[]>> {
    const response = await this.http.call(
      "GET",
      `/puppet/v3/environment_classes?environment=${encodeURIComponent(environment)}`,
      {
        headers: previous?.etag ? { "if-none-match": previous.etag } : {},
        expected: [200, 304, 404],
      },
    );
    if (response.status === 304 && previous) return previous;
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
    return { value: classes, etag };
  }

  async health(): Promise<BackendStatus> {
    return { status: "ok", detail: `${this.cache.size} environments cached` };
  }
}
