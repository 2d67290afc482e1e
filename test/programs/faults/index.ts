/**
 * The fault tests' Pulumi program (test/faults.test.ts): `faults:count` registrations named
 * `PREFIX-NN.faults.test`, each with its certificate; the serials are the outputs.
 */
import * as pulumi from "@pulumi/pulumi";
import { PuppetCertificate, PuppetNodeRegistration } from "pulumi-espm";

/** The node names of a stack of this program. */
export function nodeNames(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(2, "0")}.faults.test`);
}

export async function program() {
  const config = new pulumi.Config("faults");
  const serials: Record<string, pulumi.Output<string>> = {};
  for (const name of nodeNames(config.require("prefix"), config.requireNumber("count"))) {
    const short = name.split(".")[0]!;
    const registration = new PuppetNodeRegistration(short, {
      name,
      classes: { espm_typed: { port: 8140, note: short } },
      onConflict: "fail",
    });
    serials[short] = new PuppetCertificate(short, { certname: registration.nodeName }).serial;
  }
  return serials;
}
