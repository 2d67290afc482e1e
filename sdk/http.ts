/**
 * undici's connection pool (`Agent`) and its request call, loaded without the rest of undici.
 *
 * `require("undici")` loads all of undici: fetch, WebSocket, EventSource, the HTTP cache, the mocks.
 * That is 160 ms of CPU on a 2-core machine, against 30 ms for the two modules espm uses, and every
 * process that talks to espm or to Puppet Server pays it once: the dynamic-provider host in every
 * `pulumi preview`, `up` and `destroy`, and the espm daemon at every start. These are the modules
 * undici's own index loads, by their paths, so they are the same classes. undici declares no
 * `exports` map, so the paths can be required, but they are not its documented API: if a later undici
 * moves them, this loads the index instead, slower and the same (test/sdk-http.test.ts checks which
 * one the installed undici gives).
 */
import type * as undici from "undici";

/** The options espm's requests use: `undici.request`'s, with the dispatcher required. */
export interface RequestOptions {
  dispatcher: undici.Dispatcher;
  method?: undici.Dispatcher.HttpMethod;
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
}

export interface HttpCore {
  Agent: typeof undici.Agent;
  request(url: string, options: RequestOptions): Promise<undici.Dispatcher.ResponseData>;
  /** Whether these came from the two modules alone (`lean`) or from undici's index. */
  loaded: "lean" | "index";
}

/** Where the two modules sit in undici 7's package. */
export const LEAN_MODULES = { agent: "undici/lib/dispatcher/agent", request: "undici/lib/api/api-request" };

/** Undici's request call: a function of its dispatcher (`this`) and the options, origin and path apart. */
type DispatcherRequest = (
  this: undici.Dispatcher,
  options: Omit<RequestOptions, "dispatcher"> & { origin: string; path: string; method: undici.Dispatcher.HttpMethod },
) => Promise<undici.Dispatcher.ResponseData>;

/** The Agent and request from `modules`, or from undici's index when they are not there or not what they were. */
export function loadHttpCore(modules: typeof LEAN_MODULES = LEAN_MODULES): HttpCore {
  try {
    /* eslint-disable @typescript-eslint/no-require-imports -- loaded by path on purpose, see above; require's result is untyped */
    const Agent = require(modules.agent) as unknown;
    const dispatch = require(modules.request) as unknown;
    /* eslint-enable @typescript-eslint/no-require-imports */
    if (typeof Agent === "function" && typeof dispatch === "function") {
      const send = dispatch as DispatcherRequest;
      return {
        Agent: Agent as typeof undici.Agent,
        // What undici's index does for `request(url, options)` with a dispatcher given.
        request(url, { dispatcher, ...options }) {
          const target = new URL(url);
          return send.call(dispatcher, {
            ...options,
            origin: target.origin,
            path: `${target.pathname}${target.search}`,
            method: options.method ?? (options.body ? "PUT" : "GET"),
          });
        },
        loaded: "lean",
      };
    }
  } catch {
    // Not where undici 7 keeps them: the index below has them.
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the fallback, loaded only when needed
  const index = require("undici") as typeof undici;
  return { Agent: index.Agent, request: (url, options) => index.request(url, options), loaded: "index" };
}

const core = loadHttpCore();

export const Agent = core.Agent;
export type Agent = undici.Agent;
export const request = core.request;
