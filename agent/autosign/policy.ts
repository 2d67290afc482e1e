/**
 * The autosign decision for nodes that make their own keys. A CSR is signed when it carries, in its
 * challengePassword, a token espm issued for that certname, unused and unexpired; when the name passes
 * the certname policy; when the CSR reads the way Puppet reads it (one CN, the certname; a SAN of
 * only DNS:<certname>; proof of possession); and when it asks for no extension but those the
 * enrollment allows (and pp_instance_id, the node's own claim).
 *
 * A token is burned the first time it is presented, whatever the decision: a refused CSR stays
 * pending at the CA, where anyone may read it, challengePassword included. The decision, the CSR's
 * public key and the burn are one transaction, so two policy runs racing for one token cannot both win.
 */
import { createHash, randomBytes } from "node:crypto";
import { nameProblem } from "espm-sdk/names";
import { puppetExtensionName } from "espm-sdk/puppet-extensions";
import { summaryProblem, inspectCsr, SUBJECT_ALT_NAME_OID, type CsrSummary } from "../ca/csr";
import { now, type AgentContext } from "../http/context";
import type { EnrollmentRecord, StoreOps } from "../store/store";

export type AutosignAnswer =
  | { decision: "sign" }
  /** `undecided`: espm cannot answer yet (nothing was burned); the sweep decides later. */
  | { decision: "refuse"; reason: string; undecided?: true }
  /** espm never enrolled the name: the fallback policy, if any, decides. */
  | { decision: "not_enrolled" };

/** A new token: 256 random bits as hex, which fits a PrintableString challengePassword. */
export function newToken(): string {
  return randomBytes(32).toString("hex");
}

export function tokenHash(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/**
 * Why a CSR presented with an issued token must not be signed, or undefined when it may; `refusal`
 * is the certname policy's answer for the name, already asked.
 */
async function problemWith(
  ctx: AgentContext,
  tx: StoreOps,
  enrollment: EnrollmentRecord,
  certname: string,
  csr: CsrSummary,
  refusal: ReturnType<AgentContext["policy"]["refusal"]>,
) {
  if (Date.parse(enrollment.expiresAt) <= Date.now()) return `the enrollment token expired at ${enrollment.expiresAt}`;
  if (enrollment.certname !== certname)
    return `the enrollment token is for ${enrollment.certname}, not for ${certname}`;
  if (!(await tx.liveNode(certname))) return `${certname} is no longer registered with espm`;
  if (refusal) return `refused by the certname policy (${refusal.rule}): ${refusal.message}`;
  const problem = summaryProblem(csr, certname);
  if (problem) return `the CSR is refused: ${problem}`;
  for (const oid of csr.extensions) {
    if (oid === SUBJECT_ALT_NAME_OID) continue; // checked by summaryProblem
    const name = puppetExtensionName(oid);
    if (name === "pp_instance_id") continue;
    if (!name || !(name in enrollment.extensions))
      return `the CSR asks for extension ${name ?? oid}, which the enrollment does not allow (allowed: ${Object.keys(enrollment.extensions).join(", ") || "none"}, and pp_instance_id)`;
    if (csr.extensionValues[oid] !== enrollment.extensions[name])
      return `the CSR asks for ${name} = ${JSON.stringify(csr.extensionValues[oid] ?? null)}; the enrollment allows ${JSON.stringify(enrollment.extensions[name])}`;
  }
  return undefined;
}

/**
 * Decides on a CSR presented for certname. Whether the token is burned depends on one thing only:
 * whether it was presented (and was still unused). The one exception is a certname policy that
 * cannot answer yet (Puppet Server's names unknown): then nothing is decided or burned, and the
 * sweep decides later.
 */
export function decide(ctx: AgentContext, certname: string, pem: string, actor: string): Promise<AutosignAnswer> {
  return ctx.store.transaction(async (tx): Promise<AutosignAnswer> => {
    const at = now();
    const refuse = async (reason: string, enrollment?: EnrollmentRecord): Promise<AutosignAnswer> => {
      if (enrollment) await tx.updateEnrollment(enrollment.id, { state: "refused", reason }, at);
      await tx.audit({ actor, action: "autosign", target: certname, outcome: "refused", detail: reason }, at);
      return { decision: "refuse", reason };
    };
    const nameIssue = nameProblem(certname);
    if (nameIssue) return refuse(`certname ${nameIssue}`);
    let csr: CsrSummary | undefined;
    let unreadable = "";
    try {
      csr = inspectCsr(pem);
    } catch (err) {
      unreadable = (err as Error).message;
    }
    const token = csr?.challengePassword;
    const presented = token === undefined ? undefined : await tx.enrollmentByToken(tokenHash(token));
    if (!presented && !(await tx.everEnrolled(certname))) return { decision: "not_enrolled" };
    if (!csr) return refuse(`the request is not a CSR: ${unreadable}`);
    if (token === undefined)
      return refuse(`the CSR carries no enrollment token: put it in csr_attributes.yaml as challengePassword`);
    if (!presented) return refuse("the CSR's enrollment token is not one espm issued");
    if (presented.state === "revoked")
      return refuse(`the enrollment of ${presented.certname} was revoked; its token signs nothing`);
    if (presented.state !== "issued") {
      return refuse(
        `the enrollment token for ${presented.certname} was already presented (${presented.state}); a token is good for one CSR: replace the PuppetEnrollment for a new one`,
      );
    }
    const refusal = ctx.policy.refusal(certname);
    if (refusal?.unknown) return { decision: "refuse", reason: refusal.message, undecided: true };
    const problem = await problemWith(ctx, tx, presented, certname, csr, refusal);
    if (problem) return refuse(problem, presented);
    await tx.recordCertificateRequested(certname, csr.publicKeySha256, at);
    await tx.updateEnrollment(presented.id, { state: "used", publicKey: csr.publicKeySha256 }, at);
    await tx.audit(
      {
        actor,
        action: "autosign",
        target: certname,
        outcome: "sign",
        detail: `key ${csr.publicKeySha256.slice(0, 16)}`,
      },
      at,
    );
    return { decision: "sign" };
  });
}
