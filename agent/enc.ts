/**
 * `espm enc CERTNAME`: the external node classifier Puppet Server runs (node_terminus = exec) for
 * every catalog compile. It reads only espm.ini and the export the daemon publishes (the node's
 * file and the validated groups snapshot), never the store and never groups.yaml itself, so it runs
 * as Puppet Server's user with read access alone, starts fast, and a broken groups.yaml cannot
 * break a Puppet run.
 */
import { stringify } from "yaml";
import { nameProblem } from "../sdk/names";
import { loadConfig } from "./config";
import { readGroupsSnapshot, readNodeExport } from "./enc-export";
import { runFallbackEnc, type EncResult } from "./fallback-enc";
import { mergeClassification, type EncClassification } from "./groups";

export type { EncResult };

/** Puppet treats empty ENC output as an unknown node, so an unclassified node gets an explicit empty class list. */
const UNCLASSIFIED = "---\nclasses: {}\n";

/** How long Puppet Server's compile may wait on the site's fallback ENC. */
const FALLBACK_TIMEOUT_MS = 30_000;

export function renderEnc(classification: EncClassification): string {
  return `---\n${stringify(classification, { lineWidth: 0 })}`;
}

export async function classify(configFile: string, certname: string): Promise<EncResult> {
  const config = loadConfig(configFile);
  // A certname Puppet allows but espm's name rule does not (`x_`, `a..b`) is never espm's node:
  // it goes to the fallback like any other node espm did not create, and never reaches a file path.
  const node = nameProblem(certname) === undefined ? readNodeExport(config.store.enc_export, certname) : undefined;
  if (node) {
    const classification = mergeClassification(node, readGroupsSnapshot(config.store.enc_export));
    return { stdout: renderEnc(classification), stderr: "", exitCode: 0 };
  }
  if (config.classifier.fallback_enc) {
    const { timedOut, ...result } = await runFallbackEnc(config.classifier.fallback_enc, certname, FALLBACK_TIMEOUT_MS);
    if (timedOut)
      result.stderr += `espm enc: the fallback ENC ${config.classifier.fallback_enc} gave no answer within ${FALLBACK_TIMEOUT_MS / 1000} s\n`;
    return result;
  }
  return { stdout: UNCLASSIFIED, stderr: "", exitCode: 0 };
}
