/**
 * The userdata that boots an instance into Puppet: the bootstrap script rendered with the node name,
 * the master's address, and the certificate, key and CA bundle issued through espm. The result is
 * secret, because it carries the private key.
 */
import * as pulumi from "@pulumi/pulumi";
import { renderUserData, type RenderedUserData } from "./userdata";

export interface BootstrapUserDataArgs {
  /**
   * A PuppetNodeRegistration, or anything with its `nodeName` (and optionally its `environment`
   * input: without one, the agent takes the environment espm's ENC gives it).
   */
  registration: { nodeName: pulumi.Input<string>; environment?: pulumi.Input<string | undefined> };
  /** A PuppetCertificate, or anything with its certname and PEM outputs. */
  certificate: {
    certname: pulumi.Input<string>;
    certificatePem: pulumi.Input<string>;
    privateKeyPem: pulumi.Input<string>;
    caCertificatePem: pulumi.Input<string>;
  };
  /** The Puppet master's host name or IP address as the instance reaches it. An IP gets a hosts entry for `puppet`. */
  master: pulumi.Input<string>;
  /** Puppet Server's port (default 8140). */
  masterPort?: pulumi.Input<number>;
}

/** The rendered userdata (`.base64` for `userDataBase64`, `.bytes` to check EC2's 16 KB limit), as a secret. */
export function bootstrapUserData(args: BootstrapUserDataArgs): pulumi.Output<RenderedUserData> {
  const { registration, certificate } = args;
  const values = pulumi.all([
    registration.nodeName,
    registration.environment,
    certificate.certname,
    certificate.certificatePem,
    certificate.privateKeyPem,
    certificate.caCertificatePem,
    args.master,
    args.masterPort,
  ]);
  const rendered = values.apply(
    ([nodeName, environment, certname, certificatePem, privateKeyPem, caCertificatePem, master, masterPort]) => {
      if (certname !== nodeName)
        throw new Error(
          `the certificate is for ${certname}, but the node is registered as ${nodeName}: give the certificate certname: registration.nodeName`,
        );
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
  );
  return pulumi.secret(rendered);
}
