/**
 * `espm autosign -c espm.ini CERTNAME < CSR`: the executable Puppet Server runs for policy-based
 * autosigning, as Puppet Server's own user. It cannot write espm's store, so it asks the running
 * espm over the autosign socket (with the autosign secret, readable through espm's group) and
 * exits 0 to sign or 1 with the reason on stderr, which Puppet Server logs. It gives up within 5 s:
 * Puppet Server waits for it while it holds the CSR, and espm's sweep decides later on what it
 * could not decide now. A CSR for a name espm never enrolled goes to the fallback policy, if any.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { request } from "node:http";
// A type only: the policy module, and the ASN.1 schemas with it, is never loaded in this short-lived process.
import type { AutosignAnswer } from "./policy";
import { CertnamePolicy } from "../ca/certname-policy";
import { autosignSettings } from "../config/file";

/** The whole run, fallback included, ends within this time. */
export const AUTOSIGN_BUDGET_MS = 5000;

export interface AutosignResult {
  exitCode: number;
  /** The reason, for stderr (Puppet Server's log). */
  message: string;
}

function ask(
  socket: string,
  secret: string,
  certname: string,
  csr: string,
  timeoutMs: number,
): Promise<AutosignAnswer> {
  const body = JSON.stringify({ certname, csr });
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: socket,
        path: "/v1/autosign",
        method: "POST",
        headers: {
          authorization: `Bearer ${secret}`,
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
        },
        timeout: timeoutMs,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => {
          if (res.statusCode !== 200)
            return reject(new Error(`espm answered HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
          try {
            resolve(JSON.parse(text) as AutosignAnswer);
          } catch {
            reject(new Error("espm's answer is not JSON"));
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** Runs Puppet's own policy interface: the certname as the one argument, the CSR on stdin. */
function runFallback(fallback: string, certname: string, csr: string, timeoutMs: number): Promise<AutosignResult> {
  return new Promise((resolve) => {
    const child = execFile(fallback, [certname], { timeout: timeoutMs, maxBuffer: 64 * 1024 }, (err, _out, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      const why = err?.killed ? `gave no answer within ${timeoutMs} ms` : stderr.trim().slice(0, 500);
      resolve({
        exitCode: code,
        message: `espm never enrolled ${certname}; the fallback policy ${fallback} ${code === 0 ? "signs it" : `refused it (exit ${code})`}${why ? `: ${why}` : ""}`,
      });
    });
    // A policy that decides on the name alone exits without reading the CSR: its closed stdin is
    // no failure (unhandled, the EPIPE would end espm autosign with exit 1, a refusal).
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(csr);
  });
}

export async function autosign(configFile: string, certname: string, csr: string): Promise<AutosignResult> {
  const started = Date.now();
  const remaining = () => Math.max(100, AUTOSIGN_BUDGET_MS - 300 - (Date.now() - started));
  const { policy, autosign: config } = autosignSettings(configFile);
  if (!config) {
    return {
      exitCode: 1,
      message: `${configFile} has no [autosign] section, so espm signs nothing through policy-based autosigning`,
    };
  }
  // A name outside espm's certname policy is never one espm enrolled: the site's own policy
  // decides it without asking espm, so the site's autosigning goes on while espm is down.
  if (new CertnamePolicy(policy, false).refusal(certname)) {
    if (config.fallback) return runFallback(config.fallback, certname, csr, remaining());
    return {
      exitCode: 1,
      message: `espm never enrolled ${certname} (it is outside espm's certname policy) and no fallback policy is configured ([autosign] fallback), so it is not signed`,
    };
  }
  let secret: string;
  try {
    secret = readFileSync(config.secretFile, "utf8").trim();
  } catch (err) {
    return {
      exitCode: 1,
      message: `cannot read the autosign secret ${config.secretFile} (${(err as NodeJS.ErrnoException).code}); Puppet Server's user must be in its group`,
    };
  }
  let answer: AutosignAnswer;
  try {
    answer = await ask(config.socket, secret, certname, csr, remaining());
  } catch (err) {
    return {
      exitCode: 1,
      message: `cannot reach espm on ${config.socket} (${(err as Error).message}); the CSR for ${certname} stays pending, and espm signs it within ${config.sweepSeconds + 10} s of being back if its enrollment allows`,
    };
  }
  if (answer.decision === "sign")
    return { exitCode: 0, message: `espm signs ${certname}: its enrollment token is valid` };
  if (answer.decision === "refuse")
    return { exitCode: 1, message: `espm refused the CSR for ${certname}: ${answer.reason}` };
  if (config.fallback) return runFallback(config.fallback, certname, csr, remaining());
  return {
    exitCode: 1,
    message: `espm never enrolled ${certname} and no fallback policy is configured ([autosign] fallback), so it is not signed`,
  };
}
