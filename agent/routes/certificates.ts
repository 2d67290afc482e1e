/**
 * /v1/certificates/:certname: sign a CSR through the CA, report its state, revoke and clean it.
 * espm only ever touches certificates it asked for itself: the store records each request before
 * the CSR is submitted, so even a crash between submit and sign leaves a trace that frees the name.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { describeCertificate, csrProblem } from "../../sdk/x509";
import { IDEMPOTENCY_HEADER, protocol, type CertificateIssued, type CertificateStatus } from "../../sdk/protocol";
import type { CertificateAuthority } from "../ca";
import { ApiError, checkName, parseInput } from "../http";
import { auditEntry, now, type AgentContext } from "../context";

type Params = { Params: { certname: string } };

function requireCa(ctx: AgentContext): CertificateAuthority {
  if (!ctx.ca) {
    throw new ApiError("backend_unavailable", "no certificate authority is configured: add a [puppetserver] section to espm.ini and restart espm");
  }
  return ctx.ca;
}

/**
 * What the CA holds for this name and whether it is espm's. A pending request espm recorded is
 * espm's; a certificate is espm's when its serial is the one espm recorded. `foreign` says why the
 * holding is not espm's, and is undefined when the CA holds nothing or only what espm made.
 */
export async function caHolding(ctx: AgentContext, certname: string) {
  const held = await requireCa(ctx).status(certname);
  const ours = ctx.store.certificate(certname);
  const isOurs = ours !== undefined && (ours.state === "requested" || (held.serial !== undefined && ours.serial === held.serial));
  let foreign: string | undefined;
  if (held.state !== "absent" && !isOurs) {
    const what = held.state === "requested" ? "a pending certificate request" : `a ${held.state} certificate`;
    foreign = `the Puppet CA holds ${what} for ${certname} that espm did not make; clean it on the Puppet server (puppetserver ca clean --certname ${certname}) or choose another name`;
  }
  return { held, ours, foreign };
}

export function certificateRoutes(app: FastifyInstance, ctx: AgentContext): void {
  const p = protocol();

  app.post("/v1/certificates/:certname", async (request: FastifyRequest<Params>, reply) => {
    const certname = checkName(request.params.certname, "certname");
    const { csr } = parseInput(p.signRequest, request.body, "certificate request");
    const ca = requireCa(ctx);
    const outcome = await ctx.idempotency.run(
      { key: request.headers[IDEMPOTENCY_HEADER] as string | undefined, scope: `POST /v1/certificates/${certname}`, body: request.body },
      async (remember) => {
        const problem = csrProblem(csr, certname);
        if (problem) throw new ApiError("invalid_request", `csr: ${problem}`, [{ field: "csr", message: problem }]);

        const { held, ours, foreign } = await caHolding(ctx, certname);
        if (foreign) throw new ApiError("conflict", foreign, [{ field: "certname", message: "held by the CA for another owner" }]);
        if (held.state === "signed") {
          throw new ApiError("conflict", `espm already holds a signed certificate for ${certname}; delete it first (DELETE /v1/certificates/${certname})`);
        }
        // A pending request or revoked certificate of ours (a crash between submit and sign, or a
        // revoke without clean) would make Puppet Server ignore the new CSR: clean it first.
        if (held.state !== "absent" && ours) await ca.clean(certname);

        ctx.store.transaction(() => {
          ctx.store.recordCertificateRequested(certname, now());
          ctx.store.audit(auditEntry(request, { action: "certificate.request", target: certname, outcome: "submitting" }), now());
        });
        try {
          await ca.submit(certname, csr);
          await ca.sign(certname);
        } catch (err) {
          ctx.store.audit(auditEntry(request, { action: "certificate.sign", target: certname, outcome: "failed", detail: (err as Error).message }), now());
          throw err;
        }
        const [certificate, caCertificate, crl] = await Promise.all([ca.certificate(certname), ca.caBundle(), ca.crl()]);
        const { serial, notAfter } = describeCertificate(certificate);
        const issued: CertificateIssued = { certname, certificate, caCertificate, crl, serial, notAfter };
        ctx.store.transaction(() => {
          ctx.store.recordCertificateSigned(certname, serial, notAfter, now());
          remember({ status: 201, body: issued });
          ctx.store.audit(auditEntry(request, { action: "certificate.sign", target: certname, outcome: "signed", detail: `serial ${serial}` }), now());
        });
        return { status: 201, body: issued };
      },
    );
    return reply.code(outcome.status).send(outcome.body);
  });

  app.get("/v1/certificates/:certname", async (request: FastifyRequest<Params>): Promise<CertificateStatus> => {
    const certname = checkName(request.params.certname, "certname");
    const ca = requireCa(ctx);
    const ours = ctx.store.certificate(certname);
    if (!ours) throw new ApiError("not_found", `espm has no certificate for ${certname}`);
    const held = await ca.status(certname);
    // After a clean the CA forgets the certificate; espm still knows it revoked it.
    if (held.state === "absent" && ours.state === "revoked") return { certname, state: "revoked", serial: ours.serial ?? undefined, notAfter: ours.notAfter ?? undefined };
    if (held.serial !== undefined && ours.serial !== held.serial) return { certname, state: "absent" };
    return { certname, state: held.state, serial: held.serial, notAfter: held.notAfter };
  });

  app.delete("/v1/certificates/:certname", async (request: FastifyRequest<Params>, reply) => {
    const certname = checkName(request.params.certname, "certname");
    const ca = requireCa(ctx);
    const ours = ctx.store.certificate(certname);
    if (!ours) throw new ApiError("not_found", `espm has no certificate for ${certname}; it revokes only certificates it signed`);
    if (ours.state !== "revoked") {
      const held = await ca.status(certname);
      const stillOurs = held.state !== "absent" && (ours.state === "requested" || held.serial === ours.serial);
      if (stillOurs) await ca.clean(certname);
      ctx.store.transaction(() => {
        ctx.store.recordCertificateRevoked(certname, now());
        ctx.store.audit(auditEntry(request, { action: "certificate.revoke", target: certname, outcome: stillOurs ? "revoked" : "already gone", detail: ours.serial ? `serial ${ours.serial}` : undefined }), now());
      });
    }
    return reply.code(204).send();
  });
}
