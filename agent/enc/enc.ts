/**
 * `espm enc CERTNAME`: the external node classifier Puppet Server runs (node_terminus = exec) for
 * every catalog compile. It reads only espm.ini and the export the daemon publishes (the node's
 * file, the validated groups snapshot and Puppet Server's names), never the store and never
 * groups.yaml itself, so it runs as Puppet Server's user with read access alone, starts fast, and a
 * broken groups.yaml cannot break a Puppet run. (With a PostgreSQL store it reads the same from the
 * copy `espm enc-follow` keeps current, follow.ts, or else from the database with a read-only role,
 * postgres.ts.)
 */
import { nameProblem } from "espm-sdk/names";
import { mergeClassification, type EncClassification } from "./classification";
import { CertnamePolicy, type PuppetServerNames } from "../ca/certname-policy";
import { encSettings, type EncSettings } from "../config/file";
import type { Group, Node } from "espm-sdk/protocol";
import { FOLLOWER_FRESH_MS, followedCopy, readGroupsSnapshot, readNodeExport, readServerNames } from "./export";
import type { EncResult } from "./fallback";

export type { EncResult };

/** Puppet treats empty ENC output as an unknown node, so an unclassified node gets an explicit empty class list. */
const UNCLASSIFIED = "---\nclasses: {}\n";

/** How long Puppet Server's compile may wait on the site's fallback ENC. */
const FALLBACK_TIMEOUT_MS = 30_000;

/**
 * The classification as the YAML Puppet reads (Psych, YAML 1.1): block mappings at the top, a line
 * per class, and every key and value in JSON's notation, which YAML's flow style and double-quoted
 * strings take as they are. Written here rather than with the yaml package, whose 72 modules were
 * a quarter of each run's time, and this runs for every catalog compile.
 */
export function renderEnc(classification: EncClassification): string {
  const classes = Object.entries(classification.classes).map(([name, params]) => `  ${flow(name)}: ${flow(params)}\n`);
  return (
    `---\nenvironment: ${flow(classification.environment)}\n` +
    (classes.length ? `classes:\n${classes.join("")}` : "classes: {}\n") +
    `parameters: ${flow(classification.parameters)}\n`
  );
}

/** A JSON value in YAML flow notation. */
function flow(value: unknown): string {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return "null";
    // YAML 1.1 reads an exponent without a point (1e+21) as a string: write 1.0e+21.
    const text = String(value);
    return text.includes("e") && !text.includes(".") ? text.replace("e", ".0e") : text;
  }
  if (Array.isArray(value)) return `[${value.map(flow).join(", ")}]`;
  if (value !== null && typeof value === "object")
    return `{${Object.entries(value)
      .map(([k, v]) => `${JSON.stringify(k)}: ${flow(v)}`)
      .join(", ")}}`;
  // JSON leaves DEL, the C1 controls, the line and paragraph separators and BOM/non-characters as
  // they are; YAML 1.1 does not allow them raw in a double-quoted scalar, so they go as \u escapes.
  return (JSON.stringify(value) ?? "null").replace(
    /[\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** The node, the groups and Puppet Server's names from the daemon's export files. */
function fromExport(dir: string, certname: string): Found {
  const node = readNodeExport(dir, certname);
  if (!node) return { node, groups: new Map() };
  return { node, groups: readGroupsSnapshot(dir), serverNames: readServerNames(dir) };
}

interface Found {
  node: Node | undefined;
  groups: Map<string, Group>;
  serverNames?: PuppetServerNames;
  note?: string;
}

/**
 * The node, the groups and Puppet Server's names from the follower's copy when it is current, else
 * from PostgreSQL (or, while it cannot be read, the copy or the cache); a failure to learn them fails
 * the compile.
 */
async function fromPostgres(
  store: NonNullable<EncSettings["store"]> & { maxCacheAgeSeconds: number },
  cacheDir: string,
  certname: string,
): Promise<Found | EncResult> {
  // The follower's copy while its heartbeat is young: a compile then reads files, as on SQLite.
  const copy = followedCopy(cacheDir, store.url);
  if (copy && copy.ageMs >= 0 && copy.ageMs <= FOLLOWER_FRESH_MS) return fromExport(copy.dir, certname);
  // Loaded only here: the driver is most of a PostgreSQL compile's cost, and a SQLite site never pays it.
  const { readFromStore } = await import("./postgres");
  try {
    const answer = await readFromStore(store, cacheDir, certname, copy);
    const note =
      answer.cached &&
      `espm enc: PostgreSQL cannot be read (${answer.cached}); served ${certname}'s last answer from ${answer.from}\n`;
    return { ...answer, note: note || undefined };
  } catch (err) {
    return { stdout: "", stderr: `espm enc: ${(err as Error).message}\n`, exitCode: 1 };
  }
}

/**
 * The classification Puppet Server gets for `certname`: espm's, for a live node of espm's that the
 * certname policy allows now (the same policy the daemon's gate applies: espm.ini's patterns, deny
 * list and Puppet's reserved names, and the names of Puppet Server and its compile masters as the
 * daemon last published them); for any other name, the site's fallback ENC's, as if espm did not
 * know it.
 */
export async function classify(configFile: string, certname: string): Promise<EncResult> {
  const { encExport, fallbackEnc, store, policy: options, maxCacheAgeSeconds } = encSettings(configFile);
  const policy = new CertnamePolicy(options, false);
  // With no patterns (and no allow_any) the policy refuses every name: say so, or a compile
  // master's espm.ini that lacks them would quietly classify none of espm's nodes.
  const unconfigured =
    options.patterns.length === 0 && !options.allowAny
      ? `espm enc: ${configFile} names no certname patterns ([certnames] allow[], as in espm's own espm.ini), so espm classifies no node here\n`
      : "";
  // A certname Puppet allows but espm's name rule does not (`x_`, `a..b`) is never espm's node:
  // it goes to the fallback like any other node espm did not create, and never reaches a file path.
  // Nor is a name the policy refuses: with PostgreSQL, such nodes never wait on the database, and
  // compile on while it is down.
  if (nameProblem(certname) === undefined && !policy.refusal(certname)) {
    const found = store
      ? await fromPostgres({ ...store, maxCacheAgeSeconds }, encExport, certname)
      : fromExport(encExport, certname);
    if ("exitCode" in found) return found;
    if (found.serverNames) policy.learn(found.serverNames);
    if (found.node && !policy.refusal(certname)) {
      const classification = mergeClassification(found.node, found.groups);
      return { stdout: renderEnc(classification), stderr: found.note ?? "", exitCode: 0 };
    }
  }
  if (fallbackEnc) {
    // Loaded only here: it parses the fallback's YAML, which espm's own nodes never need.
    const { runFallbackEnc } = await import("./fallback");
    const { timedOut, ...result } = await runFallbackEnc(fallbackEnc, certname, FALLBACK_TIMEOUT_MS);
    if (timedOut)
      result.stderr += `espm enc: the fallback ENC ${fallbackEnc} gave no answer within ${FALLBACK_TIMEOUT_MS / 1000} s\n`;
    return { ...result, stderr: unconfigured + result.stderr };
  }
  return { stdout: UNCLASSIFIED, stderr: unconfigured, exitCode: 0 };
}
