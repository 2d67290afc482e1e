/**
 * /v1/enrollments/:certname: one-time tokens for registered nodes that make their own keys. An
 * enrollment passes the gate (ca/gate.ts) as `certify`: only a live registration of espm's that the
 * certname policy allows now, and that no one else holds at the CA, gets a token. The
 * token is in the answer to the POST and nowhere else: espm keeps only its hash (so a create is
 * never replayed from an Idempotency-Key record, which would have to keep the token). A new POST
 * for a name whose token is still unused invalidates that token and issues another, so a create
 * whose answer was lost can simply be retried.
 */
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { schemas, type Enrollment, type EnrollmentIssued } from "espm-sdk/protocol";
import { newToken, tokenHash } from "../autosign/policy";
import { requireCa } from "../ca/holding";
import { actor, auditEntry, now, type AgentContext, type RouteOptions } from "../http/context";
import { enrollmentNow, revokeEnrollment } from "../enrollment/enrollments";
import { admit } from "../ca/gate";
import { ApiError, parseInput } from "../http/errors";
import { checkEnrollmentQuota } from "../http/quotas";
import type { EnrollmentRecord } from "../store/store";

type Params = { Params: { certname: string } };

function view(enrollment: EnrollmentRecord): Enrollment {
  const expired = enrollment.state === "issued" && Date.parse(enrollment.expiresAt) <= Date.now();
  return {
    certname: enrollment.certname,
    state: expired ? "expired" : enrollment.state,
    expiresAt: enrollment.expiresAt,
    extensions: enrollment.extensions,
    serial: enrollment.serial ?? undefined,
    reason: enrollment.reason ?? undefined,
  };
}

function requireAutosign(ctx: AgentContext): void {
  if (!ctx.config.autosign) {
    throw new ApiError(
      "not_configured",
      "policy-based autosigning is not configured: add an [autosign] section to espm.ini (espm-setup writes one), set Puppet Server's autosign to the wrapper `espm puppet-config` writes, and restart espm",
    );
  }
}

function expiry(ttlMinutes: number): string {
  return new Date(Date.now() + ttlMinutes * 60_000).toISOString();
}

export const enrollmentRoutes: FastifyPluginAsync<RouteOptions> = async (app, { ctx }) => {
  app.post("/v1/enrollments/:certname", async (request: FastifyRequest<Params>, reply) => {
    const input = parseInput(schemas.enrollmentRequest, request.body ?? {}, "enrollment");
    requireAutosign(ctx);
    const ca = requireCa(ctx);
    const { name: certname, holding } = await admit(ctx, "certify", request.params.certname, "certname");
    const earlier = await ctx.store.liveEnrollment(certname);
    if (earlier && earlier.state !== "issued") {
      throw new ApiError(
        "conflict",
        `${certname} already has an enrollment whose token was presented (${earlier.state}); delete it first, which revokes what was signed through it`,
        [{ field: "certname", message: `enrollment ${earlier.state}` }],
      );
    }
    if (!earlier) await checkEnrollmentQuota(ctx);
    const { held, mine } = holding!;
    if (held.state !== "absent" && mine && held.state !== "revoked") {
      throw new ApiError(
        "conflict",
        `espm already signed a certificate for ${certname} with a key made elsewhere (a PuppetCertificate); a node uses one key mode: delete that certificate first`,
        [{ field: "certname", message: "certificate already signed" }],
      );
    }
    const caCertificate = await ca.caBundle();
    const token = newToken();
    const issued = await ctx.store.transaction(async (tx) => {
      const at = now();
      if (earlier) await tx.updateEnrollment(earlier.id, { state: "revoked" }, at);
      const record = await tx.insertEnrollment(
        certname,
        tokenHash(token),
        input.extensions,
        expiry(input.ttlMinutes),
        at,
      );
      await tx.audit(
        auditEntry(request, {
          action: "enrollment.create",
          target: certname,
          outcome: "issued",
          detail: `expires ${record.expiresAt}${earlier ? "; replaced an unused token" : ""}`,
        }),
        at,
      );
      return record;
    });
    const body: EnrollmentIssued = { ...view(issued), token, caCertificate };
    return reply.code(201).send(body);
  });

  app.get("/v1/enrollments/:certname", async (request: FastifyRequest<Params>): Promise<Enrollment> => {
    const { name: certname } = await admit(ctx, "record", request.params.certname, "certname");
    const enrollment = await ctx.store.liveEnrollment(certname);
    if (!enrollment) throw new ApiError("not_found", `espm has no enrollment for ${certname}`);
    // A question only: a serial the CA has and espm has not recorded yet is answered, not written.
    return view(await enrollmentNow(ctx, enrollment));
  });

  /** A new time to live for a token not yet presented; a used token keeps what it has. */
  app.put("/v1/enrollments/:certname", async (request: FastifyRequest<Params>): Promise<Enrollment> => {
    const { ttlMinutes } = parseInput(schemas.enrollmentUpdate, request.body, "enrollment update");
    const { name: certname } = await admit(ctx, "change", request.params.certname, "certname");
    const enrollment = await ctx.store.liveEnrollment(certname);
    if (!enrollment) throw new ApiError("not_found", `espm has no enrollment for ${certname}`);
    if (enrollment.state !== "issued") return view(enrollment);
    await ctx.store.transaction(async (tx) => {
      const at = now();
      await tx.updateEnrollment(enrollment.id, { expiresAt: expiry(ttlMinutes) }, at);
      await tx.audit(
        auditEntry(request, { action: "enrollment.update", target: certname, outcome: `ttl ${ttlMinutes} min` }),
        at,
      );
    });
    return view((await ctx.store.liveEnrollment(certname))!);
  });

  app.delete("/v1/enrollments/:certname", async (request: FastifyRequest<Params>, reply) => {
    const { name: certname } = await admit(ctx, "record", request.params.certname, "certname");
    const enrollment = await ctx.store.liveEnrollment(certname);
    if (!enrollment) {
      if (await ctx.store.everEnrolled(certname)) return reply.code(204).send();
      throw new ApiError("not_found", `espm has no enrollment for ${certname}`);
    }
    await revokeEnrollment(ctx, enrollment, actor(request));
    return reply.code(204).send();
  });
};
