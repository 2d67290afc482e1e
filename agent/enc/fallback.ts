/**
 * The site's own ENC, which espm runs for every node it did not create (`[classifier] fallback_enc`).
 * `espm enc` passes its answer through; the daemon asks it before creating a node, so that a node
 * another classifier already knows is never taken over.
 */
import { execFile } from "node:child_process";
import { parse } from "yaml";

export interface EncResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Runs the fallback ENC with the certname as its one argument (an argument vector: no shell). */
export function runFallbackEnc(
  fallback: string,
  certname: string,
  timeoutMs: number,
): Promise<EncResult & { timedOut: boolean }> {
  return new Promise((resolve) => {
    execFile(
      fallback,
      [certname],
      { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const timedOut = err !== null && (err as { killed?: boolean }).killed === true;
        if (err && !timedOut && typeof err.code !== "number") {
          resolve({
            stdout: "",
            stderr: `espm: cannot run the fallback ENC ${fallback}: ${err.message}\n`,
            exitCode: 1,
            timedOut,
          });
          return;
        }
        resolve({ stdout, stderr, exitCode: err ? (typeof err.code === "number" ? err.code : 1) : 0, timedOut });
      },
    );
  });
}

function nonEmpty(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0;
  if (value !== null && typeof value === "object") return Object.keys(value).length > 0;
  return false;
}

/**
 * Whether the fallback ENC's answer classifies the node: it exited 0 with at least one class or
 * parameter. An answer espm cannot read counts as knowing the node: espm never takes a node over
 * on a guess. (A failed run is no answer at all: the gate refuses to decide on it, gate.ts.)
 */
export function classifiesNode(result: EncResult): boolean {
  if (result.exitCode !== 0) return false;
  let answer: unknown;
  try {
    answer = parse(result.stdout);
  } catch {
    return true;
  }
  if (answer === null || answer === undefined) return false;
  if (typeof answer !== "object") return true;
  const { classes, parameters } = answer as { classes?: unknown; parameters?: unknown };
  return nonEmpty(classes) || nonEmpty(parameters);
}
