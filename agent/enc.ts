/**
 * `espm enc CERTNAME`: the external node classifier Puppet Server runs (node_terminus = exec) for
 * every catalog compile. It reads only espm.ini, groups.yaml and the classification export, never
 * the store, so it runs as Puppet Server's user with read access alone, and starts fast.
 */
import { execFile } from "node:child_process";
import { stringify } from "yaml";
import { nameProblem } from "../sdk/protocol";
import { loadConfig } from "./config";
import { readNodeExport } from "./enc-export";
import { loadGroups, mergeClassification, type EncClassification } from "./groups";

export interface EncResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Puppet treats empty ENC output as an unknown node, so an unclassified node gets an explicit empty class list. */
const UNCLASSIFIED = "---\nclasses: {}\n";

export function renderEnc(classification: EncClassification): string {
  return `---\n${stringify(classification, { lineWidth: 0 })}`;
}

function runFallback(fallback: string, certname: string): Promise<EncResult> {
  return new Promise((resolve) => {
    execFile(fallback, [certname], { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") {
        resolve({ stdout: "", stderr: `espm enc: cannot run the fallback ENC ${fallback}: ${err.message}\n`, exitCode: 1 });
        return;
      }
      resolve({ stdout, stderr, exitCode: err ? (err.code as number) : 0 });
    });
  });
}

export async function classify(configFile: string, certname: string): Promise<EncResult> {
  const problem = nameProblem(certname);
  if (problem) return { stdout: "", stderr: `espm enc: the certname ${JSON.stringify(certname)} ${problem}\n`, exitCode: 1 };
  const config = loadConfig(configFile);
  const node = readNodeExport(config.store.enc_export, certname);
  if (node) {
    const classification = mergeClassification(node, loadGroups(config.classifier.groups));
    return { stdout: renderEnc(classification), stderr: "", exitCode: 0 };
  }
  if (config.classifier.fallback_enc) return runFallback(config.classifier.fallback_enc, certname);
  return { stdout: UNCLASSIFIED, stderr: "", exitCode: 0 };
}
