/**
 * The userdata that boots an instance into Puppet: the bootstrap script rendered with the node name,
 * the master's address, the CA bundle, and either the certificate and key issued through espm (the
 * provider key mode) or a PuppetEnrollment's one-time token (the instance key mode, in which the
 * node makes its own key). The result is secret either way: it carries a key or a token.
 */
import * as pulumi from "@pulumi/pulumi";
import { renderUserData, type RenderedUserData } from "./userdata";

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
    caCertificatePem: pulumi.Input<string>;
  };
  /** The instance key mode (recommended): a PuppetEnrollment, or anything with its outputs. */
  enrollment?: {
    certname: pulumi.Input<string>;
    token: pulumi.Input<string>;
    extensions?: pulumi.Input<Record<string, string> | undefined>;
    caCertificatePem: pulumi.Input<string>;
  };
  /** The Puppet master's host name or IP address as the instance reaches it. An IP gets a hosts entry for `puppet`. */
  master: pulumi.Input<string>;
  /** Puppet Server's port (default 8140). */
  masterPort?: pulumi.Input<number>;
  /** Instance key mode: how long the agent waits for its certificate (default 600 s). */
  maxWaitForCertSeconds?: pulumi.Input<number>;
}

function sameNode(what: string, certname: string, nodeName: string): void {
  if (certname !== nodeName)
    throw new Error(
      `the ${what} is for ${certname}, but the node is registered as ${nodeName}: give the ${what} certname: registration.nodeName`,
    );
}

/** The rendered userdata (`.base64` for `userDataBase64`, `.bytes` to check EC2's 16 KB limit), as a secret. */
export function bootstrapUserData(args: BootstrapUserDataArgs): pulumi.Output<RenderedUserData> {
  const { registration, certificate, enrollment } = args;
  if ((certificate === undefined) === (enrollment === undefined))
    throw new Error("bootstrapUserData takes either certificate (provider key mode) or enrollment (instance key mode)");
  const common = pulumi.all([registration.nodeName, registration.environment, args.master, args.masterPort]);
  const rendered = certificate
    ? pulumi
        .all([
          common,
          certificate.certname,
          certificate.certificatePem,
          certificate.privateKeyPem,
          certificate.caCertificatePem,
        ])
        .apply(
          ([
            [nodeName, environment, master, masterPort],
            certname,
            certificatePem,
            privateKeyPem,
            caCertificatePem,
          ]) => {
            sameNode("certificate", certname, nodeName);
            return renderUserData({
              nodeName,
              environment,
              master,
              masterPort,
              certificatePem,
              privateKeyPem,
              caCertificatePem,
            });
          },
        )
    : pulumi
        .all([
          common,
          enrollment!.certname,
          enrollment!.token,
          enrollment!.extensions,
          enrollment!.caCertificatePem,
          args.maxWaitForCertSeconds,
        ])
        .apply(([[nodeName, environment, master, masterPort], certname, token, extensions, caCertificatePem, wait]) => {
          sameNode("enrollment", certname, nodeName);
          return renderUserData({
            nodeName,
            environment,
            master,
            masterPort,
            caCertificatePem,
            enrollment: { token, extensions },
            maxWaitForCertSeconds: wait,
          });
        });
  return pulumi.secret(rendered);
}
