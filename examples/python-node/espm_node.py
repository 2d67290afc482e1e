"""A Puppet node registered with espm, its one-time enrollment, and the userdata that boots it.

The espm server is an explicit provider here, from the project's espmUrl, espmPsk (secret) and
espmCertificate config: a program that talks to several espm servers holds one provider each.
Without one, resources use the default provider, configured by the stack's espm:url, espm:psk
and espm:certificate, as in the TypeScript and YAML programs.
"""
import pulumi
import pulumi_espm as espm


def program() -> None:
    config = pulumi.Config()
    puppet = espm.Provider(
        "puppet",
        url=config.require("espmUrl"),
        psk=config.require_secret("espmPsk"),
        certificate=config.require("espmCertificate"),
    )
    on_puppet = pulumi.ResourceOptions(provider=puppet)

    registration = espm.NodeRegistration(
        "web",
        name=config.require("nodeName"),
        groups=["base"],
        classes={"espm_file": {"path": config.get("managedFile") or "/etc/espm-managed.txt", "content": "web node"}},
        opts=on_puppet,
    )
    # The instance key mode: the node makes its own key; this one-time token gets it signed.
    enrollment = espm.Enrollment(
        "web", certname=registration.node_name, extensions={"pp_role": "web"}, opts=on_puppet
    )
    user_data = espm.bootstrap_user_data_output(
        node_name=registration.node_name,
        master=config.require("puppetMaster"),
        master_port=config.get_int("masterPort"),
        enrollment=pulumi.Output.all(
            enrollment.certname, enrollment.token, enrollment.extensions, enrollment.ca_certificate_pem
        ).apply(
            lambda e: espm.BootstrapEnrollment(
                certname=e[0], token=e[1], extensions=e[2], ca_certificate_pem=e[3]
            )
        ),
        opts=pulumi.InvokeOutputOptions(provider=puppet),
    )
    # On EC2: aws.ec2.Instance("web", user_data_base64=user_data.base64, user_data_replace_on_change=True, ...)
    pulumi.export("nodeName", registration.node_name)
    pulumi.export("userDataScript", user_data.script)
