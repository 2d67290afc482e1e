/**
 * espm's HTTPS connection to Puppet Server (and, with the same parts, to PuppetDB): mutual TLS with
 * espm's own client certificate, the Puppet CA bundle as the only trust anchor, keep-alive, and
 * errors turned into BackendError.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { connect, type PeerCertificate } from "node:tls";
import { Agent, request } from "espm-sdk/http";
import type { EspmConfig } from "../config/config";
import { VERSION } from "../version";
import { BackendError } from "./contract";

export type PuppetServerConfig = NonNullable<EspmConfig["puppetserver"]>;

/** Which service a connection reaches, for its messages, and what a 403 from it means. */
export interface Service {
  name: string;
  forbidden: string;
}

const PUPPET_SERVER: Service = {
  name: "Puppet Server",
  forbidden:
    "Puppet Server's auth.conf does not allow espm this path: for a certificate path, the name is outside the certname patterns in auth.conf; `espm puppet-config` prints the rules",
};

export interface PuppetResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

export class PuppetServerHttp {
  private readonly agent: Agent;
  readonly base: string;
  private readonly tls: { ca: string; cert: string; key: string };

  constructor(
    config: Pick<PuppetServerConfig, "url" | "ca_bundle" | "cert" | "key">,
    readonly service: Service = PUPPET_SERVER,
  ) {
    const read = (path: string, what: string) => {
      try {
        return readFileSync(path, "utf8");
      } catch (err) {
        throw new Error(
          `cannot read the ${service.name} ${what} ${path} named in espm.ini: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        );
      }
    };
    this.base = config.url.replace(/\/+$/, "");
    this.tls = {
      ca: read(config.ca_bundle, "CA bundle"),
      cert: read(config.cert, "client certificate"),
      key: read(config.key, "client key"),
    };
    this.agent = new Agent({
      connect: this.tls,
      connections: 32,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
  }

  /** One call to Puppet Server. Statuses in `expected` are returned; any other is a BackendError. */
  async call(
    method: "GET" | "PUT" | "POST" | "DELETE",
    path: string,
    options: { body?: string; contentType?: string; headers?: Record<string, string>; expected: number[] },
  ): Promise<PuppetResponse> {
    let response;
    try {
      response = await request(`${this.base}${path}`, {
        method,
        dispatcher: this.agent,
        body: options.body,
        // Puppet Server's access log then tells espm's requests from everyone else's.
        headers: {
          accept: "application/json, text/plain",
          "user-agent": `espm/${VERSION}`,
          ...(options.contentType ? { "content-type": options.contentType } : {}),
          ...options.headers,
        },
      });
    } catch (err) {
      throw new BackendError(503, `${this.service.name} at ${this.base} cannot be reached: ${(err as Error).message}`);
    }
    const text = await response.body.text();
    if (!options.expected.includes(response.statusCode)) {
      const hint = response.statusCode === 403 ? ` (${this.service.forbidden})` : "";
      throw new BackendError(
        502,
        `${this.service.name} answered ${method} ${path.split("?")[0]} with ${response.statusCode}${hint}: ${text.trim().slice(0, 500)}`,
      );
    }
    return { status: response.statusCode, headers: response.headers, text };
  }

  /** The certificate Puppet Server presents on its TLS port, verified against the CA bundle. */
  peerCertificate(timeoutMs = 10_000): Promise<PeerCertificate> {
    const url = new URL(this.base);
    const host = url.hostname.replace(/^\[|\]$/g, "");
    return new Promise((resolve, reject) => {
      const socket = connect(
        {
          host,
          port: Number(url.port || 443),
          ...this.tls,
          servername: isIP(host) ? undefined : host,
          timeout: timeoutMs,
        },
        () => {
          const cert = socket.getPeerCertificate();
          socket.end();
          resolve(cert);
        },
      );
      socket.once("timeout", () => socket.destroy(new Error(`no TLS handshake within ${timeoutMs} ms`)));
      socket.once("error", (err) =>
        reject(new BackendError(503, `${this.service.name} at ${this.base} cannot be reached: ${err.message}`)),
      );
    });
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** A backend's answer parsed as JSON; a body that is not JSON is the backend's fault (502). */
export function parseJson(text: string, what: string, from = "Puppet Server"): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new BackendError(502, `${from} sent ${what} that is not JSON`);
  }
}
