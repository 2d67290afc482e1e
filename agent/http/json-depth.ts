/**
 * How deep a JSON text nests, found in one pass over the raw text without parsing it: a body of
 * 2,000 nested arrays costs 4 KB to send and would otherwise reach the parser, the validator and
 * `espm enc` (which must render whatever the API accepted) as a deep recursion.
 */

/** The deepest nesting of arrays and objects the API accepts. */
export const MAX_JSON_DEPTH = 32;

export function jsonDepthExceeds(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return false;
}
