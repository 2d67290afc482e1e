/**
 * What happens to an enrollment after its token is issued: learning the serial of the certificate
 * the CA signed through it, revoking that certificate when the enrollment is deleted, and the sweep.
 *
 * Puppet Server saves a CSR before it runs the autosign policy and never runs the policy for it again,
 * so a CSR the policy refused, or could not decide (espm down, or slower than the policy's 5 s),
 * stays pending and blocks its name. The sweep looks at the pending requests of enrolled names:
 * one espm accepted is signed through the CA API; one no policy decided gets the same decision
 * now; one refused is cleaned, so no name is stranded.
 */
import { nameProblem } from "espm-sdk/names";
import { inspectCsr } from "../ca/csr";
import { decide } from "../autosign/policy";
import { caHolding, recordLearnedSerial, type CaHolding } from "../ca/holding";
import { now, type AgentContext } from "../http/context";
import type { CertificateAuthority } from "../puppetserver/contract";
import type { EnrollmentRecord } from "../store/store";

/**
 * A pending request seen for at least this long was never decided by a policy run that is still
 * going: `espm autosign` gives up within 5 s.
 */
export const PENDING_GRACE_MS = 10_000;

export interface SweepLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/** The serial the CA signed a used token's CSR with, when what it holds for the name is espm's. */
function signedSerial(enrollment: EnrollmentRecord, { held, mine }: CaHolding): string | undefined {
  if (enrollment.state !== "used" || !mine || (held.state !== "signed" && held.state !== "revoked")) return undefined;
  return held.serial;
}

/**
 * The enrollment as things are now, without writing (a GET asks this): a used token whose CSR the
 * CA has since signed reads as signed, with the CA's serial. The sweep records it (learnSerial).
 */
export async function enrollmentNow(ctx: AgentContext, enrollment: EnrollmentRecord): Promise<EnrollmentRecord> {
  if (enrollment.state !== "used" || !ctx.ca) return enrollment;
  const serial = signedSerial(enrollment, await caHolding(ctx, enrollment.certname));
  return serial === undefined ? enrollment : { ...enrollment, state: "signed", serial };
}

/**
 * Once the CA has signed the CSR espm accepted, records its serial with the certificate record
 * (which recognises the certificate by the CSR's public key) and with the enrollment. Returns the
 * record as it is now. A writer: the sweep calls it.
 */
export async function learnSerial(ctx: AgentContext, enrollment: EnrollmentRecord): Promise<EnrollmentRecord> {
  if (enrollment.state !== "used" || !ctx.ca) return enrollment;
  const holding = await caHolding(ctx, enrollment.certname);
  const serial = signedSerial(enrollment, holding);
  if (serial === undefined) return enrollment;
  await recordLearnedSerial(ctx, holding);
  await ctx.store.updateEnrollment(enrollment.id, { state: "signed", serial }, now());
  return (await ctx.store.liveEnrollment(enrollment.certname)) ?? enrollment;
}

/**
 * Revokes and cleans what the CA holds for an enrolled name (the certificate signed through the
 * enrollment, or a pending request presented for it), then revokes the enrollment, so that an
 * unused token signs nothing. Idempotent.
 */
export async function revokeEnrollment(
  ctx: AgentContext,
  enrollment: EnrollmentRecord,
  actor: string,
): Promise<string> {
  let outcome = "token invalidated";
  if (ctx.ca) {
    const { held, mine } = await caHolding(ctx, enrollment.certname);
    if (held.state === "requested" || (held.state !== "absent" && mine)) {
      await ctx.ca.clean(enrollment.certname);
      outcome = held.state === "requested" ? "pending request cleaned" : `certificate ${held.serial ?? ""} revoked`;
    }
  }
  await ctx.store.transaction(async (tx) => {
    const at = now();
    if (enrollment.publicKey && (await tx.certificate(enrollment.certname))?.state !== "revoked")
      await tx.recordCertificateRevoked(enrollment.certname, at);
    await tx.updateEnrollment(enrollment.id, { state: "revoked" }, at);
    await tx.audit({ actor, action: "enrollment.delete", target: enrollment.certname, outcome }, at);
  });
  return outcome;
}

/** How long espm looks for a refused CSR at the CA after its policy run, to remove it. */
const REFUSED_CLEAN_WINDOW_MS = 10_000;
const REFUSED_CLEAN_POLL_MS = 250;

/**
 * Removes a CSR espm's policy just refused for an enrolled name (no token, another name's, a burned
 * one), once Puppet Server holds it. Puppet's CA lets anyone submit a CSR for any name, and while
 * one is pending it refuses every other CSR for that name, the node's own included; the node's
 * agent resubmits every waitforcert seconds (10 s in the bootstrap), so with the refused request
 * gone within a second or two, its own CSR is decided on its token. Only the request with the
 * refused CSR's public key is removed, never another.
 */
export function cleanRefusedSoon(ctx: AgentContext, certname: string, pem: string, log: SweepLog): void {
  const ca = ctx.ca;
  if (!ca || nameProblem(certname) !== undefined || ctx.policy.refusal(certname)) return;
  let key: string;
  try {
    key = inspectCsr(pem).publicKeySha256;
  } catch {
    return; // Puppet Server does not keep what it cannot read either
  }
  const deadline = Date.now() + REFUSED_CLEAN_WINDOW_MS;
  const look = async (): Promise<void> => {
    const pending = await ca.request(certname);
    let pendingKey: string | undefined;
    try {
      pendingKey = pending === undefined ? undefined : inspectCsr(pending).publicKeySha256;
    } catch {
      pendingKey = "unreadable";
    }
    if (pendingKey === key) {
      await ca.removeRequest(certname);
      await ctx.store.audit(
        {
          actor: "espm autosign",
          action: "enrollment.sweep",
          target: certname,
          outcome: "cleaned",
          detail: "the CSR espm's policy refused, so that it does not block the node's own",
        },
        now(),
      );
      log.info({ certname }, "removed the CSR espm refused for an enrolled name");
      return;
    }
    // Not there yet (Puppet Server answers the submit after the policy), or already replaced.
    if (pendingKey === undefined && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, REFUSED_CLEAN_POLL_MS).unref());
      return look();
    }
  };
  void look().catch((err: Error) =>
    log.warn({ certname, err: err.message }, "could not remove a refused CSR at once; the sweep removes it"),
  );
}

export class EnrollmentSweep {
  /** When the sweep first saw each pending request, by certname, with the request's public key. */
  private readonly firstSeen = new Map<string, { key: string; at: number }>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly ctx: AgentContext,
    private readonly log: SweepLog,
  ) {}

  start(intervalMs: number): void {
    const tick = () => {
      void this.once()
        // A pass never takes the daemon down: whatever it could not do, the next pass tries again.
        .catch((err: Error) => this.log.warn({ err: err.message }, "enrollment sweep failed"))
        .finally(() => {
          if (this.timer) this.timer = setTimeout(tick, intervalMs);
        });
    };
    this.timer = setTimeout(tick, 0);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One pass over the enrolled names; one at a time, and never two passes at once. */
  once(): Promise<void> {
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  /**
   * One list of the CA's pending requests per pass, whatever the number of enrollments; a name is
   * looked at alone only when it has a pending request, or when espm said yes and waits for the serial.
   */
  private async pass(): Promise<void> {
    const ca = this.ctx.ca;
    let enrollments: EnrollmentRecord[];
    try {
      enrollments = await this.ctx.store.liveEnrollments();
    } catch (err) {
      // A store that cannot be read now (PostgreSQL down) is no reason to stop: the next pass retries.
      this.log.warn({ err: (err as Error).message }, "enrollment sweep: cannot read the enrollments");
      return;
    }
    if (!ca || enrollments.length === 0) return;
    let pending: Set<string>;
    try {
      pending = new Set(await ca.pending());
    } catch (err) {
      // Anyone can submit a CSR that makes Puppet Server fail its whole list (a repeated
      // extension answers 500): the sweep must not stop while it stays pending, so it asks the
      // CA about each enrolled name alone.
      this.log.warn(
        { err: (err as Error).message },
        "enrollment sweep: cannot list the CA's pending requests; looking at each enrolled name instead",
      );
      pending = await this.pendingOneByOne(ca, enrollments);
    }
    for (const enrollment of enrollments) {
      try {
        if (pending.has(enrollment.certname)) {
          await this.sweepPending(ca, enrollment);
        } else {
          this.firstSeen.delete(enrollment.certname);
          if (enrollment.state === "used") await learnSerial(this.ctx, enrollment);
        }
      } catch (err) {
        this.log.warn({ certname: enrollment.certname, err: (err as Error).message }, "enrollment sweep failed");
      }
    }
  }

  private async pendingOneByOne(ca: CertificateAuthority, enrollments: EnrollmentRecord[]): Promise<Set<string>> {
    const pending = new Set<string>();
    for (const { certname } of enrollments) {
      try {
        if ((await ca.status(certname)).state === "requested") pending.add(certname);
      } catch (err) {
        this.log.warn({ certname, err: (err as Error).message }, "enrollment sweep: cannot read the name's state");
      }
    }
    return pending;
  }

  private async sweepPending(ca: CertificateAuthority, enrollment: EnrollmentRecord): Promise<void> {
    const { certname } = enrollment;
    const pem = await ca.request(certname);
    if (pem === undefined) return;
    let key: string;
    try {
      key = inspectCsr(pem).publicKeySha256;
    } catch {
      key = "unreadable";
    }
    const seen = this.firstSeen.get(certname);
    if (!seen || seen.key !== key) {
      this.firstSeen.set(certname, { key, at: Date.now() });
      return;
    }
    if (Date.now() - seen.at < PENDING_GRACE_MS) return;
    this.firstSeen.delete(certname);

    if (enrollment.state === "used" && enrollment.publicKey === key) {
      await ca.sign(certname);
      await this.audit(certname, "signed", "a pending request espm had accepted, which no policy run signed");
      await learnSerial(this.ctx, enrollment);
      return;
    }
    if (enrollment.state === "issued") {
      const answer = await decide(this.ctx, certname, pem, "espm sweep");
      if (answer.decision === "sign") {
        await ca.sign(certname);
        await this.audit(certname, "signed", "a pending request no policy run decided, accepted now");
        await learnSerial(this.ctx, (await this.ctx.store.liveEnrollment(certname))!);
        return;
      }
      if (answer.decision === "refuse" && answer.undecided) return;
    }
    await ca.removeRequest(certname);
    await this.audit(certname, "cleaned", "a pending request espm refused, so that the name is not stranded");
  }

  private async audit(certname: string, outcome: string, detail: string): Promise<void> {
    await this.ctx.store.audit(
      { actor: "espm sweep", action: "enrollment.sweep", target: certname, outcome, detail },
      now(),
    );
    this.log.info({ certname, outcome }, detail);
  }
}
