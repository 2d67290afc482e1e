/** A stand-in for Puppet Server's address that can cut its CA off between a CSR's submit and its sign. */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { request } from "undici";
import { createSelfSignedCertificate } from "espm-agent/http/self-signed";
import { espmDispatcher, type PuppetServerLab } from "../../scripts/lab/puppetserver";

/**
 * A TLS stand-in for Puppet Server's address that forwards every request to the real one (as espm,
 * with espm's client certificate), and can cut the CA off: `cutAfterSubmit` lets a CSR submit
 * through, then drops the sign and every request after it until `restore()`.
 */
export class CaCutter {
  private server!: Server;
  private cut = false;
  private armed = false;
  private lab!: PuppetServerLab;
  url = "";
  certificate = "";
  readonly events: string[] = [];

  static async start(lab: PuppetServerLab): Promise<CaCutter> {
    const cutter = new CaCutter();
    const tls = createSelfSignedCertificate({ commonName: "127.0.0.1", altNames: ["127.0.0.1"] });
    cutter.certificate = tls.certificatePem;
    cutter.lab = lab;
    const upstream = espmDispatcher(lab);
    cutter.server = createServer({ key: tls.privateKeyPem, cert: tls.certificatePem }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", async () => {
        const body = Buffer.concat(chunks);
        // One by one (PUT certificate_status, desired_state signed) or Puppet 8's bulk POST /sign.
        const signing =
          (req.method === "PUT" && /\/certificate_status\//.test(req.url!) && body.toString().includes('"signed"')) ||
          (req.method === "POST" && /\/puppet-ca\/v1\/sign$/.test(req.url!));
        if (cutter.drops(signing)) {
          cutter.events.push(`dropped ${req.method} ${req.url}`);
          req.socket.destroy();
          return;
        }
        try {
          const answer = await request(`${lab.url}${req.url}`, {
            method: req.method as "GET",
            headers: {
              ...(req.headers["content-type"] ? { "content-type": req.headers["content-type"] } : {}),
              "user-agent": req.headers["user-agent"] ?? "",
            },
            body: body.length ? body : undefined,
            dispatcher: upstream,
          });
          const text = Buffer.from(await answer.body.arrayBuffer());
          res
            .writeHead(answer.statusCode, { "content-type": String(answer.headers["content-type"] ?? "text/plain") })
            .end(text);
        } catch {
          req.socket.destroy();
        }
      });
    });
    await new Promise<void>((ready) => cutter.server.listen(0, "127.0.0.1", ready));
    cutter.url = `https://127.0.0.1:${(cutter.server.address() as AddressInfo).port}`;
    return cutter;
  }

  /** Whether to drop this request: from the first sign after `cutAfterSubmit`, every one until `restore`. */
  drops(signing: boolean): boolean {
    if (this.armed && signing) this.cut = true;
    return this.cut;
  }

  /**
   * espm-setup's arguments for an espm that reaches the lab's Puppet Server through this stand-in:
   * its URL, and a CA bundle (written into `dir`) that trusts the stand-in's certificate too.
   */
  espmSetupArgs(dir: string): string[] {
    const bundle = join(dir, "cutter-bundle.pem");
    writeFileSync(bundle, `${readFileSync(this.lab.caBundle, "utf8")}${this.certificate}`);
    return [
      "--puppetserver-url",
      this.url,
      "--puppetserver-ca",
      bundle,
      "--puppetserver-cert",
      this.lab.espmCert,
      "--puppetserver-key",
      this.lab.espmKey,
    ];
  }

  cutAfterSubmit(): void {
    this.armed = true;
  }

  restore(): void {
    this.armed = false;
    this.cut = false;
  }

  close(): void {
    this.server.close();
  }
}
