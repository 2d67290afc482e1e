/**
 * /v1/certificates/:certname: sign a CSR through the CA, report its state, revoke and clean it,
 * only ever for a certificate espm asked for itself (see ca/holding.ts). A sign passes the gate
 * (ca/gate.ts) as `certify`: the certname policy now, and a live registration of espm's for the name,
 * so a PSK holder cannot get a certificate for a name it never registered or could not register.
 */
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { describeCertificate } from "espm-sdk/x509";
import { certificatePublicKeySha256, readCsr } from "../ca/csr";
import { IDEMPOTENCY_HEADER, schemas, type CertificateIssued, type CertificateStatus } from "espm-sdk/protocol";
import { BackendError, CaRefusal, type CertificateAuthority } from "../puppetserver/contract";
import { ApiError, checkName, parseInput } from "../http/errors";
import { actor, auditEntry, now, type AgentContext, type RouteOptions } from "../http/context";
import { caHolding, requireCa, revokeCertificate } from "../ca/holding";
import { admit } from "../ca/gate";

type Params = { Params: { certname: string } };

export const certificateRoutes: FastifyPluginAsync<RouteOptions> = async (app, { ctx }) => {
  app.post("/v1/certificates/:certname", async (request: FastifyRequest<Params>, reply) => {
    const certname = checkName(request.params.certname, "certname");
    const { csr } = parseInput(schemas.signRequest, request.body, "certificate request");
    const read = readCsr(csr, certname);
    if (read.problem !== undefined)
      throw new ApiError("invalid_request", `csr: ${read.problem}`, [{ field: "csr", message: read.problem }]);
    const publicKey = read.publicKeySha256;
    const ca = requireCa(ctx);
    const outcome = await ctx.idempotency.run(
      {
        key: request.headers[IDEMPOTENCY_HEADER] as string | undefined,
        scope: `POST /v1/certificates/${certname}`,
        body: request.body,
      },
      async (remember) => {
        const { held, mine } = (await admit(ctx, "certify", certname, "certname")).holding!;
        if (held.state === "signed") {
          throw new ApiError(
            "conflict",
            `espm already holds a signed certificate for ${certname}; delete it first (DELETE /v1/certificates/${certname})`,
          );
        }
        // A pending request or revoked certificate of ours (a crash between submit and sign, or a
        // revoke without clean) would make Puppet Server ignore the new CSR: remove it first.
        if (mine) await ca.clean(certname);

        await ctx.store.transaction(async (tx) => {
          await tx.recordCertificateRequested(certname, publicKey, now());
          await tx.audit(
            auditEntry(request, { action: "certificate.request", target: certname, outcome: "submitting" }),
            now(),
          );
        });
        let submitted = false;
        let fetched: [string, string, string];
        try {
          // Marked as espm's own, so the autosign wrapper refuses it at once (signing-marks.ts).
          const submit = () => ca.submit(certname, csr);
          await (ctx.signingMarks ? ctx.signingMarks.whileSubmitting(certname, submit) : submit());
          submitted = true;
          await ca.sign(certname);
          fetched = await Promise.all([ca.certificate(certname), ca.caBundle(), ca.crl()]);
        } catch (err) {
          await ctx.store.audit(
            auditEntry(request, {
              action: "certificate.sign",
              target: certname,
              outcome: "failed",
              detail: (err as Error).message,
            }),
            now(),
          );
          // The CA keeps a refused request pending, which would block the name: remove ours.
          // (The server answers the refusal as the caller's error: 409 or 422 with the CA's reason.)
          if (err instanceof CaRefusal) await removeOurPending(ctx, ca, certname);
          // A 503 promises the caller that nothing was done; after a submit a request is pending at the CA.
          if (submitted && err instanceof BackendError && err.status === 503)
            throw new BackendError(
              502,
              `${err.message} (after espm submitted the CSR; the next attempt removes the pending request)`,
            );
          throw err;
        }
        const [certificate, caCertificate, crl] = fetched;
        if (certificatePublicKeySha256(certificate) !== publicKey) {
          throw new BackendError(
            502,
            `the Puppet CA returned a certificate for ${certname} that does not carry the submitted CSR's key; espm does not pass it on`,
          );
        }
        const { serial, notAfter } = describeCertificate(certificate);
        const issued: CertificateIssued = { certname, certificate, caCertificate, crl, serial, notAfter };
        await ctx.store.transaction(async (tx) => {
          await tx.recordCertificateSigned(certname, serial, notAfter, now());
          await remember(tx, { status: 201, body: issued });
          await tx.audit(
            auditEntry(request, {
              action: "certificate.sign",
              target: certname,
              outcome: "signed",
              detail: `serial ${serial}`,
            }),
            now(),
          );
        });
        return { status: 201, body: issued };
      },
    );
    return reply.code(outcome.status).send(outcome.body);
  });

  app.get("/v1/certificates/:certname", async (request: FastifyRequest<Params>): Promise<CertificateStatus> => {
    const { name: certname } = await admit(ctx, "record", request.params.certname, "certname");
    requireCa(ctx);
    if (!(await ctx.store.certificate(certname)))
      throw new ApiError("not_found", `espm has no certificate for ${certname}`);
    // A question only: a serial espm has not recorded yet is answered from the CA, not written here.
    const { held, ours, mine } = await caHolding(ctx, certname);
    // After a clean the CA forgets the certificate; espm still knows it revoked it.
    if (held.state === "absent" && ours?.state === "revoked")
      return { certname, state: "revoked", serial: ours.serial ?? undefined, notAfter: ours.notAfter ?? undefined };
    if (held.serial !== undefined && !mine) return { certname, state: "absent" };
    return { certname, state: held.state, serial: held.serial, notAfter: held.notAfter };
  });

  app.delete("/v1/certificates/:certname", async (request: FastifyRequest<Params>, reply) => {
    const { name: certname } = await admit(ctx, "record", request.params.certname, "certname");
    const ca = requireCa(ctx);
    const ours = await ctx.store.certificate(certname);
    if (!ours)
      throw new ApiError(
        "not_found",
        `espm has no certificate for ${certname}; it revokes only certificates it signed`,
      );
    await revokeCertificate(ctx, ca, ours, actor(request));
    return reply.code(204).send();
  });
};

/** Removes the pending request espm just submitted (never anyone else's), after the CA refused to sign it. */
async function removeOurPending(ctx: AgentContext, ca: CertificateAuthority, certname: string): Promise<void> {
  try {
    const { held, mine } = await caHolding(ctx, certname);
    if (held.state === "requested" && mine) await ca.clean(certname);
  } catch {
    // The next attempt finds the request by its key and removes it then.
  }
}
