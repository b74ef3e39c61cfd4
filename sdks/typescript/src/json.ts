// Strict JSON for untrusted token segments and policies (RFC 8725 §3.2, RFC 7515 §5.2):
// duplicate member names are refused at any depth (JSON.parse keeps the last, so two
// `exp` members would mean different things to different libraries), nesting is
// bounded, and a number written with a fraction or exponent stays distinguishable from
// an integer (a policy amount must be a string or an integer, never a float).

/** Why a JSON document was refused. */
export class JsonError extends Error {
  constructor(
    readonly kind: "syntax" | "duplicate" | "depth",
    message: string,
  ) {
    super(message);
    this.name = "JsonError";
  }
}

/** A JSON number written with a fraction or an exponent (a binary float). */
export class JsonFloat {
  constructor(
    readonly value: number,
    readonly text: string,
  ) {}
  toJSON(): number {
    return this.value;
  }
}

/** A JSON value as the strict parser returns it. */
export type JsonValue = null | boolean | number | string | JsonFloat | JsonValue[] | { [key: string]: JsonValue };
/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

/** Default deepest nesting (the Rust core's `JsonLimits::default`). */
export const DEFAULT_MAX_DEPTH = 16;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Parses UTF-8 bytes strictly. */
export function parseBytes(bytes: Uint8Array, maxDepth = DEFAULT_MAX_DEPTH): JsonValue {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new JsonError("syntax", "malformed JSON");
  }
  return parse(text, maxDepth);
}

/** Parses text strictly: one value, no duplicate members, at most `maxDepth` levels. */
export function parse(text: string, maxDepth = DEFAULT_MAX_DEPTH): JsonValue {
  const p = new Parser(text, maxDepth);
  p.ws();
  const v = p.value(0);
  p.ws();
  if (p.i !== text.length) p.fail();
  return v;
}

class Parser {
  i = 0;
  constructor(
    readonly s: string,
    readonly max: number,
  ) {}

  fail(): never {
    throw new JsonError("syntax", "malformed JSON");
  }

  ws(): void {
    const s = this.s;
    let i = this.i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
    this.i = i;
  }

  value(depth: number): JsonValue {
    const c = this.s.charCodeAt(this.i);
    switch (c) {
      case 0x7b: // {
        return this.object(depth);
      case 0x5b: // [
        return this.array(depth);
      case 0x22: // "
        return this.string();
      case 0x74: // t
        return this.literal("true", true);
      case 0x66: // f
        return this.literal("false", false);
      case 0x6e: // n
        return this.literal("null", null);
      default:
        return this.number();
    }
  }

  literal<T>(word: string, v: T): T {
    if (!this.s.startsWith(word, this.i)) this.fail();
    this.i += word.length;
    return v;
  }

  deeper(depth: number): number {
    if (depth >= this.max) throw new JsonError("depth", `JSON nested deeper than ${this.max} levels`);
    return depth + 1;
  }

  object(depth: number): JsonObject {
    const d = this.deeper(depth);
    this.i++;
    const out: JsonObject = {};
    const seen = new Set<string>();
    this.ws();
    if (this.s.charCodeAt(this.i) === 0x7d) {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s.charCodeAt(this.i) !== 0x22) this.fail();
      const key = this.string();
      if (seen.has(key)) throw new JsonError("duplicate", `duplicate member \`${key.slice(0, 64)}\``);
      seen.add(key);
      this.ws();
      if (this.s.charCodeAt(this.i) !== 0x3a) this.fail();
      this.i++;
      this.ws();
      const v = this.value(d);
      if (key === "__proto__") {
        Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
      } else {
        out[key] = v;
      }
      this.ws();
      const c = this.s.charCodeAt(this.i++);
      if (c === 0x2c) continue;
      if (c === 0x7d) return out;
      this.fail();
    }
  }

  array(depth: number): JsonValue[] {
    const d = this.deeper(depth);
    this.i++;
    const out: JsonValue[] = [];
    this.ws();
    if (this.s.charCodeAt(this.i) === 0x5d) {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      out.push(this.value(d));
      this.ws();
      const c = this.s.charCodeAt(this.i++);
      if (c === 0x2c) continue;
      if (c === 0x5d) return out;
      this.fail();
    }
  }

  string(): string {
    const s = this.s;
    let i = this.i + 1;
    let out = "";
    let start = i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (Number.isNaN(c)) this.fail();
      if (c === 0x22) {
        out += s.slice(start, i);
        this.i = i + 1;
        return out;
      }
      if (c < 0x20) this.fail();
      if (c === 0x5c) {
        out += s.slice(start, i);
        const e = s.charCodeAt(i + 1);
        switch (e) {
          case 0x22:
            out += '"';
            break;
          case 0x5c:
            out += "\\";
            break;
          case 0x2f:
            out += "/";
            break;
          case 0x62:
            out += "\b";
            break;
          case 0x66:
            out += "\f";
            break;
          case 0x6e:
            out += "\n";
            break;
          case 0x72:
            out += "\r";
            break;
          case 0x74:
            out += "\t";
            break;
          case 0x75: {
            const hex = s.slice(i + 2, i + 6);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail();
            const unit = Number.parseInt(hex, 16);
            i += 4;
            // A lone surrogate is not valid UTF-8 text (serde_json refuses it too).
            if (unit >= 0xd800 && unit <= 0xdbff) {
              if (s.charCodeAt(i + 2) !== 0x5c || s.charCodeAt(i + 3) !== 0x75) this.fail();
              const lowHex = s.slice(i + 4, i + 8);
              if (!/^[0-9a-fA-F]{4}$/.test(lowHex)) this.fail();
              const low = Number.parseInt(lowHex, 16);
              if (low < 0xdc00 || low > 0xdfff) this.fail();
              out += String.fromCharCode(unit, low);
              i += 6;
            } else if (unit >= 0xdc00 && unit <= 0xdfff) {
              this.fail();
            } else {
              out += String.fromCharCode(unit);
            }
            break;
          }
          default:
            this.fail();
        }
        i += 2;
        start = i;
        continue;
      }
      i++;
    }
  }

  number(): number | JsonFloat {
    const s = this.s;
    const start = this.i;
    let i = start;
    let float = false;
    if (s.charCodeAt(i) === 0x2d) i++;
    const first = s.charCodeAt(i);
    if (first === 0x30) {
      i++;
    } else if (first >= 0x31 && first <= 0x39) {
      while (isDigit(s.charCodeAt(i))) i++;
    } else {
      this.fail();
    }
    if (s.charCodeAt(i) === 0x2e) {
      float = true;
      i++;
      if (!isDigit(s.charCodeAt(i))) this.fail();
      while (isDigit(s.charCodeAt(i))) i++;
    }
    const e = s.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      float = true;
      i++;
      const sign = s.charCodeAt(i);
      if (sign === 0x2b || sign === 0x2d) i++;
      if (!isDigit(s.charCodeAt(i))) this.fail();
      while (isDigit(s.charCodeAt(i))) i++;
    }
    this.i = i;
    const text = s.slice(start, i);
    const v = Number(text);
    return float ? new JsonFloat(v, text) : v;
  }
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** True for a JSON object (not an array, not null). */
export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof JsonFloat);
}

/** RFC 8785 (JCS) canonical form of a JSON value. */
export function canonicalize(v: unknown): string {
  if (v === null || typeof v === "boolean" || typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new TypeError("JCS: not a finite number");
    return JSON.stringify(v);
  }
  if (v instanceof JsonFloat) return canonicalize(v.value);
  if (Array.isArray(v)) return `[${v.map(canonicalize).join(",")}]`;
  if (typeof v === "object") {
    const o = v as Record<string, unknown>;
    // Sorted by UTF-16 code units, as RFC 8785 §3.2.3 says (the default sort).
    const keys = Object.keys(o).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalize(o[k])}`).join(",")}}`;
  }
  throw new TypeError("JCS: not a JSON value");
}
