// Identifiers: a prefix and 26 characters of lowercase RFC 4648 base32 (128 bits).

const ID = /^[a-z2-7]{26}$/;

/** True if `value` is an id with this prefix (`agt_`, `tok_`, `iss_`, `rcv_`). */
export function isId(value: unknown, prefix: "agt_" | "tok_" | "iss_" | "rcv_" | "rcp_"): value is string {
  return typeof value === "string" && value.startsWith(prefix) && ID.test(value.slice(prefix.length));
}
