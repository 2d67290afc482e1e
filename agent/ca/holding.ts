/**
 * What the Puppet CA holds for a name, and whether it is espm's. espm only ever touches certificates
 * it asked for itself: the store records each request (with the CSR's public key) before the CSR is
 * submitted, so even a crash between submit and sign leaves a trace that frees the name, and a
 * pending request someone else made is never mistaken for espm's. Both the node and the certificate
 * routes ask this before they act.
 */
import { certificatePublicKeySha256, inspectCsr } from "./csr";
import { now, type AgentContext } from "../http/context";
import { ApiError } from "../http/errors";
import type { CaCertificateStatus, CertificateAuthority } from "../puppetserver/contract";
import type { CertificateRecord } from "../store/store";

export function requireCa(ctx: AgentContext): CertificateAuthority {
  if (!ctx.ca) {
    throw new ApiError(
      "not_configured",
      "no certificate authority is configured: add a [puppetserver] section to espm.ini and restart espm",
    );
  }
  return ctx.ca;
}

/**
 * Whether what the CA holds for the name is what espm made: a certificate by the serial espm
 * recorded, or, when espm never learned the serial (killed between the CA's sign and its own
 * record), by the public key of the CSR espm recorded; a pending request by that public key too.
 * (Records from before espm kept keys count as espm's by name, as they always did.)
 */
async function isOurs(
  ca: CertificateAuthority,
  certname: string,
  held: CaCertificateStatus,
  ours: CertificateRecord | undefined,
): Promise<boolean> {
  if (!ours || held.state === "absent") return false;
  if (held.state === "requested") {
    if (ours.state !== "requested") return false;
    if (ours.publicKey === null) return true;
    const pending = await ca.request(certname);
    if (pending === undefined) return false;
    try {
      return inspectCsr(pending).publicKeySha256 === ours.publicKey;
    } catch {
      return false;
    }
  }
  if (held.serial !== undefined && ours.serial === held.serial) return true;
  if (ours.serial !== null || ours.publicKey === null) return false;
  const certificate = await ca.certificate(certname).catch(() => undefined);
  return certificate !== undefined && certificatePublicKeySha256(certificate) === ours.publicKey;
}

/**
 * What the CA holds for this name and whether it is espm's: a question, which writes nothing (a
 * GET asks it too). `foreign` says why the holding is not espm's, and is undefined when the CA holds
 * nothing or only what espm made. A writer that needs espm's record to carry a serial the CA knows
 * and espm never recorded calls recordLearnedSerial with the answer.
 */
export async function caHolding(ctx: AgentContext, certname: string) {
  const ca = requireCa(ctx);
  const held = await ca.status(certname);
  const ours = await ctx.store.certificate(certname);
  const mine = await isOurs(ca, certname, held, ours);
  let foreign: string | undefined;
  if (held.state !== "absent" && !mine) {
    const what = held.state === "requested" ? "a pending certificate request" : `a ${held.state} certificate`;
    foreign = `the Puppet CA holds ${what} for ${certname} that espm did not make; clean it on the Puppet server (puppetserver ca clean --certname ${certname}) or choose another name`;
  }
  return { certname, held, ours, mine, foreign };
}

export type CaHolding = Awaited<ReturnType<typeof caHolding>>;

/**
 * Revokes and cleans espm's certificate for the name at the CA, if the CA still holds it as espm's,
 * and records it revoked. Nothing to do for a certificate espm already revoked.
 */
export async function revokeCertificate(
  ctx: AgentContext,
  ca: CertificateAuthority,
  ours: CertificateRecord,
  actor: string,
): Promise<void> {
  if (ours.state === "revoked" && ours.serial !== null) return;
  const holding = await caHolding(ctx, ours.certname);
  await recordLearnedSerial(ctx, holding);
  const stillOurs = holding.mine;
  if (stillOurs) await ca.clean(ours.certname);
  await ctx.store.transaction(async (tx) => {
    await tx.recordCertificateRevoked(ours.certname, now());
    await tx.audit(
      {
        actor,
        action: "certificate.revoke",
        target: ours.certname,
        outcome: stillOurs ? "revoked" : "already gone",
        detail: ours.serial ? `serial ${ours.serial}` : undefined,
      },
      now(),
    );
  });
}

/**
 * A certificate the CA signed for espm's request, whose serial espm never recorded (a crash between
 * the sign and the record, or a CSR the CA signed through espm's autosign policy): record it, with
 * how espm learned it. Nothing to do otherwise.
 */
export async function recordLearnedSerial(ctx: AgentContext, holding: CaHolding): Promise<void> {
  const { certname, held, ours, mine } = holding;
  if (
    !mine ||
    !ours ||
    ours.serial !== null ||
    held.serial === undefined ||
    (held.state !== "signed" && held.state !== "revoked")
  )
    return;
  // A CSR espm's autosign policy accepted is signed by the CA itself: its serial is learned here too.
  const enrollment = await ctx.store.liveEnrollment(certname);
  const how =
    enrollment?.publicKey && enrollment.publicKey === ours.publicKey
      ? "signed by the CA through its autosign policy, which the enrollment's token allowed"
      : "learned from the CA after an interrupted sign";
  await ctx.store.transaction(async (tx) => {
    await tx.recordCertificateSigned(certname, held.serial!, held.notAfter ?? "", now());
    if (held.state === "revoked") await tx.recordCertificateRevoked(certname, now());
    await tx.audit(
      {
        actor: "espm",
        action: "certificate.sign",
        target: certname,
        outcome: "signed",
        detail: `serial ${held.serial} ${how}`,
      },
      now(),
    );
  });
}
