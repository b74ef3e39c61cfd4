//! The read model's keys: the registry's own signing keys (a ring swapped whole on
//! rotation), issuers' own keys, and the receipt-signing key.

use std::collections::HashMap;

use bonafide_core::ids::IssuerId;
use bonafide_core::jws::{self, Header};
use bonafide_core::keys::{Algorithm, Jwk, SigningKey, VerifyingKey};
use bonafide_core::token::{AGENT_TOKEN_TYP, KeySet};
use bonafide_store::{IssuerKey, KeyState, ReceiptKeyRecord, SigningKeyRecord, Store, StoreError};

use crate::time::now_ms;

/// The registry's keys: one that signs, and every key still published.
#[derive(Debug)]
pub struct KeyRing {
    /// Signs new tokens.
    pub active: SigningKey,
    /// Verifies: the active key and retired keys until `publish_until`.
    pub verifying: KeySet,
    /// `(kid, publish_until_s)` of retired keys still in `verifying`.
    pub retired: Vec<(String, i64)>,
    /// Kids in the order loaded, to notice changes made by another process.
    pub fingerprint: Vec<String>,
}

impl KeyRing {
    /// Builds the ring from stored records, dropping retired keys whose tokens have
    /// all expired (with leeway).
    pub fn from_records(
        records: &[SigningKeyRecord],
        now_s: i64,
        leeway_s: i64,
    ) -> Result<Self, StoreError> {
        let mut active = None;
        let mut verifying = KeySet::new();
        let mut retired = Vec::new();
        let mut fingerprint = Vec::new();
        for r in records {
            fingerprint.push(key_fingerprint(r));
            let key = load_key(r)?;
            match r.state {
                KeyState::Active => {
                    verifying.insert(clone_verifying(&key)?);
                    active = Some(key);
                }
                KeyState::Retired => {
                    let until = r.publish_until_s.unwrap_or(0);
                    if until.saturating_add(leeway_s) > now_s {
                        verifying.insert(clone_verifying(&key)?);
                        retired.push((r.kid.clone(), until));
                    }
                }
            }
        }
        let active = active.ok_or_else(|| StoreError::Backend("no active signing key".into()))?;
        Ok(KeyRing {
            active,
            verifying,
            retired,
            fingerprint,
        })
    }
}

pub(crate) fn clone_verifying(key: &SigningKey) -> Result<VerifyingKey, StoreError> {
    VerifyingKey::from_jwk(key.verifying_key().jwk())
        .map_err(|e| StoreError::Backend(e.to_string()))
}

/// What identifies a key record's published state: kid, state and publication end.
pub(crate) fn key_fingerprint(r: &SigningKeyRecord) -> String {
    format!("{}:{:?}:{:?}", r.kid, r.state, r.publish_until_s)
}

pub(crate) fn load_key(r: &SigningKeyRecord) -> Result<SigningKey, StoreError> {
    let key = SigningKey::from_pkcs8_pem(&r.private_pem)
        .map_err(|e| StoreError::Backend(format!("signing key {}: {e}", r.kid)))?;
    if key.alg() != r.alg || key.kid() != r.kid {
        return Err(StoreError::Backend(format!(
            "signing key {} does not match its record",
            r.kid
        )));
    }
    Ok(key)
}

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
    /// The name's key ([`bonafide_core::names::issuer_name_key`]) if this issuer holds
    /// it (`Store::issuer_by_name`), which a consent token's `iss` may name; `None`
    /// for a twin created before names were unique by key, found by id only.
    pub issuer_name_key: Option<String>,
    /// When it was revoked: its tokens are `TOKEN_REVOKED` from then on.
    pub revoked_at_ms: Option<i64>,
}

/// Every issuer's registered keys by kid, revoked ones included (a token signed by a
/// revoked key must be recognised as genuine to answer `TOKEN_REVOKED`/`KEY_REVOKED`).
#[derive(Debug, Default)]
pub struct IssuerKeyRing {
    pub(crate) keys: HashMap<String, IssuerKeyEntry>,
    /// The exact `agent+jwt` header segment `bonafide token sign` writes for each key
    /// (by kid), already checked: an issuer-signed token with one of these headers
    /// skips header decoding, as registry tokens do with [`bonafide_core::token::KeySet`].
    pub(crate) headers: HashMap<String, (Header, String)>,
    /// `kid:revoked_at` in store order, to notice changes cheaply.
    pub(crate) fingerprint: Vec<String>,
}

impl IssuerKeyRing {
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

    /// Every key, revoked ones included, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &IssuerKeyEntry> {
        self.keys.values()
    }
}

pub(crate) fn issuer_key_fingerprint(k: &IssuerKey) -> String {
    format!("{}:{:?}", k.kid, k.revoked_at_ms)
}

/// Parses a stored issuer key; one that no longer parses is skipped with a warning
/// (its tokens then fail as signed by an unknown key) rather than stopping the
/// registry.
pub(crate) fn load_issuer_key(k: &IssuerKey) -> Option<VerifyingKey> {
    let parsed = serde_json::from_str::<Jwk>(&k.jwk)
        .map_err(|e| e.to_string())
        .and_then(|jwk| VerifyingKey::from_jwk(&jwk).map_err(|e| e.to_string()));
    match parsed {
        Ok(key) if key.kid() == k.kid && key.alg() == k.alg => Some(key),
        Ok(_) => {
            tracing::warn!(kid = %k.kid, "stored issuer key does not match its record; ignored");
            None
        }
        Err(e) => {
            tracing::warn!(kid = %k.kid, error = %e, "stored issuer key does not parse; ignored");
            None
        }
    }
}

/// The issuer key ring from the store (at start-up, `previous` is `None`).
pub(crate) async fn build_issuer_keys(
    store: &dyn Store,
    previous: Option<&IssuerKeyRing>,
) -> Result<IssuerKeyRing, StoreError> {
    let records = store.all_issuer_keys().await?;
    ring_from_records(store, &records, previous).await
}

/// Builds the ring; issuer names (and whether the issuer holds its name) come from
/// `previous` when known (an issuer's name never changes, nor who holds it), else
/// from the store.
pub(crate) async fn ring_from_records(
    store: &dyn Store,
    records: &[IssuerKey],
    previous: Option<&IssuerKeyRing>,
) -> Result<IssuerKeyRing, StoreError> {
    let mut names: HashMap<IssuerId, (String, Option<String>)> = HashMap::new();
    if let Some(prev) = previous {
        for e in prev.keys.values() {
            names.insert(
                e.issuer_id.clone(),
                (e.issuer_name.clone(), e.issuer_name_key.clone()),
            );
        }
    }
    let mut ring = IssuerKeyRing::default();
    for r in records {
        ring.fingerprint.push(issuer_key_fingerprint(r));
        let Some(key) = load_issuer_key(r) else {
            continue;
        };
        let (issuer_name, issuer_name_key) = match names.get(&r.issuer_id) {
            Some(n) => n.clone(),
            None => {
                let Some(issuer) = store.issuer(&r.issuer_id).await? else {
                    continue;
                };
                let holder = store.issuer_by_name(&issuer.name).await?;
                let key = holder
                    .is_some_and(|h| h.id == issuer.id)
                    .then(|| bonafide_core::names::issuer_name_key(&issuer.name));
                let named = (issuer.name, key);
                names.insert(r.issuer_id.clone(), named.clone());
                named
            }
        };
        if let Ok(b64) = jws::header_b64(key.alg(), AGENT_TOKEN_TYP, key.kid()) {
            let header = Header {
                alg: key.alg(),
                kid: key.kid().to_owned(),
                typ: Some(AGENT_TOKEN_TYP.to_owned()),
            };
            ring.headers.insert(b64, (header, r.kid.clone()));
        }
        ring.keys.insert(
            r.kid.clone(),
            IssuerKeyEntry {
                key,
                issuer_id: r.issuer_id.clone(),
                issuer_name,
                issuer_name_key,
                revoked_at_ms: r.revoked_at_ms,
            },
        );
    }
    Ok(ring)
}

/// The receipt-signing key: the stored one, or a new Ed25519 key stored now.
pub(crate) async fn load_receipt_key(store: &dyn Store) -> Result<SigningKey, StoreError> {
    let fresh =
        SigningKey::generate(Algorithm::EdDSA).map_err(|e| StoreError::Backend(e.to_string()))?;
    let pem = fresh
        .to_pkcs8_pem()
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let stored = store
        .receipt_key(&ReceiptKeyRecord {
            private_pem: pem.expose_secret().to_owned(),
            created_at_ms: now_ms(),
        })
        .await?;
    let key = SigningKey::from_pkcs8_pem(&stored.private_pem)
        .map_err(|e| StoreError::Backend(format!("receipt key: {e}")))?;
    if key.alg() != Algorithm::EdDSA {
        return Err(StoreError::Backend("the receipt key is not Ed25519".into()));
    }
    Ok(key)
}

/// A fresh signing key as a store record.
pub fn new_key_record(alg: Algorithm) -> Result<SigningKeyRecord, StoreError> {
    let key = SigningKey::generate(alg).map_err(|e| StoreError::Backend(e.to_string()))?;
    let pem = key
        .to_pkcs8_pem()
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(SigningKeyRecord {
        kid: key.kid().to_owned(),
        alg,
        private_pem: pem.expose_secret().to_owned(),
        state: KeyState::Active,
        created_at_ms: now_ms(),
        publish_until_s: None,
    })
}
