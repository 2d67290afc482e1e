/**
 * Whether espm may act on a name: the one gate every route that names a node passes before it
 * acts (nodes, certificates, enrollments, runs; every verb). `espm enc` applies its policy half
 * (enc/enc.ts, with the same CertnamePolicy), so a name the gate refuses is never classified either.
 *
 * A name is judged three ways, always as things are now, never as they were at create:
 * - the certname policy (certname-policy.ts): Puppet's own names, the deny list, the patterns;
 * - whether it is a live registration of espm's;
 * - whether someone else holds it: the CA (a certificate or request espm did not make), the site's
 *   fallback ENC, PuppetDB (an active node).
 *
 * | verb     | policy now | espm's registration | nobody else holds it          |
 * |----------|------------|---------------------|-------------------------------|
 * | register | yes        | none live           | CA, fallback ENC, PuppetDB    |
 * | change   | yes        | live                |                               |
 * | certify  | yes        | live                | CA                            |
 * | read     |            | live                |                               |
 * | delete   |            | ever made           |                               |
 * | record   |            |                     |                               |
 *
 * `record` is for what acts only on a record espm made itself (a certificate's state or revoke, an
 * enrollment's state or delete): the route finds its record or answers 404. Revoking is always
 * allowed, so that what was issued for a name the policy no longer allows can still be ended.
 *
 * A certificate or an enrollment is issued only for a live registration, which was itself admitted
 * only when the fallback ENC and PuppetDB did not know the name; asking them again at signing
 * would refuse the node's own re-sign once its first run made it active in PuppetDB. A row the
 * policy refuses now (a store older than the policy, or patterns narrowed since) can be read and
 * deleted, never changed, certified or classified.
 */
import type { Node } from "espm-sdk/protocol";
import { caHolding } from "./holding";
import type { AgentContext } from "../http/context";
import { classifiesNode, runFallbackEnc } from "../enc/fallback";
import { ApiError, checkAllowed, checkName } from "../http/errors";

export type Verb = "register" | "change" | "certify" | "read" | "delete" | "record";

/** How long a create waits for the fallback ENC's answer before it refuses to guess (503). */
export const FALLBACK_TIMEOUT_MS = 5000;

export interface Admission {
  name: string;
  /** The live registration (change, certify, read; delete when there is one). */
  node?: Node;
  /** What the CA holds for the name, when the verb asked it (register and certify, with a CA). */
  holding?: Awaited<ReturnType<typeof caHolding>>;
}

/**
 * Admits `verb` on the name from the URL or body, or throws the refusal: 400 for a malformed name,
 * 403 naming the policy's rule, 404 for a name espm does not hold, 409 for a name someone else
 * holds, 422 for a certificate or enrollment of an unregistered name, 503 when a judge cannot answer.
 */
export async function admit(ctx: AgentContext, verb: Verb, raw: string, field: string): Promise<Admission> {
  const name = checkName(raw, field);
  if (verb === "record") return { name };
  if (verb === "register" || verb === "change" || verb === "certify") checkAllowed(ctx.policy, name, field);
  const node = await ctx.store.liveNode(name);
  switch (verb) {
    case "register": {
      if (node)
        throw new ApiError("conflict", `a node named ${name} already exists; delete it first or choose another name`, [
          { field, message: "already registered" },
        ]);
      // The site's own classifiers first: a name they know never reaches the CA, not even as a lookup.
      await checkFallbackEnc(ctx, name, field);
      await checkPuppetDb(ctx, name, field);
      const holding = ctx.ca ? await caHolding(ctx, name) : undefined;
      if (holding?.foreign)
        throw new ApiError("conflict", holding.foreign, [{ field, message: "held by the CA for another owner" }]);
      return { name, holding };
    }
    case "certify": {
      if (!node)
        throw new ApiError(
          "unprocessable",
          `espm has no node ${name}: register it (PuppetNodeRegistration, POST /v1/nodes) before espm signs or enrolls it; espm issues certificates only for its own live registrations`,
          [{ field, message: "not registered" }],
        );
      const holding = ctx.ca ? await caHolding(ctx, name) : undefined;
      if (holding?.foreign) throw new ApiError("conflict", holding.foreign, [{ field, message: "held at the CA" }]);
      return { name, node, holding };
    }
    case "change":
    case "read":
      if (!node) throw new ApiError("not_found", `espm has no node named ${name}`);
      return { name, node };
    case "delete":
      if (!node && !(await ctx.store.everCreatedNode(name)))
        throw new ApiError("not_found", `espm has no node named ${name}`);
      return { name, node };
  }
}

/**
 * Refuses a name the site's own ENC already classifies: espm never takes a node over. An ENC that
 * fails or gives no answer is "unknown", never "free": a 503 the caller may retry.
 */
async function checkFallbackEnc(ctx: AgentContext, name: string, field: string): Promise<void> {
  const fallback = ctx.config.classifier.fallback_enc;
  if (!fallback) return;
  const answer = await runFallbackEnc(fallback, name, FALLBACK_TIMEOUT_MS);
  if (answer.timedOut) {
    throw new ApiError(
      "backend_unavailable",
      `the fallback ENC ${fallback} gave no answer for ${name} within ${FALLBACK_TIMEOUT_MS / 1000} s, so espm cannot tell whether another classifier owns it; retry later`,
    );
  }
  if (answer.exitCode !== 0) {
    const said = answer.stderr.trim().split("\n").slice(-1)[0]?.slice(0, 200);
    throw new ApiError(
      "backend_unavailable",
      `the fallback ENC ${fallback} failed for ${name} (exit ${answer.exitCode}${said ? `: ${said}` : ""}), so espm cannot tell whether another classifier owns it; fix the ENC or retry later`,
    );
  }
  if (classifiesNode(answer)) {
    throw new ApiError(
      "conflict",
      `the fallback ENC ${fallback} already classifies ${name}; espm never takes over a node another classifier knows. Choose another name, or remove the node from that classifier`,
      [{ field, message: "classified by the fallback ENC" }],
    );
  }
}

/** Refuses a name PuppetDB knows as an active node: someone else's machine reports under it. */
async function checkPuppetDb(ctx: AgentContext, name: string, field: string): Promise<void> {
  if (!ctx.puppetdb) return;
  if ((await ctx.puppetdb.node(name)) === "active") {
    throw new ApiError(
      "conflict",
      `PuppetDB at ${ctx.puppetdb.url} knows ${name} as an active node; espm never takes over a node another classifier knows. Choose another name, or deactivate the node in PuppetDB (puppet node deactivate ${name}) if that machine is gone`,
      [{ field, message: "active in PuppetDB" }],
    );
  }
}
