/**
 * PuppetCertificate's lifecycle: what the dynamic-provider host (through the runtime module) and the
 * provider plugin run for it. The program loads only the resource class (./certificate), which
 * declares the resource, and so none of this: not its input schema (zod), not espm's client.
 */
import type * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import type { EspmClient } from "espm-sdk/client";
import { schemas } from "espm-sdk/protocol";
import { describeCertificate, generateKeyPairAsync, KEY_TYPES, normalizeSerial } from "espm-sdk/keys";
import { PUPPET_EXTENSIONS } from "espm-sdk/puppet-extensions";
import { caBundleChanged, caOutputs, caOutputsKept } from "./ca-trust";
import { connectionSchema } from "./connection-schema";
import { withClient } from "./connection";
import {
  changedProperties,
  checkWith,
  defined,
  initFailed,
  inputSchemaOnce,
  messageOf,
  nothingWasDone,
  removedAtEspm,
} from "./lifecycle";
import { type Lifecycle } from "./thin-provider";
import type { StackSettings } from "./settings";
import type { CertificateKeyType, CertificateState } from "./certificate";

/**
 * ECDSA P-256: Puppet 7.23 and 8.10 agents boot with it in the first-boot suite, it is made in well
 * under a millisecond where RSA-2048 takes tens, and its key is a seventh of the userdata's size.
 * A certificate made before this default keeps its recorded key type (see check): no replacement.
 */
const DEFAULT_KEY_TYPE: CertificateKeyType = "ec-p256";
/** Every other input replaces: a new key, name or extension needs a new certificate. */
const REPLACING = ["certname", "keyType", "extensions"] as const;

const inputSchema = inputSchemaOnce(() => {
  const known = Object.keys(PUPPET_EXTENSIONS);
  return z.strictObject({
    certname: schemas.name,
    keyType: z
      .string()
      .refine((value) => (KEY_TYPES as readonly string[]).includes(value), {
        error: (issue) =>
          `unknown key type ${JSON.stringify(issue.input)}: use rsa-2048, rsa-3072, rsa-4096 or ec-p256`,
      })
      .default(DEFAULT_KEY_TYPE),
    extensions: z
      .record(z.string(), z.string().min(1).max(255))
      .superRefine((value, ctx) => {
        for (const name of Object.keys(value)) {
          if (!known.includes(name))
            ctx.addIssue({
              code: "custom",
              path: [name],
              message: `unknown Puppet extension; known: ${known.join(", ")}`,
            });
        }
      })
      .default({}),
    includeCrl: z.boolean().default(true),
    includeCaBundle: z.boolean().default(true),
    connection: connectionSchema().optional(),
  });
});

export const certificateLifecycle = {
  inputSchema,
  replacing: REPLACING,

  async check(olds: Record<string, unknown>, news: Record<string, unknown>): Promise<pulumi.dynamic.CheckResult> {
    // Without a keyType, a certificate that exists keeps the one it was made with (RSA-2048, when
    // it came from a version whose default that was), so a new default replaces nothing.
    const kept = news.keyType === undefined && typeof olds.keyType === "string" ? { keyType: olds.keyType } : {};
    const result = checkWith(inputSchema(), { ...news, ...kept });
    return result.failures.length ? { failures: result.failures } : { inputs: result.inputs };
  },

  async diff(_id: string, olds: CertificateState, news: CertificateState): Promise<pulumi.dynamic.DiffResult> {
    const replaces = changedProperties({ ...olds }, { ...news }, REPLACING);
    // A refresh found the certificate revoked or superseded at the CA, or a create was recorded
    // half-made (no key, no certificate): only a new one helps, and the old one goes first.
    if (olds.state !== "signed" || !olds.privateKeyPem || !olds.certificatePem) replaces.push("state");
    // A certificate stored before `includeCrl` existed holds its CRL, as `true` does.
    const crlChanged = (olds.includeCrl ?? true) !== (news.includeCrl ?? true);
    return {
      changes: replaces.length > 0 || crlChanged || caBundleChanged(olds, news),
      replaces,
      deleteBeforeReplace: true,
    };
  },

  async create(
    inputs: CertificateState,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.CreateResult<CertificateState>> {
    return withClient(inputs.connection, settings?.espm, async (client) => {
      // The CSR builder (ASN.1 schemas) loads here, in a create, not in every provider host and preview.
      const [{ privateKeyPem }, { createCsr }] = await Promise.all([
        generateKeyPairAsync(inputs.keyType),
        import("espm-sdk/x509"),
      ]);
      const csr = createCsr(inputs.certname, privateKeyPem, inputs.extensions);
      try {
        const issued = await client.signCertificate(inputs.certname, csr);
        const summary = describeCertificate(issued.certificate);
        if (summary.serial !== normalizeSerial(issued.serial))
          throw new Error(`espm answered serial ${issued.serial}, but the certificate's is ${summary.serial}`);
        const outs: CertificateState = {
          ...inputs,
          certificatePem: issued.certificate,
          privateKeyPem,
          ...caOutputs(issued.caCertificate, inputs.includeCaBundle),
          crlPem: inputs.includeCrl === false ? "" : issued.crl,
          serial: summary.serial,
          notAfter: summary.notAfter,
          state: "signed",
        };
        return { id: inputs.certname, outs };
      } catch (error) {
        if (nothingWasDone(error)) {
          throw new Error(`signing a certificate for ${inputs.certname} through espm failed: ${messageOf(error)}`);
        }
        throw await revokeAfter(error, inputs, client);
      }
    });
  },

  async read(
    id: string,
    state: CertificateState,
    settings: StackSettings | undefined,
  ): Promise<pulumi.dynamic.ReadResult<CertificateState>> {
    return withClient(state.connection, settings?.espm, async (client) => {
      const status = await client.certificateStatus(id);
      if (!status || status.state === "absent") return { id: "", props: {} as CertificateState };
      const same = status.serial === undefined || normalizeSerial(status.serial) === state.serial;
      const props = { ...state, ...caOutputsKept(state, state.includeCaBundle) };
      return { id, props: defined({ ...props, state: same ? status.state : "superseded" }) };
    });
  },

  async update(
    _id: string,
    olds: CertificateState,
    news: CertificateState,
  ): Promise<pulumi.dynamic.UpdateResult<CertificateState>> {
    // Only `connection`, `includeCrl` and `includeCaBundle` change without a replacement; the
    // certificate itself stays, and so do the CRL it was signed with and the CA bundle, unless they
    // are no longer wanted.
    const crlPem = news.includeCrl === false ? "" : olds.crlPem;
    const ca = caOutputsKept(olds, news.includeCaBundle);
    return { outs: defined({ ...olds, ...ca, connection: news.connection, includeCrl: news.includeCrl, crlPem }) };
  },

  async delete(id: string, state: CertificateState, settings: StackSettings | undefined): Promise<void> {
    await withClient(state.connection, settings?.espm, (client) =>
      // Revoke and clean at the CA; espm answers 204 when it is already gone, and 404 when it
      // never signed one of this name (a create recorded half-made that never reached the CA).
      removedAtEspm(() => client.revokeCertificate(id), `revoking the certificate of ${id} through espm failed`),
    );
  },
} satisfies Lifecycle<CertificateState>;

/** After a sign that may have acted: revoke what espm may have signed, or keep it in state. */
async function revokeAfter(error: unknown, inputs: CertificateState, client: EspmClient): Promise<Error> {
  try {
    await client.revokeCertificate(inputs.certname);
    return new Error(
      `signing a certificate for ${inputs.certname} through espm failed, and nothing was left behind: ${messageOf(error)}`,
    );
  } catch {
    // The key is not kept: without its certificate it is of no use, and the next up replaces this one.
    return initFailed(
      `signing a certificate for ${inputs.certname} through espm failed and one may exist; it is kept in state so the next up replaces it and destroy revokes it: ${messageOf(error)}`,
      inputs.certname,
      inputs,
      { state: "unknown" },
    );
  }
}
