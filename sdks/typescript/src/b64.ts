// Strict base64url without padding (RFC 7515 §2, RFC 4648 §5): only the URL-safe
// alphabet, no `=`, no whitespace, and zero unused low bits, so every byte string has
// exactly one accepted encoding (as the Rust core's decoder).

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const A: string[] = ALPHABET.split("");
const DECODE = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;

/** Thrown for text that is not strict base64url. */
export class Base64Error extends Error {
  constructor() {
    super("invalid base64url (padding, a character outside the URL-safe alphabet, or non-canonical bits)");
    this.name = "Base64Error";
  }
}

/** Encodes bytes as unpadded base64url. */
export function encode(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8) | (bytes[i + 2] as number);
    out += (A[n >> 18] as string) + (A[(n >> 12) & 63] as string) + (A[(n >> 6) & 63] as string) + (A[n & 63] as string);
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = (bytes[i] as number) << 16;
    out += (A[n >> 18] as string) + (A[(n >> 12) & 63] as string);
  } else if (rest === 2) {
    const n = ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8);
    out += (A[n >> 18] as string) + (A[(n >> 12) & 63] as string) + (A[(n >> 6) & 63] as string);
  }
  return out;
}

/** Encodes a string's UTF-8 bytes as unpadded base64url. */
export function encodeText(text: string): string {
  return encode(new TextEncoder().encode(text));
}

/** Decodes strict unpadded base64url; throws {@link Base64Error} otherwise. */
export function decode(text: string): Uint8Array {
  const len = text.length;
  if (len % 4 === 1) throw new Base64Error();
  const out = new Uint8Array(Math.floor((len * 3) / 4));
  let o = 0;
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < len; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? (DECODE[c] as number) : -1;
    if (v < 0) throw new Base64Error();
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  // The leftover bits of the last character must be zero (canonical encoding).
  if (bits > 0 && (acc & ((1 << bits) - 1)) !== 0) throw new Base64Error();
  return out;
}

/** Decodes standard base64 (RFC 4648 §4) with its padding, strictly. */
export function decodeStandard(text: string): Uint8Array {
  if (text.length % 4 !== 0) throw new Base64Error();
  let body = text;
  if (body.endsWith("==")) body = body.slice(0, -2);
  else if (body.endsWith("=")) body = body.slice(0, -1);
  if (/[^A-Za-z0-9+/]/.test(body)) throw new Base64Error();
  return decode(body.replace(/\+/g, "-").replace(/\//g, "_"));
}

/** Encodes bytes as standard padded base64 (RFC 4648 §4). */
export function encodeStandard(bytes: Uint8Array): string {
  const url = encode(bytes).replace(/-/g, "+").replace(/_/g, "/");
  return url + "=".repeat((4 - (url.length % 4)) % 4);
}
