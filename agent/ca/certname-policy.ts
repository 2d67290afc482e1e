/**
 * Which certnames espm may classify and have signed. The PSK is not a master key: a name must match
 * one of the operator's patterns (or the operator allowed any name, for a lab), and it must never be
 * one of Puppet's own names, whatever the patterns say. A certificate for `puppet` signed by the
 * Puppet CA passes every agent's hostname check for `server = puppet`, so whoever could get it
 * signed could impersonate the master.
 *
 * Patterns are DNS-like: `*` stands for exactly one whole label (`*.nodes.example.com` matches
 * `web-01.nodes.example.com`, not `a.b.nodes.example.com` nor `nodes.example.com`); every other
 * character matches itself.
 */

/** Names that are Puppet's or espm's own, refused on every installation. */
export const RESERVED_CERTNAMES: readonly string[] = ["ca", "espm", "puppet", "puppetmaster", "localhost"];

const LABEL = /^[a-z0-9_-]+$/;

/** Why `pattern` is not a usable certname pattern, or undefined when it is one. */
export function patternProblem(pattern: string): string | undefined {
  if (pattern.length === 0 || pattern.length > 253) return "must be 1 to 253 characters";
  for (const label of pattern.split(".")) {
    if (label === "*") continue;
    if (label.includes("*"))
      return `'*' must be a whole label (as in *.nodes.example.com), not part of ${JSON.stringify(label)}`;
    if (!LABEL.test(label)) return `the label ${JSON.stringify(label)} must be lowercase letters, digits, '_' or '-'`;
  }
  if (pattern.split(".").every((l) => l === "*"))
    return "must name at least one fixed label (a pattern of wildcards alone allows any name)";
  return undefined;
}

export function matchesPattern(name: string, pattern: string): boolean {
  const labels = name.split(".");
  const wanted = pattern.split(".");
  return (
    labels.length === wanted.length && wanted.every((w, i) => (w === "*" ? LABEL.test(labels[i]!) : w === labels[i]))
  );
}

/**
 * The pattern as a Java regex (Puppet Server's auth.conf matches paths with one), for the part of
 * a path after `/certificate_status/`: `*` becomes one label of certname characters.
 */
export function patternRegex(pattern: string): string {
  return pattern
    .split(".")
    .map((label) => (label === "*" ? "[a-z0-9_-]+" : label))
    .join("\\.");
}

/** The names Puppet Server goes by, as espm last learned them, and where they came from. */
export interface PuppetServerNames {
  /** Puppet Server's certname and the DNS names and IPs of the certificate on its TLS port. */
  server: string[];
  /** Certnames and DNS alt names of every certificate the CA lists with dns_alt_names (compile masters). */
  altNamed: string[];
}

export interface CertnamePolicyOptions {
  /** The operator's allow patterns (`[certnames] allow[]` in espm.ini). */
  patterns: string[];
  /** Any name outside Puppet's own may be signed: for labs only. */
  allowAny: boolean;
  /** More names the operator never wants espm to sign (`[certnames] deny[]`). */
  deny: string[];
}

export class CertnamePolicy {
  private serverNames = new Set<string>();
  private altNamed = new Set<string>();
  /** False until Puppet Server's own names are known: until then no name can be judged safe. */
  private learned: boolean;

  constructor(
    private readonly options: CertnamePolicyOptions,
    /** Whether a Puppet Server is configured whose names must be learned before signing anything. */
    needsServerNames: boolean,
  ) {
    this.learned = !needsServerNames;
  }

  get patterns(): readonly string[] {
    return this.options.patterns;
  }

  get allowAny(): boolean {
    return this.options.allowAny;
  }

  private lastProblem: string | undefined;

  /** Records why the last attempt to learn Puppet Server's names failed (shown in health). */
  noteProblem(problem: string | undefined): void {
    this.lastProblem = problem;
  }

  /** The policy's state for the authenticated health report. */
  describe(): { status: "ok" | "down"; detail: string } {
    const allowed = this.options.allowAny
      ? "ANY certname (allow_any: a lab setting)"
      : `patterns ${this.options.patterns.join(", ")}`;
    if (!this.learned)
      return {
        status: "down",
        detail: `${allowed}; Puppet Server's own names not yet learned${this.lastProblem ? `: ${this.lastProblem}` : ""}`,
      };
    const problem = this.lastProblem ? `; last refresh failed: ${this.lastProblem}` : "";
    return {
      status: "ok",
      detail: `${allowed}; ${this.serverNames.size} server names and ${this.altNamed.size} alt-named certificate names refused${problem}`,
    };
  }

  /**
   * Puppet Server's names as last learned from it, to publish for `espm enc`; undefined until
   * learned, and for an espm with no Puppet Server (which must not overwrite what another espm
   * sharing the store published).
   */
  names(): PuppetServerNames | undefined {
    return this.heardFromServer ? { server: [...this.serverNames], altNamed: [...this.altNamed] } : undefined;
  }

  private heardFromServer = false;

  /** Replaces what espm knows of Puppet Server's names (start-up and each periodic refresh). */
  learn(names: Partial<PuppetServerNames>): void {
    if (names.server) {
      this.serverNames = new Set(names.server.map((n) => n.toLowerCase()));
      this.learned = true;
      this.heardFromServer = true;
    }
    if (names.altNamed) this.altNamed = new Set(names.altNamed.map((n) => n.toLowerCase()));
  }

  /**
   * Why espm must not sign or classify `name`, naming the rule, or undefined when it may.
   * `unknown` says the answer cannot be given yet (Puppet Server's names are not known).
   */
  refusal(name: string): { rule: string; message: string; unknown?: true } | undefined {
    if (RESERVED_CERTNAMES.includes(name)) {
      return {
        rule: "reserved",
        message: `${name} is one of Puppet's or espm's own names (${RESERVED_CERTNAMES.join(", ")}); espm never signs or classifies it`,
      };
    }
    if (this.options.deny.includes(name)) {
      return { rule: "deny", message: `${name} is in the deny list of espm.ini ([certnames] deny[])` };
    }
    if (!this.options.allowAny && !this.options.patterns.some((p) => matchesPattern(name, p))) {
      return {
        rule: "patterns",
        message: `${name} matches none of the certname patterns espm may sign (${this.options.patterns.join(", ") || "none"}); an operator adds patterns with espm-setup --certname-pattern or [certnames] allow[] in espm.ini`,
      };
    }
    if (!this.learned) {
      return {
        rule: "server-names",
        unknown: true,
        message: `espm has not yet learned Puppet Server's own names, so it cannot tell whether ${name} is one of them; retry in a few seconds (espm's log says why it could not reach Puppet Server)`,
      };
    }
    if (this.serverNames.has(name)) {
      return {
        rule: "server-names",
        message: `${name} is a name of the Puppet Server itself (its certname or a name in its TLS certificate); espm never signs or classifies it`,
      };
    }
    if (this.altNamed.has(name)) {
      return {
        rule: "alt-names",
        message: `${name} is the certname or a DNS alt name of a certificate the Puppet CA signed with dns_alt_names (a compile master); espm never signs or classifies it`,
      };
    }
    return undefined;
  }
}
