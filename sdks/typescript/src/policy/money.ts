// Exact amounts and ISO 4217 currencies (the Rust core's `policy::money`): an amount is
// a JSON string (`"10.50"`) or a JSON integer (`500`), never a binary float; at most
// the currency's minor units of decimals, as written; fewer than 10^15.

import { JsonFloat } from "../json.js";
import { CURRENCIES } from "./currencies.js";

/** Most digits before the decimal point. */
export const MAX_AMOUNT_DIGITS = 15;

/** An exact decimal: `mantissa × 10^-scale`. */
export class Decimal {
  constructor(
    readonly mantissa: bigint,
    readonly scale: number,
  ) {}

  static readonly ZERO = new Decimal(0n, 0);

  static fromInt(n: bigint | number): Decimal {
    return new Decimal(BigInt(n), 0);
  }

  /** The mantissa at `scale` decimals (scale ≥ this.scale: exact). */
  private at(scale: number): bigint {
    return this.mantissa * 10n ** BigInt(scale - this.scale);
  }

  cmp(o: Decimal): number {
    const s = Math.max(this.scale, o.scale);
    const a = this.at(s);
    const b = o.at(s);
    return a < b ? -1 : a > b ? 1 : 0;
  }

  add(o: Decimal): Decimal {
    const s = Math.max(this.scale, o.scale);
    return new Decimal(this.at(s) + o.at(s), s);
  }

  sub(o: Decimal): Decimal {
    const s = Math.max(this.scale, o.scale);
    return new Decimal(this.at(s) - o.at(s), s);
  }

  isZero(): boolean {
    return this.mantissa === 0n;
  }

  isNegative(): boolean {
    return this.mantissa < 0n;
  }

  /** Rounded (half away from zero, as rust_decimal's rescale) to `scale` decimals. */
  rescale(scale: number): Decimal {
    if (scale >= this.scale) return new Decimal(this.at(scale), scale);
    const div = 10n ** BigInt(this.scale - scale);
    const neg = this.mantissa < 0n;
    const abs = neg ? -this.mantissa : this.mantissa;
    let q = abs / div;
    if ((abs % div) * 2n >= div) q += 1n;
    return new Decimal(neg ? -q : q, scale);
  }

  /** The value without trailing zeros. */
  normalize(): Decimal {
    let m = this.mantissa;
    let s = this.scale;
    while (s > 0 && m % 10n === 0n) {
      m /= 10n;
      s--;
    }
    return new Decimal(m, s);
  }

  toString(): string {
    const neg = this.mantissa < 0n;
    const digits = (neg ? -this.mantissa : this.mantissa).toString().padStart(this.scale + 1, "0");
    const int = digits.slice(0, digits.length - this.scale);
    const frac = digits.slice(digits.length - this.scale);
    return `${neg ? "-" : ""}${int}${this.scale > 0 ? `.${frac}` : ""}`;
  }
}

/** An amount or currency that breaks the rules; `message` is the registry's text. */
export class MoneyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MoneyError";
  }
}

function clip(s: string): string {
  return [...s].length <= 40 ? s : `${[...s].slice(0, 40).join("")}…`;
}

const LEGACY: Record<string, string> = {
  ATS: "EUR",
  BEF: "EUR",
  CYP: "EUR",
  DEM: "EUR",
  EEK: "EUR",
  ESP: "EUR",
  FIM: "EUR",
  FRF: "EUR",
  GRD: "EUR",
  IEP: "EUR",
  ITL: "EUR",
  LTL: "EUR",
  LUF: "EUR",
  LVL: "EUR",
  MTL: "EUR",
  NLG: "EUR",
  PTE: "EUR",
  SIT: "EUR",
  SKK: "EUR",
  RUR: "RUB",
  TRL: "TRY",
};

/** Checks an active ISO 4217 code (upper case, as ISO writes it); returns it. */
export function parseCurrency(code: string): string {
  const shown = [...code].slice(0, 16).join("");
  const legacy = Object.hasOwn(LEGACY, code) ? LEGACY[code] : undefined;
  if (legacy) throw new MoneyError(`\`${shown}\` is a withdrawn ISO 4217 code; use \`${legacy}\``);
  const row = Object.hasOwn(CURRENCIES, code) ? CURRENCIES[code] : undefined;
  if (!row) throw new MoneyError(`\`${shown}\` is not an ISO 4217 currency code`);
  const [exponent, special, superseded] = row;
  if (superseded) throw new MoneyError(`\`${shown}\` is a withdrawn ISO 4217 code; use \`${superseded}\``);
  if (special || exponent === null) {
    throw new MoneyError(
      `\`${shown}\` is a special ISO 4217 code (metal, test or no currency), not a spendable currency`,
    );
  }
  return code;
}

/** Decimals allowed in `currency`. */
export function minorUnits(currency: string): number {
  return CURRENCIES[currency]?.[0] ?? 0;
}

function tooPrecise(amount: string, currency: string): MoneyError {
  return new MoneyError(
    `\`${amount}\` has more than ${minorUnits(currency)} decimals (the minor units of ${currency})`,
  );
}

function checkMagnitude(d: Decimal, shown: string): void {
  const abs = d.mantissa < 0n ? -d.mantissa : d.mantissa;
  if (abs / 10n ** BigInt(d.scale) >= 10n ** BigInt(MAX_AMOUNT_DIGITS)) {
    throw new MoneyError(`\`${clip(shown)}\` is too large (at most 15 digits before the decimal point)`);
  }
}

function parseAmountString(s: string, currency: string): Decimal {
  if (s.length === 0) throw new MoneyError("`` is not a plain decimal (digits, optionally `.` and digits)");
  if (s[0] === "-") throw new MoneyError("negative amounts are refused");
  const bare = s.toLowerCase().replace(/^\++/, "");
  if (["nan", "inf", "infinity", "snan"].includes(bare)) throw new MoneyError(`\`${clip(s)}\` is not a number`);
  if (/^[0-9]/.test(s) && /[eE]/.test(s)) throw new MoneyError(`exponent form \`${clip(s)}\` is refused: write the digits out`);
  const dot = s.indexOf(".");
  const int = dot < 0 ? s : s.slice(0, dot);
  const frac = dot < 0 ? undefined : s.slice(dot + 1);
  const digits = (p: string) => /^[0-9]+$/.test(p);
  const ok = digits(int) && (int === "0" || !int.startsWith("0")) && (frac === undefined || digits(frac));
  if (!ok) throw new MoneyError(`\`${clip(s)}\` is not a plain decimal (digits, optionally \`.\` and digits)`);
  if (int.length > MAX_AMOUNT_DIGITS) {
    throw new MoneyError(`\`${clip(s)}\` is too large (at most 15 digits before the decimal point)`);
  }
  const f = frac ?? "";
  if (f.length > minorUnits(currency)) throw tooPrecise(clip(s), currency);
  return new Decimal(BigInt(int + f), f.length);
}

/** Parses an amount in `currency` from its JSON form (a string or an integer). */
export function parseAmount(value: unknown, currency: string): Decimal {
  if (typeof value === "string") return parseAmountString(value, currency);
  if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new MoneyError(`JSON floats are refused: write the amount as a string, e.g. \`"${value}"\``);
    if (value < 0) throw new MoneyError("negative amounts are refused");
    const d = Decimal.fromInt(BigInt(value));
    checkMagnitude(d, String(value));
    return d;
  }
  if (value instanceof JsonFloat) {
    if (value.text.startsWith("-")) throw new MoneyError("negative amounts are refused");
    throw new MoneyError(`JSON floats are refused: write the amount as a string, e.g. \`"${value.value}"\``);
  }
  throw new MoneyError("an amount must be a string such as `\"10.50\"` or an integer");
}

/** Checks an amount a caller built: not negative, not too large, not too precise. */
export function checkAmount(amount: Decimal, currency: string): void {
  if (amount.isNegative()) throw new MoneyError("negative amounts are refused");
  checkMagnitude(amount, amount.toString());
  if (amount.normalize().scale > minorUnits(currency)) throw tooPrecise(amount.toString(), currency);
}

/** A request's money: amount and currency, the amount positive. */
export interface Money {
  amount: Decimal;
  currency: string;
}

/** Reads a request's `amount` and `currency` (errors name the member). */
export function moneyFromJson(amount: unknown, currency: unknown): Money {
  if (typeof currency !== "string") throw new MoneyError("currency: a currency must be a string such as `\"USD\"`");
  let code: string;
  try {
    code = parseCurrency(currency);
  } catch (e) {
    throw new MoneyError(`currency: ${(e as Error).message}`);
  }
  let d: Decimal;
  try {
    d = parseAmount(amount, code);
  } catch (e) {
    throw new MoneyError(`amount: ${(e as Error).message}`);
  }
  if (d.isZero()) throw new MoneyError("amount: a spend of 0 is refused: an amount must be positive");
  return { amount: d, currency: code };
}

/** `amount currency` with the currency's minor units. */
export function formatMoney(d: Decimal, currency: string): string {
  return `${d.rescale(minorUnits(currency)).toString()} ${currency}`;
}
