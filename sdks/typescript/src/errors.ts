// The wire codes: the same strings the registry answers (`ErrorCode` in its OpenAPI
// document), so a refusal reads the same offline and online.

/** Codes a token or proof is refused with. */
export type VerifyCode =
  | "TOKEN_INVALID"
  | "TOKEN_EXPIRED"
  | "TOKEN_NOT_YET_VALID"
  | "TOKEN_REVOKED"
  | "AUDIENCE_MISMATCH"
  | "ISSUER_UNKNOWN"
  | "AGENT_SUSPENDED"
  | "AGENT_UNKNOWN"
  | "PROOF_REQUIRED"
  | "PROOF_INVALID"
  | "REPLAY";

/** A token, proof or status check that failed: `code` is the wire code. */
export class VerifyError extends Error {
  constructor(
    readonly code: VerifyCode,
    message: string,
    /** Finer reasons (`BINDING_REQUIRED`, `KEY_ROTATED`, …) when the registry gave them. */
    readonly reasons: string[] = [code],
  ) {
    super(message);
    this.name = "VerifyError";
  }
}

/** `TOKEN_INVALID` with a message. */
export function invalid(message: string): VerifyError {
  return new VerifyError("TOKEN_INVALID", message);
}
