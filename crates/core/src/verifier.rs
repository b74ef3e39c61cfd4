//! Token-kind dispatch, once: a [`Verifier`] holds every key set a registry trusts
//! (its own signing keys, issuers' registered keys) and turns a token's text into a
//! [`Verified`] token, or the reason it is not one.
//!
//! Three kinds of token reach a registry: its own agent tokens, agent tokens an issuer
//! signed itself with a registered key, and AgentOAuth consent tokens signed with a
//! registered EdDSA issuer key. Which key set applies is decided here from the header
//! alone (never from a key the token offers), so no caller tries keys; what a
//! revoked issuer key or a suspended agent means is the verdict's business, not this.

use std::collections::HashMap;

use crate::consent::{self, ActVersion};
use crate::ids::IssuerId;
use crate::jws::{self, Compact, Header};
use crate::keys::{Algorithm, VerifyingKey};
use crate::token::{
    self, AGENT_TOKEN_TYP, AgentInfo, KeyResolver, KeySet, TokenError, VerifiedToken, VerifyOptions,
};

/// Most of one issuer's EdDSA keys tried for a consent token whose `kid` is not a
/// thumbprint: it bounds the signature checks one token can cost. An issuer with more
/// keys makes its consent tokens name the key by its thumbprint.
pub const MAX_CONSENT_KEYS: usize = 8;

/// One issuer's own public key (self-custody), ready to verify.
#[derive(Debug)]
pub struct IssuerKeyEntry {
    /// The key (its `kid` is the RFC 7638 thumbprint).
    pub key: VerifyingKey,
    /// The issuer it belongs to: the only `iss` its tokens may carry.
    pub issuer_id: IssuerId,
    /// The issuer's registered name, shown in verify answers (never the token's
    /// `agent.issuer`, which the issuer wrote itself).
    pub issuer_name: String,
    /// The name's key ([`crate::names::issuer_name_key`]) if this issuer holds it,
    /// which a consent token's `iss` may name; `None` for an issuer found by id only.
    pub issuer_name_key: Option<String>,
    /// When it was revoked: its tokens are `TOKEN_REVOKED` from then on.
    pub revoked_at_ms: Option<i64>,
    /// The issuer's own name for the key (unique among its keys): a consent token
    /// whose `iss` names the issuer and whose `kid` is this is verified with this key
    /// only.
    pub alias: Option<String>,
}

/// Every issuer's registered keys by kid, revoked ones included (a token signed by a
/// revoked key must be recognised as genuine to answer `TOKEN_REVOKED`/`KEY_REVOKED`).
#[derive(Debug, Default)]
pub struct IssuerKeyRing {
    keys: HashMap<String, IssuerKeyEntry>,
    /// The exact `agent+jwt` header segment `bonafide token sign` writes for each key
    /// (by kid), already checked: such a token skips header decoding, as registry
    /// tokens do with [`KeySet`].
    headers: HashMap<String, (Header, String)>,
}

impl IssuerKeyRing {
    /// Adds a key under its kid (replacing one of the same kid).
    pub fn insert(&mut self, entry: IssuerKeyEntry) {
        let key = &entry.key;
        if let Ok(b64) = jws::header_b64(key.alg(), AGENT_TOKEN_TYP, key.kid()) {
            let header = Header {
                alg: key.alg(),
                kid: key.kid().to_owned(),
                typ: Some(AGENT_TOKEN_TYP.to_owned()),
            };
            self.headers.insert(b64, (header, key.kid().to_owned()));
        }
        self.keys.insert(key.kid().to_owned(), entry);
    }

    /// The key with this kid.
    pub fn get(&self, kid: &str) -> Option<&IssuerKeyEntry> {
        self.keys.get(kid)
    }

    /// The key and checked header for a header segment that is byte for byte the one
    /// Bonafide writes for that key; `None` means "decode it the normal way".
    pub fn known_header(&self, header_b64: &str) -> Option<(&Header, &IssuerKeyEntry)> {
        let (header, kid) = self.headers.get(header_b64)?;
        Some((header, self.keys.get(kid)?))
    }

    /// True if no issuer has registered a key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Every key, revoked ones included, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &IssuerKeyEntry> {
        self.keys.values()
    }
}

/// The issuer key that signed a token (self-custody), as it stood when checked.
#[derive(Debug, Clone)]
pub struct IssuerSigned {
    /// The key's kid (its RFC 7638 thumbprint).
    pub kid: String,
    /// Its issuer.
    pub issuer_id: IssuerId,
    /// Its issuer's registered name.
    pub issuer_name: String,
    /// When the key was revoked.
    pub revoked_at_ms: Option<i64>,
    /// `Some` for an AgentOAuth consent token: its scopes are then the agent's
    /// registered ones.
    pub consent: Option<ActVersion>,
    /// A consent token's own `scope` (space-separated in the token), if it has one:
    /// it can only narrow the registered scopes.
    pub consent_scopes: Option<Vec<String>>,
    /// For a consent token, the id it was revoked under before every issuer-signed
    /// token had one id ([`consent::legacy_token_id`]): a revocation recorded then
    /// still holds.
    pub legacy_id: Option<crate::ids::TokenId>,
}

impl IssuerSigned {
    fn of(entry: &IssuerKeyEntry) -> Self {
        IssuerSigned {
            kid: entry.key.kid().to_owned(),
            issuer_id: entry.issuer_id.clone(),
            issuer_name: entry.issuer_name.clone(),
            revoked_at_ms: entry.revoked_at_ms,
            consent: None,
            consent_scopes: None,
            legacy_id: None,
        }
    }
}

/// A token whose signature, header and claims checked out (pipeline steps 1–4), and
/// the key behind it. Only [`Verifier::verify`] makes one from text.
#[derive(Debug)]
pub struct Verified {
    /// The token, in the agent-token shape whatever its kind.
    pub token: VerifiedToken,
    /// The issuer key that signed it; `None` when the registry's own key did.
    pub signer: Option<IssuerSigned>,
}

/// Every key set a registry trusts, borrowed from one snapshot of them.
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'a> {
    /// The registry's own verifying keys.
    pub registry: &'a KeySet,
    /// Issuers' registered keys.
    pub issuers: &'a IssuerKeyRing,
    /// `did:web:<host>:agents:`: a consent token may name its agent by its `did:web`.
    pub agent_did_prefix: &'a str,
}

impl Verifier<'_> {
    /// Pipeline steps 1–4 with the key the token's header picks: the registry's keys
    /// first, else a registered issuer key (an agent token, or a consent token). An
    /// issuer-signed token must carry that key's issuer id in `iss` (any other `iss`
    /// is `ISSUER_UNKNOWN`, so one issuer's key never speaks for another) and is known
    /// by (issuer, jti) from here on. Revocation of the issuer key is not checked
    /// here: the caller decides what a revoked key means.
    pub fn verify(
        &self,
        text: &str,
        opts: &VerifyOptions,
        now_s: i64,
    ) -> Result<Verified, TokenError> {
        let registry_signed = |v: VerifiedToken| Verified {
            token: v,
            signer: None,
        };
        let compact = Compact::split(text, opts.max_token_bytes).ok();
        // The header is read once: a header the registry writes (the common case) or
        // one `bonafide token sign` writes for a registered key picks its key by map
        // lookup.
        if let Some(b64) = compact.as_ref().map(|c| c.header_b64) {
            if self.registry.known_header(b64).is_some() {
                return token::verify(text, self.registry, opts, now_s).map(registry_signed);
            }
            if let Some((header, entry)) = self.issuers.known_header(b64) {
                let resolver = OneKey {
                    key: &entry.key,
                    known: Some((b64, header)),
                };
                return issuer_signed(text, entry, &resolver, opts, now_s);
            }
        }
        if !self.issuers.is_empty()
            && let Some(candidate) = consent::dangerous::candidate(text, opts)
        {
            return self.consent(text, &candidate, opts, now_s);
        }
        if let Some(entry) = self.issuer_key_for(compact.as_ref(), opts) {
            let resolver = OneKey {
                key: &entry.key,
                known: None,
            };
            return issuer_signed(text, entry, &resolver, opts, now_s);
        }
        token::verify(text, self.registry, opts, now_s).map(registry_signed)
    }

    /// The registered issuer key a token's header `kid` names, if it names one and
    /// not a key of the registry's own (those are looked up first). Anything
    /// malformed is left to [`token::verify`] to refuse with its precise error.
    fn issuer_key_for(
        &self,
        compact: Option<&Compact<'_>>,
        opts: &VerifyOptions,
    ) -> Option<&IssuerKeyEntry> {
        if self.issuers.is_empty() {
            return None;
        }
        let header = jws::decode_header(compact?.header_b64, opts.json).ok()?;
        if self.registry.key(&header.kid).is_some() {
            return None;
        }
        self.issuers.get(&header.kid)
    }

    /// An AgentOAuth consent token, verified with a registered EdDSA issuer key, never
    /// one the token offers. The header `kid` is the issuer's own name for the key: if
    /// it is a registered thumbprint that key is used; otherwise the unverified `iss`
    /// only picks the issuer ([`names_issuer`]: exactly one), and its EdDSA keys, no
    /// other issuer's, are tried (unrevoked first, at most [`MAX_CONSENT_KEYS`]); the
    /// token is accepted only if one verifies and its `iss` names that key's issuer.
    /// The `agent` must be an `agt_…` id or the agent's `did:web` (`AGENT_UNKNOWN`
    /// otherwise; the verdict then checks it is that issuer's). The result is in the
    /// agent-token shape, so every later rule applies unchanged; its name,
    /// description and scopes come from the registration, in the verdict.
    fn consent(
        &self,
        text: &str,
        candidate: &consent::dangerous::Candidate,
        opts: &VerifyOptions,
        now_s: i64,
    ) -> Result<Verified, TokenError> {
        let named = self
            .issuers
            .get(&candidate.header.kid)
            .filter(|e| e.key.alg() == Algorithm::EdDSA);
        let entries: Vec<&IssuerKeyEntry> = match (named, &candidate.iss) {
            (Some(entry), _) => vec![entry],
            (None, None) => return Err(TokenError::Claims("`iss` is required".into())),
            (None, Some(iss)) => match self.aliased(iss, &candidate.header.kid) {
                Some(entry) => vec![entry],
                None => self.consent_keys(iss)?,
            },
        };
        let mut error = TokenError::UnknownKey;
        for entry in entries {
            let mut opts = opts.clone();
            // The token's own spelling of the issuer, once it names this key's issuer;
            // any other `iss` fails as `ISSUER_UNKNOWN` after the signature.
            opts.issuers = match &candidate.iss {
                Some(iss) if names_issuer(iss, entry) => vec![iss.clone()],
                _ => vec![entry.issuer_id.to_string()],
            };
            // A key named by its registered thumbprint says whose token it is: `iss`
            // may then be left out (AgentOAuth's SDK does by default).
            let key_issuer = named.map(|e| e.issuer_id.as_str());
            let verified = match consent::verify_with(text, &entry.key, &opts, now_s, key_issuer) {
                Ok(v) => v,
                Err(TokenError::BadSignature) => {
                    error = TokenError::BadSignature;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let agent_id = verified
                .agent_id(self.agent_did_prefix)
                .ok_or(TokenError::AgentUnknown)?;
            let header = verified.header.clone();
            let version = verified.claims.version;
            let legacy_id = consent::legacy_token_id(&entry.issuer_id, &verified.claims.jti);
            let consent_scopes = verified.claims.scope.as_ref().map(|s| {
                s.split(' ')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            });
            let agent = AgentInfo {
                name: String::new(),
                issuer: entry.issuer_name.clone(),
                scopes: Vec::new(),
                description: None,
            };
            let claims = verified.into_agent_claims(&entry.issuer_id, agent_id, agent, now_s)?;
            let mut signer = IssuerSigned::of(entry);
            signer.consent = Some(version);
            signer.consent_scopes = consent_scopes;
            signer.legacy_id = Some(legacy_id);
            return Ok(Verified {
                token: VerifiedToken { header, claims },
                signer: Some(signer),
            });
        }
        Err(error)
    }

    /// The EdDSA key the one issuer `iss` names registered under the alias `kid`
    /// (aliases are unique per issuer, and `iss` names at most one issuer).
    fn aliased(&self, iss: &str, kid: &str) -> Option<&IssuerKeyEntry> {
        self.issuers.entries().find(|e| {
            e.key.alg() == Algorithm::EdDSA
                && e.alias.as_deref() == Some(kid)
                && names_issuer(iss, e)
        })
    }

    /// The EdDSA keys of the one issuer a consent token's `iss` names, unrevoked
    /// first (most recently revoked next), at most [`MAX_CONSENT_KEYS`].
    fn consent_keys(&self, iss: &str) -> Result<Vec<&IssuerKeyEntry>, TokenError> {
        let mut found: Vec<_> = self
            .issuers
            .entries()
            .filter(|e| e.key.alg() == Algorithm::EdDSA && names_issuer(iss, e))
            .collect();
        // `names_issuer` names one issuer at most (ids and name keys are unique); were
        // that ever broken, no issuer is picked rather than a mix whose keys crowd
        // each other out.
        let first = found.first().map(|e| e.issuer_id.clone());
        if found.is_empty() || found.iter().any(|e| Some(&e.issuer_id) != first.as_ref()) {
            return Err(TokenError::IssuerUnknown(iss.chars().take(128).collect()));
        }
        found.sort_by(|a, b| {
            let rank = |e: &IssuerKeyEntry| {
                (
                    e.revoked_at_ms.is_some(),
                    std::cmp::Reverse(e.revoked_at_ms),
                    e.key.kid().to_owned(),
                )
            };
            rank(a).cmp(&rank(b))
        });
        found.truncate(MAX_CONSENT_KEYS);
        Ok(found)
    }
}

/// True if a consent token's `iss` names this key's issuer: its id (`iss_…`), or (if
/// `iss` is not an issuer id) the name the issuer holds, in any spelling
/// [`crate::names::issuer_name_key`] makes one (case, `https://`, trailing dots). Ids
/// are unique and a name has at most one holder, so an `iss` names at most one issuer.
fn names_issuer(iss: &str, entry: &IssuerKeyEntry) -> bool {
    if IssuerId::try_from(iss).is_ok() {
        return iss == entry.issuer_id.as_str();
    }
    entry
        .issuer_name_key
        .as_deref()
        .is_some_and(|key| key == crate::names::issuer_name_key(iss))
}

/// A resolver of exactly one key, with the header segment already matched to it when
/// the token's header is byte for byte the one Bonafide writes for that key.
struct OneKey<'a> {
    key: &'a VerifyingKey,
    known: Option<(&'a str, &'a Header)>,
}

impl KeyResolver for OneKey<'_> {
    fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        (kid == self.key.kid()).then_some(self.key)
    }

    fn known_header(&self, header_b64: &str) -> Option<(&Header, &VerifyingKey)> {
        let (b64, header) = self.known?;
        (b64 == header_b64).then_some((header, self.key))
    }
}

/// Steps 1–4 for a token signed by a registered issuer key: its `iss` must be that
/// key's issuer id.
fn issuer_signed(
    text: &str,
    entry: &IssuerKeyEntry,
    resolver: &OneKey<'_>,
    opts: &VerifyOptions,
    now_s: i64,
) -> Result<Verified, TokenError> {
    let mut opts = opts.clone();
    opts.issuers = vec![entry.issuer_id.to_string()];
    let mut verified = token::verify(text, resolver, &opts, now_s)?;
    // The issuer chose `jti`: from here on the token is known by (issuer, jti).
    verified.claims.jti = token::issuer_token_id(&entry.issuer_id, verified.claims.jti.as_str());
    Ok(Verified {
        token: verified,
        signer: Some(IssuerSigned::of(entry)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AgentId, TokenId};
    use crate::keys::SigningKey;
    use crate::token::AgentClaims;

    const REGISTRY: &str = "https://registry.example";
    const NOW: i64 = 1_700_000_000;

    fn claims(iss: &str) -> AgentClaims {
        AgentClaims {
            iss: iss.to_owned(),
            sub: AgentId::from_random([1; 16]),
            aud: None,
            iat: NOW,
            nbf: None,
            exp: NOW + 600,
            jti: TokenId::from_random([2; 16]),
            agent: AgentInfo {
                name: "a".into(),
                issuer: "i".into(),
                scopes: vec!["read:docs".into()],
                description: None,
            },
            scope: None,
            user: None,
            policy: None,
            policy_hash: None,
            cnf: None,
            act: None,
            ancestor_jtis: None,
            status: None,
        }
    }

    fn verifying(k: &SigningKey) -> VerifyingKey {
        VerifyingKey::from_jwk(k.verifying_key().jwk()).unwrap()
    }

    struct Keys {
        registry_key: SigningKey,
        issuer_key: SigningKey,
        issuer: IssuerId,
        registry: KeySet,
        issuers: IssuerKeyRing,
    }

    fn keys() -> Keys {
        let registry_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let issuer_key = SigningKey::generate(Algorithm::ES256).unwrap();
        let issuer = IssuerId::from_random([3; 16]);
        let mut registry = KeySet::new();
        registry.insert(verifying(&registry_key));
        let mut issuers = IssuerKeyRing::default();
        issuers.insert(IssuerKeyEntry {
            key: verifying(&issuer_key),
            issuer_id: issuer.clone(),
            issuer_name: "Acme".into(),
            issuer_name_key: Some("acme".into()),
            revoked_at_ms: Some(5),
            alias: None,
        });
        Keys {
            registry_key,
            issuer_key,
            issuer,
            registry,
            issuers,
        }
    }

    fn verify(k: &Keys, text: &str) -> Result<Verified, TokenError> {
        let v = Verifier {
            registry: &k.registry,
            issuers: &k.issuers,
            agent_did_prefix: "did:web:registry.example:agents:",
        };
        let mut opts = VerifyOptions::for_issuer(REGISTRY);
        opts.max_lifetime_secs = Some(3600);
        v.verify(text, &opts, NOW)
    }

    #[test]
    fn a_registry_token_is_the_registry_s() {
        let k = keys();
        let text = token::sign(&k.registry_key, &claims(REGISTRY)).unwrap();
        let v = verify(&k, &text).unwrap();
        assert!(v.signer.is_none());
        assert_eq!(v.token.claims.jti, TokenId::from_random([2; 16]));
    }

    #[test]
    fn an_issuer_signed_token_names_its_key_and_is_known_by_issuer_and_jti() {
        let k = keys();
        let text = token::sign(&k.issuer_key, &claims(k.issuer.as_str())).unwrap();
        let v = verify(&k, &text).unwrap();
        let signer = v.signer.unwrap();
        assert_eq!(signer.issuer_id, k.issuer);
        assert_eq!(signer.kid, k.issuer_key.kid());
        // Revocation is reported, not judged: the verdict decides what it means.
        assert_eq!(signer.revoked_at_ms, Some(5));
        assert!(signer.consent.is_none());
        assert_eq!(
            v.token.claims.jti,
            token::issuer_token_id(&k.issuer, TokenId::from_random([2; 16]).as_str())
        );
    }

    #[test]
    fn an_issuer_key_never_speaks_for_the_registry_or_another_issuer() {
        let k = keys();
        for iss in [REGISTRY, "iss_00000000000000000000000000"] {
            let text = token::sign(&k.issuer_key, &claims(iss)).unwrap();
            assert!(
                matches!(verify(&k, &text), Err(TokenError::IssuerUnknown(_))),
                "{iss}"
            );
        }
    }

    #[test]
    fn a_key_nobody_registered_verifies_nothing() {
        let k = keys();
        let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let text = token::sign(&stranger, &claims(REGISTRY)).unwrap();
        assert!(verify(&k, &text).is_err());
        let text = token::sign(&stranger, &claims(k.issuer.as_str())).unwrap();
        assert!(verify(&k, &text).is_err());
    }

    #[test]
    fn a_consent_name_picks_one_issuer_only() {
        let k = keys();
        let entry = k.issuers.get(k.issuer_key.kid()).unwrap();
        assert!(names_issuer("acme", entry));
        assert!(names_issuer("https://ACME/", entry));
        assert!(names_issuer(k.issuer.as_str(), entry));
        assert!(!names_issuer("acme-two", entry));
        assert!(!names_issuer(
            IssuerId::from_random([9; 16]).as_str(),
            entry
        ));
    }
}
