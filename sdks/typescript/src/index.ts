// Bonafide SDK: verify AI agents offline or through a registry, and make their proofs.

export { AgentKey, agentFetch, dpopProof, type SignOptions, signRequest } from "./agent.js";
export {
  ApiError,
  type ExchangeRequest,
  type ExchangeResponse,
  RegistryClient,
  type VerifyProof,
  type VerifyRequest,
  type VerifyResponse,
} from "./client.js";
export { accessTokenHash, DpopError, normalizeHtu, type ProofCheck, type VerifiedProof, verifyProof } from "./dpop.js";
export { invalid, type VerifyCode, VerifyError } from "./errors.js";
export { FetchError } from "./http.js";
export { contentDigest, HttpSigError, type SigCheck, type SigMessage, type SigVerified, signMessage, verifySignature } from "./httpsig.js";
export { JsonError, JsonFloat, canonicalize } from "./json.js";
export { type Algorithm, type Jwk, type Jwks, KeyError, thumbprint, VerifyingKey } from "./keys.js";
export { agentRequest, withAgent } from "./middleware.js";
export {
  Decimal,
  type Decision,
  Policy,
  PolicyError,
  type PolicyRequest,
  type Reason,
  type ReasonCode,
  type Remaining,
  moneyFromJson,
} from "./policy/index.js";
export {
  type AgentKeySource,
  type AgentRequest,
  headerPairs,
  type ProofKind,
  type ProofPolicy,
  Receiver,
  type ReceiverConfig,
  Rejection,
  VerifiedAgent,
} from "./receiver.js";
export { ReplayCache } from "./replay.js";
export {
  registryLists,
  type StatusCheck,
  StatusError,
  StatusList,
  type StatusListConfig,
  StatusLists,
  type TrustedLists,
  verifyStatusList,
} from "./statuslist.js";
export {
  type AgentClaims,
  type AgentInfo,
  KeySet,
  policyOf,
  type VerifyOptions,
  verifyToken,
} from "./token.js";
