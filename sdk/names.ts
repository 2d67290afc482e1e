/**
 * The rule for node names and certnames, and the conflict suffix, with no dependency: `espm enc`
 * checks every certname on each catalog compile, and should not load the wire contract's schemas for it.
 */

/** Lowercase `[a-z0-9._-]`, no leading or trailing `.` or `-`, no `..`, at most 253 characters. */
export const NAME_PATTERN = /^[a-z0-9](?:[a-z0-9._-]{0,251}[a-z0-9])?$/;

/** Why `name` is not a valid node name or certname, or undefined when it is valid. */
export function nameProblem(name: string): string | undefined {
  if (name.length === 0) return "must not be empty";
  if (name.length > 253) return `is ${name.length} characters long; at most 253 are allowed`;
  if (!NAME_PATTERN.test(name)) {
    return "must be lowercase letters, digits, '.', '_' or '-', and must not start or end with '.' or '-'";
  }
  if (name.includes("..")) return "must not contain '..'";
  return undefined;
}

/**
 * The name tried after a conflict: a millisecond timestamp appended to the first label, as the
 * original espm did (`web-01.example.test` becomes `web-01-1732665600123.example.test`).
 */
export function suffixedName(name: string, timestampMs: number): string {
  const dot = name.indexOf(".");
  return dot < 0 ? `${name}-${timestampMs}` : `${name.slice(0, dot)}-${timestampMs}${name.slice(dot)}`;
}
