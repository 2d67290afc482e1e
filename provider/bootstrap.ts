/**
 * The userdata that boots an instance into Puppet: the bootstrap script rendered with the node name,
 * the master's address, the CA bundle (or only its fingerprint, when the resource was made with
 * `includeCaBundle: false`), and either the certificate and key issued through espm (the
 * provider key mode) or a PuppetEnrollment's one-time token (the instance key mode, in which the
 * node makes its own key). The result is secret either way: it carries a key or a token.
 */
import * as pulumi from "@pulumi/pulumi";
import { renderUserData, type CloudInitPart, type RenderedUserData, type UserDataInput } from "./userdata";

/** The bootstrap's own options, the user's: hooks, facts, a template, cloud-init parts, installing the agent. */
export type BootstrapCustomization = Pick<
  UserDataInput,
  "before" | "after" | "onFailure" | "facts" | "script" | "installAgent"
> & { cloudConfig?: string | CloudInitPart[] };

/** The CA bundle, or (when it is empty or missing) its fingerprint, for the agent to check the one it downloads. */
export interface CaTrustInputs {
  caCertificatePem?: pulumi.Input<string>;
  caFingerprint?: pulumi.Input<string>;
}

/** The same, known. */
interface CaTrust {
  caCertificatePem?: string;
  caFingerprint?: string;
}

export interface BootstrapUserDataArgs {
  /**
   * A PuppetNodeRegistration, or anything with its `nodeName` (and optionally its `environment`
   * input: without one, the agent takes the environment espm's ENC gives it).
   */
  registration: { nodeName: pulumi.Input<string>; environment?: pulumi.Input<string | undefined> };
  /** The provider key mode: a PuppetCertificate, or anything with its certname and PEM outputs. */
  certificate?: {
    certname: pulumi.Input<string>;
    certificatePem: pulumi.Input<string>;
    privateKeyPem: pulumi.Input<string>;
  } & CaTrustInputs;
  /** The instance key mode (recommended): a PuppetEnrollment, or anything with its outputs. */
  enrollment?: {
    certname: pulumi.Input<string>;
    token: pulumi.Input<string>;
    extensions?: pulumi.Input<Record<string, string> | undefined>;
  } & CaTrustInputs;
  /** The Puppet master's host name or IP address as the instance reaches it. An IP gets a hosts entry for `puppet`. */
  master: pulumi.Input<string>;
  /** Puppet Server's port (default 8140). */
  masterPort?: pulumi.Input<number>;
  /** Instance key mode: how long the agent waits for its certificate (default 600 s). */
  maxWaitForCertSeconds?: pulumi.Input<number>;
  /** POSIX sh run first of all, before puppet is looked for (README: "Bootstrap and userdata"). */
  before?: pulumi.Input<string>;
  /** POSIX sh run after a successful first run. */
  after?: pulumi.Input<string>;
  /** POSIX sh run after a failed first run, with `$ESPM_AGENT_EXIT` and `$ESPM_LOG`. */
  onFailure?: pulumi.Input<string>;
  /** External facts (facts.d/espm.yaml) for the first catalog. */
  facts?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Your own script in place of espm's call of the bootstrap, using the ESPM_* variables. */
  script?: pulumi.Input<string>;
  /** Your own `#cloud-config` (or parts), sent with the script as a MIME multi-part message. */
  cloudConfig?: pulumi.Input<string | CloudInitPart[]>;
  /** `distro` installs puppet-agent from the distribution's packages when the image has none. */
  installAgent?: pulumi.Input<"distro" | "none">;
}

function sameNode(what: string, certname: string, nodeName: string): void {
  if (certname !== nodeName)
    throw new Error(
      `the ${what} is for ${certname}, but the node is registered as ${nodeName}: give the ${what} certname: registration.nodeName`,
    );
}

/** bootstrapUserData's arguments as known values: what the provider plugin's function takes. */
export interface BootstrapInputs extends BootstrapCustomization {
  nodeName: string;
  environment?: string;
  master: string;
  masterPort?: number;
  maxWaitForCertSeconds?: number;
  certificate?: { certname: string; certificatePem: string; privateKeyPem: string } & CaTrust;
  enrollment?: { certname: string; token: string; extensions?: Record<string, string> } & CaTrust;
}

/** The userdata for known values: one key mode, and its certname the node's. */
export function renderBootstrap(input: BootstrapInputs): RenderedUserData {
  const { certificate, enrollment, ...rest } = input;
  if ((certificate === undefined) === (enrollment === undefined))
    throw new Error("bootstrapUserData takes either certificate (provider key mode) or enrollment (instance key mode)");
  if (certificate) {
    const { certname, ...pems } = certificate;
    sameNode("certificate", certname, input.nodeName);
    return renderUserData({ ...rest, ...pems });
  }
  const { certname, token, extensions, caCertificatePem, caFingerprint } = enrollment!;
  sameNode("enrollment", certname, input.nodeName);
  return renderUserData({ ...rest, caCertificatePem, caFingerprint, enrollment: { token, extensions } });
}

/** The rendered userdata (`.base64` for `userDataBase64`, `.bytes` to check EC2's 16 KB limit), as a secret. */
export function bootstrapUserData(args: BootstrapUserDataArgs): pulumi.Output<RenderedUserData> {
  const { registration, certificate, enrollment } = args;
  // Said at once, not later from inside an apply.
  if ((certificate === undefined) === (enrollment === undefined))
    throw new Error("bootstrapUserData takes either certificate (provider key mode) or enrollment (instance key mode)");
  const node = pulumi.all([registration.nodeName, registration.environment, args.master, args.masterPort]);
  // pulumi.output unwraps the nested inputs; its type does not follow unions of arrays, hence the cast.
  const custom = pulumi.output({
    before: args.before,
    after: args.after,
    onFailure: args.onFailure,
    facts: args.facts,
    script: args.script,
    cloudConfig: args.cloudConfig,
    installAgent: args.installAgent,
  }) as pulumi.Output<BootstrapCustomization>;
  const keys: pulumi.Output<Pick<BootstrapInputs, "certificate" | "enrollment" | "maxWaitForCertSeconds">> = certificate
    ? // Field by field: `certificate` may be a resource, which pulumi.output would walk whole.
      pulumi
        .all([
          certificate.certname,
          certificate.certificatePem,
          certificate.privateKeyPem,
          certificate.caCertificatePem,
          certificate.caFingerprint,
        ])
        .apply(([certname, certificatePem, privateKeyPem, caCertificatePem, caFingerprint]) => ({
          certificate: { certname, certificatePem, privateKeyPem, caCertificatePem, caFingerprint },
        }))
    : pulumi
        .all([
          enrollment!.certname,
          enrollment!.token,
          enrollment!.extensions,
          enrollment!.caCertificatePem,
          enrollment!.caFingerprint,
          args.maxWaitForCertSeconds,
        ])
        .apply(([certname, token, extensions, caCertificatePem, caFingerprint, maxWaitForCertSeconds]) => ({
          enrollment: { certname, token, extensions, caCertificatePem, caFingerprint },
          maxWaitForCertSeconds,
        }));
  const rendered = pulumi
    .all([node, keys, custom])
    .apply(([[nodeName, environment, master, masterPort], keys, customization]) =>
      renderBootstrap({ nodeName, environment, master, masterPort, ...keys, ...customization }),
    );
  return pulumi.secret(rendered);
}
