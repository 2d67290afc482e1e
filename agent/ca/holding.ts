/**
 * What the Puppet CA holds for a name, and whether it is espm's. espm only ever touches certificates
 * it asked for itself: the store records each request (with the CSR's public key) before the CSR is
 * submitted, so even a crash between submit and sign leaves a trace that frees the name, and a
 * pending request someone else made is never mistaken for espm's. Both the node and the certificate
 * routes ask this before they act.
 */
import { certificatePublicKeySha256, inspectCsr } from "../../sdk/x509";
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
 * What the CA holds for this name and whether it is espm's. `foreign` says why the holding is not
 * espm's, and is undefined when the CA holds nothing or only what espm made.
 */
export async function caHolding(ctx: AgentContext, certname: string) {
  const ca = requireCa(ctx);
  const held = await ca.status(certname);
  const ours = await ctx.store.certificate(certname);
  const mine = await isOurs(ca, certname, held, ours);
  await healRecord(ctx, certname, held, ours, mine);
  let foreign: string | undefined;
  if (held.state !== "absent" && !mine) {
    const what = held.state === "requested" ? "a pending certificate request" : `a ${held.state} certificate`;
    foreign = `the Puppet CA holds ${what} for ${certname} that espm did not make; clean it on the Puppet server (puppetserver ca clean --certname ${certname}) or choose another name`;
  }
  return { held, ours, mine, foreign };
}

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
  const { mine: stillOurs } = await caHolding(ctx, ours.certname);
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
 * the sign and the record): record it now, so that status, revoke and the next sign see it as espm's.
 */
async function healRecord(
  ctx: AgentContext,
  certname: string,
  held: CaCertificateStatus,
  ours: CertificateRecord | undefined,
  mine: boolean,
): Promise<void> {
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
