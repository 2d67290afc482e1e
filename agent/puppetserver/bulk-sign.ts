/**
 * Puppet 8's bulk signing (POST /puppet-ca/v1/sign, its certnames in the body): signs that arrive
 * within a few milliseconds of each other go to the CA as one request. Where the server has no such
 * endpoint (Puppet 7 answers 404) or its auth.conf does not let espm use it (403: the operator did
 * not give espm the "espm bulk sign" rule), every sign goes one by one, as before, from then on.
 *
 * Bulk signing trades a layer of defence for speed: auth.conf can limit the one-by-one path to the
 * names espm's certname policy allows, but not names that travel in a body. espm sends only names
 * it has checked itself; `espm puppet-config --bulk-sign` prints the rule and says so.
 */
import { parseJson, type PuppetServerHttp } from "./http";

const BULK_SIGN_PATH = "/puppet-ca/v1/sign";
/** How long a sign waits for others to join its batch. */
const WINDOW_MS = 5;
/** The most names in one request. */
const MAX_BATCH = 64;

export type SigningMode = "unknown" | "bulk" | "one by one";

interface Waiter {
  certname: string;
  resolve(): void;
  reject(err: unknown): void;
}

export class BatchedSigner {
  private current: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;
  mode: SigningMode = "unknown";

  /**
   * `one` signs a single name through the per-certname path (and carries the CA's reason for a
   * refusal). Without `enabled` (espm.ini's bulk_sign), every sign goes one by one and the bulk
   * endpoint is never tried: on Puppet 7 the try alone is an ERROR in Puppet Server's log.
   */
  constructor(
    private readonly http: PuppetServerHttp,
    private readonly one: (certname: string) => Promise<void>,
    enabled: boolean,
  ) {
    if (!enabled) this.mode = "one by one";
  }

  sign(certname: string): Promise<void> {
    if (this.mode === "one by one") return this.one(certname);
    return new Promise<void>((resolve, reject) => {
      this.current.push({ certname, resolve, reject });
      if (this.current.length >= MAX_BATCH) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), WINDOW_MS);
    });
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.current;
    this.current = [];
    void this.send(batch);
  }

  private async send(batch: Waiter[]): Promise<void> {
    let response;
    try {
      response = await this.http.call("POST", BULK_SIGN_PATH, {
        body: JSON.stringify({ certnames: [...new Set(batch.map((w) => w.certname))] }),
        contentType: "application/json",
        expected: [200, 403, 404],
      });
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    if (response.status !== 200) {
      this.mode = "one by one";
      for (const w of batch) this.one(w.certname).then(w.resolve, w.reject);
      return;
    }
    this.mode = "bulk";
    let signed: Set<string>;
    try {
      const body = parseJson(response.text, "the bulk sign answer") as { signed?: unknown };
      signed = new Set(Array.isArray(body.signed) ? body.signed.filter((n) => typeof n === "string") : []);
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    // A name the CA did not sign (no CSR, or a signing error, which the bulk answer gives no reason
    // for) is signed once more on its own: that answers with the CA's reason, or signs it after all.
    for (const w of batch) {
      if (signed.has(w.certname)) w.resolve();
      else this.one(w.certname).then(w.resolve, w.reject);
    }
  }
}
