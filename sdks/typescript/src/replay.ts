// The receiver's own replay cache for proofs of possession: a DPoP proof is
// remembered by (jkt, jti), a message signature by (keyid, nonce), in separate
// namespaces, each until the last second its own checks would accept it again. Bounded:
// when full of live entries a new proof is refused (503), never a live one evicted
// (which would let it be replayed). Per process, like the Rust layer's.

/** Default bound on remembered proofs (about 80 MiB at most: keys are kept as text). */
export const DEFAULT_REPLAY_CAPACITY = 200_000;

/** Why a proof could not be claimed. */
export type ReplayOutcome = "ok" | "replay" | "full";

export class ReplayCache {
  private readonly seen = new Map<string, number>();
  private lastSweep = 0;

  constructor(readonly capacity: number = DEFAULT_REPLAY_CAPACITY) {
    if (!Number.isSafeInteger(capacity) || capacity <= 0) throw new RangeError("replay capacity must be a positive integer");
  }

  /** Claims a proof's single-use value until `lastValid` (Unix s, inclusive). */
  claim(ns: "dpop" | "sig", id: string, unique: string, lastValid: number, now: number): ReplayOutcome {
    // Length-prefixed so no two (id, unique) pairs share a key.
    const key = `${ns}\u0000${id.length}:${id}\u0000${unique}`;
    const until = this.seen.get(key);
    if (until !== undefined && until >= now) return "replay";
    if (this.seen.size >= this.capacity || now - this.lastSweep >= 10) this.sweep(now);
    if (this.seen.size >= this.capacity) return "full";
    this.seen.set(key, lastValid);
    return "ok";
  }

  /** Live entries. */
  get size(): number {
    return this.seen.size;
  }

  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [k, until] of this.seen) if (until < now) this.seen.delete(k);
  }
}
