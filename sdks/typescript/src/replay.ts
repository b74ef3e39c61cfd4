// The receiver's own replay cache for proofs of possession: a DPoP proof is
// remembered by (jkt, jti), a message signature by (keyid, nonce), in separate
// namespaces, each until the last second its own checks would accept it again. Bounded:
// when full of live entries a new proof is refused (503), never a live one evicted
// (which would let it be replayed). Per process, like the Rust layer's, whose entry
// keys it shares: the SHA-256 of the namespace and both parts, length-prefixed, so an
// entry costs the same whatever the client sent (a signature's `nonce` is otherwise
// only bounded by the header size).

import { sha256 } from "./keys.js";

/** Default bound on remembered proofs (entries are a 43-character digest and a number). */
export const DEFAULT_REPLAY_CAPACITY = 200_000;

/** Why a proof could not be claimed. */
export type ReplayOutcome = "ok" | "replay" | "full";

const te = new TextEncoder();

function lengthPrefixed(parts: Uint8Array[]): Uint8Array {
  let n = 1;
  for (const p of parts) n += 8 + p.length;
  const out = new Uint8Array(n);
  const view = new DataView(out.buffer);
  let at = 1;
  for (const p of parts) {
    view.setBigUint64(at, BigInt(p.length));
    out.set(p, at + 8);
    at += 8 + p.length;
  }
  return out;
}

function b64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export class ReplayCache {
  private readonly seen = new Map<string, number>();
  private lastSweep = 0;
  /** Passes over the whole cache (a metric). */
  sweeps = 0;

  constructor(readonly capacity: number = DEFAULT_REPLAY_CAPACITY) {
    if (!Number.isSafeInteger(capacity) || capacity <= 0) throw new RangeError("replay capacity must be a positive integer");
  }

  /** Claims a proof's single-use value until `lastValid` (Unix s, inclusive). */
  async claim(ns: "dpop" | "sig", id: string, unique: string, lastValid: number, now: number): Promise<ReplayOutcome> {
    const input = lengthPrefixed([te.encode(id), te.encode(unique)]);
    input[0] = ns === "dpop" ? 1 : 2;
    const key = b64(await sha256(input));
    // From here to the end nothing awaits: the check and the insert are one step.
    const until = this.seen.get(key);
    if (until !== undefined && until >= now) return "replay";
    // Sweep when half full or every 10 s, at most once a second: entries expire by
    // the second and none is inserted already expired, so a second pass within one
    // second frees nothing (a full cache under a flood would otherwise pay a whole
    // pass for every request).
    if ((this.seen.size >= this.capacity / 2 || now - this.lastSweep >= 10) && this.lastSweep < now) this.sweep(now);
    if (this.seen.size >= this.capacity) return "full";
    this.seen.set(key, lastValid);
    return "ok";
  }

  /** Live entries (and expired ones not yet swept). */
  get size(): number {
    return this.seen.size;
  }

  /** Bytes of the keys held (a metric). */
  get keyBytes(): number {
    let n = 0;
    for (const k of this.seen.keys()) n += k.length;
    return n;
  }

  private sweep(now: number): void {
    this.sweeps++;
    this.lastSweep = now;
    for (const [k, until] of this.seen) if (until < now) this.seen.delete(k);
  }
}
