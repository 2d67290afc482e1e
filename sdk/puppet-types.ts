/**
 * Puppet's data types, as Puppet Server's environment_classes prints them for class parameters
 * (`Integer[1, 65535]`, `Optional[Array[String]]`, `Enum['a', 'b']`, `Stdlib::Port`…), read well
 * enough to check a JSON value against one before a node's first run. What the checker cannot read,
 * or knows only by name (type aliases such as `Stdlib::*`, `Struct`, `Tuple`), it lets pass: a
 * preview must never refuse what Puppet would accept.
 */

export type PuppetType =
  | { kind: "any"; text: string }
  | { kind: "string"; text: string; min: number; max: number }
  | { kind: "integer"; text: string; min: number; max: number }
  | { kind: "float"; text: string; min: number; max: number }
  | { kind: "boolean"; text: string }
  | { kind: "scalar"; text: string }
  | { kind: "undef"; text: string }
  | { kind: "array"; text: string; of: PuppetType; min: number; max: number }
  | { kind: "hash"; text: string; key: PuppetType; value: PuppetType; min: number; max: number }
  | { kind: "optional"; text: string; of: PuppetType }
  | { kind: "notundef"; text: string; of: PuppetType }
  | { kind: "enum"; text: string; values: string[] }
  | { kind: "pattern"; text: string; patterns: RegExp[] }
  | { kind: "variant"; text: string; of: PuppetType[] };

type Arg = { type: PuppetType } | { number: number } | { string: string } | { regex: string } | { default: true };

const ANY = (text: string): PuppetType => ({ kind: "any", text });

/** The type of a parameter, from its text; anything unreadable is `any`. */
export function parsePuppetType(text: string | undefined): PuppetType {
  if (!text) return ANY("Any");
  try {
    const parser = new Parser(text);
    const type = parser.type();
    return parser.atEnd() ? type : ANY(text);
  } catch {
    return ANY(text);
  }
}

class Parser {
  private at = 0;
  constructor(private readonly text: string) {}

  atEnd(): boolean {
    this.space();
    return this.at >= this.text.length;
  }

  private space(): void {
    while (/\s/.test(this.text[this.at] ?? "")) this.at++;
  }

  private peek(): string {
    this.space();
    return this.text[this.at] ?? "";
  }

  private expect(char: string): void {
    if (this.peek() !== char) throw new Error(`expected ${char}`);
    this.at++;
  }

  type(): PuppetType {
    this.space();
    const start = this.at;
    const name = /^[A-Z][A-Za-z0-9_]*(?:::[A-Z][A-Za-z0-9_]*)*/.exec(this.text.slice(this.at))?.[0];
    if (!name) throw new Error("expected a type name");
    this.at += name.length;
    const args: Arg[] = [];
    if (this.peek() === "[") {
      this.at++;
      if (this.peek() !== "]") {
        args.push(this.arg());
        while (this.peek() === ",") {
          this.at++;
          if (this.peek() === "]") break;
          args.push(this.arg());
        }
      }
      this.expect("]");
    }
    return build(name, args, this.text.slice(start, this.at).trim());
  }

  private arg(): Arg {
    const c = this.peek();
    if (c === "'" || c === '"') return { string: this.quoted(c) };
    if (c === "/") return { regex: this.regex() };
    if (c === "{" || c === "(") throw new Error("literal hashes are not read"); // Struct: passes as any
    const number = /^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(this.text.slice(this.at))?.[0];
    if (number) {
      this.at += number.length;
      return { number: Number(number) };
    }
    if (this.text.startsWith("default", this.at)) {
      this.at += "default".length;
      return { default: true };
    }
    return { type: this.type() };
  }

  private quoted(quote: string): string {
    this.at++;
    let value = "";
    while (this.at < this.text.length && this.text[this.at] !== quote) {
      if (this.text[this.at] === "\\") this.at++;
      value += this.text[this.at++];
    }
    this.expect(quote);
    return value;
  }

  private regex(): string {
    this.at++;
    let value = "";
    while (this.at < this.text.length && this.text[this.at] !== "/") {
      if (this.text[this.at] === "\\") value += this.text[this.at++];
      value += this.text[this.at++];
    }
    this.expect("/");
    return value;
  }
}

/** A Ruby regex as JavaScript reads it: \A and \z anchor the whole string. (One JS cannot read makes the type `any`.) */
function rubyRegex(source: string): RegExp {
  return new RegExp(source.replaceAll("\\A", "^").replaceAll(/\\[zZ]/g, "$"));
}

function bound(arg: Arg | undefined, fallback: number): number {
  return arg && "number" in arg ? arg.number : fallback;
}

function typeArg(arg: Arg | undefined, fallback: PuppetType): PuppetType {
  return arg && "type" in arg ? arg.type : fallback;
}

function build(name: string, args: Arg[], text: string): PuppetType {
  switch (name) {
    case "String":
      return { kind: "string", text, min: bound(args[0], 0), max: bound(args[1], Infinity) };
    case "Integer":
      return { kind: "integer", text, min: bound(args[0], -Infinity), max: bound(args[1], Infinity) };
    case "Float":
      return { kind: "float", text, min: bound(args[0], -Infinity), max: bound(args[1], Infinity) };
    case "Numeric":
      return { kind: "float", text, min: -Infinity, max: Infinity };
    case "Boolean":
      return { kind: "boolean", text };
    case "Scalar":
    case "ScalarData":
      return { kind: "scalar", text };
    case "Undef":
      return { kind: "undef", text };
    case "Array": {
      // Array[T], Array[T, min], Array[T, min, max], Array[min, max].
      const [first, ...rest] = args;
      const of = typeArg(first, ANY("Any"));
      const bounds = first && "type" in first ? rest : args;
      return { kind: "array", text, of, min: bound(bounds[0], 0), max: bound(bounds[1], Infinity) };
    }
    case "Hash": {
      const typed = args[0] && "type" in args[0];
      return {
        kind: "hash",
        text,
        key: typed ? typeArg(args[0], ANY("Any")) : ANY("Any"),
        value: typed ? typeArg(args[1], ANY("Any")) : ANY("Any"),
        min: bound(typed ? args[2] : args[0], 0),
        max: bound(typed ? args[3] : args[1], Infinity),
      };
    }
    case "Optional":
      return { kind: "optional", text, of: typeArg(args[0], ANY("Any")) };
    case "NotUndef":
      return { kind: "notundef", text, of: typeArg(args[0], ANY("Any")) };
    case "Enum":
      return { kind: "enum", text, values: args.flatMap((a) => ("string" in a ? [a.string] : [])) };
    case "Pattern":
      return {
        kind: "pattern",
        text,
        patterns: args.flatMap((a) =>
          "regex" in a ? [rubyRegex(a.regex)] : "string" in a ? [rubyRegex(a.string)] : [],
        ),
      };
    case "Variant":
      return { kind: "variant", text, of: args.flatMap((a) => ("type" in a ? [a.type] : [])) };
    default:
      // Any, Data, Stdlib::Port and every other alias, Struct, Tuple, Sensitive…: not checked.
      return ANY(text);
  }
}

export interface TypeProblem {
  /** Where in the value (`[1]`, `.servers[0]`), relative to the value checked. */
  at: string;
  /** What Puppet expects there, in Puppet's own words. */
  expected: string;
  got: unknown;
}

/** Why `value` (JSON, as Pulumi passes it) does not fit `type`, or undefined when it does or may. */
export function typeProblem(type: PuppetType, value: unknown, at = ""): TypeProblem | undefined {
  const wrong = (): TypeProblem => ({ at, expected: type.text, got: value });
  const absent = value === null || value === undefined;
  switch (type.kind) {
    case "any":
      return undefined;
    case "undef":
      return absent ? undefined : wrong();
    case "optional":
      return absent ? undefined : typeProblem(type.of, value, at);
    case "notundef":
      return absent ? wrong() : typeProblem(type.of, value, at);
    case "string":
      return typeof value === "string" && value.length >= type.min && value.length <= type.max ? undefined : wrong();
    case "integer":
      return typeof value === "number" && Number.isInteger(value) && value >= type.min && value <= type.max
        ? undefined
        : wrong();
    case "float":
      return typeof value === "number" && value >= type.min && value <= type.max ? undefined : wrong();
    case "boolean":
      return typeof value === "boolean" ? undefined : wrong();
    case "scalar":
      return ["string", "number", "boolean"].includes(typeof value) ? undefined : wrong();
    case "enum":
      return typeof value === "string" && (type.values.length === 0 || type.values.includes(value))
        ? undefined
        : wrong();
    case "pattern":
      return typeof value === "string" && (type.patterns.length === 0 || type.patterns.some((p) => p.test(value)))
        ? undefined
        : wrong();
    case "variant":
      return type.of.length === 0 || type.of.some((t) => !typeProblem(t, value, at)) ? undefined : wrong();
    case "array": {
      if (!Array.isArray(value) || value.length < type.min || value.length > type.max) return wrong();
      for (const [i, item] of value.entries()) {
        const problem = typeProblem(type.of, item, `${at}[${i}]`);
        if (problem) return problem;
      }
      return undefined;
    }
    case "hash": {
      if (absent || typeof value !== "object" || Array.isArray(value)) return wrong();
      const entries = Object.entries(value as Record<string, unknown>);
      if (entries.length < type.min || entries.length > type.max) return wrong();
      for (const [key, item] of entries) {
        if (typeProblem(type.key, key, at)) return { at: `${at}.${key}`, expected: `a key of ${type.text}`, got: key };
        const problem = typeProblem(type.value, item, `${at}.${key}`);
        if (problem) return problem;
      }
      return undefined;
    }
  }
}
