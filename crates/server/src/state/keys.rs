//! The read model's keys: the registry's own signing keys (a ring swapped whole on
//! rotation), issuers' own keys, and the receipt-signing key.

use std::collections::HashMap;

use bonafide_core::ids::IssuerId;
use bonafide_core::keys::{Algorithm, Jwk, SigningKey, VerifyingKey};
use bonafide_core::sealed::Kek;
use bonafide_core::token::KeySet;
use bonafide_core::verifier::{IssuerKeyEntry, IssuerKeyRing};
use bonafide_store::{
    IssuerKey, KeyState, PrivateKeySlot, ReceiptKeyRecord, SigningKeyRecord, Store, StoreError,
};

use crate::sealing;

/// The registry's keys: one that signs, and every key still published.
#[derive(Debug)]
pub struct KeyRing {
    /// Signs new tokens.
    pub active: SigningKey,
    /// Verifies: the active key and retired keys until `publish_until`.
    pub verifying: KeySet,
    /// `(kid, publish_until_s)` of retired keys still in `verifying`.
    pub retired: Vec<(String, i64)>,
    /// When the active key was stored (the start of its scheduled lifetime).
    pub active_created_at_ms: i64,
    /// The next key, published ahead of a scheduled rotation (in `verifying`, signing
    /// nothing yet): its kid and when it was stored.
    pub next: Option<(String, i64)>,
    /// Kids in the order loaded, to notice changes made by another process.
    pub fingerprint: Vec<String>,
}

impl KeyRing {
    /// Builds the ring from stored records (their keys sealed under `kek`), dropping
    /// retired keys whose tokens have all expired (with leeway).
    pub fn from_records(
        records: &[SigningKeyRecord],
        kek: &Kek,
        now_s: i64,
        leeway_s: i64,
    ) -> Result<Self, StoreError> {
        let mut active = None;
        let mut active_created_at_ms = 0;
        let mut next = None;
        let mut verifying = KeySet::new();
        let mut retired = Vec::new();
        let mut fingerprint = Vec::new();
        for r in records {
            fingerprint.push(key_fingerprint(r));
            let key = load_key(r, kek)?;
            match r.state {
                KeyState::Active => {
                    verifying.insert(clone_verifying(&key)?);
                    active = Some(key);
                    active_created_at_ms = r.created_at_ms;
                }
                KeyState::Next => {
                    verifying.insert(clone_verifying(&key)?);
                    next = Some((r.kid.clone(), r.created_at_ms));
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
            active_created_at_ms,
            next,
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

pub(crate) fn load_key(r: &SigningKeyRecord, kek: &Kek) -> Result<SigningKey, StoreError> {
    let slot = PrivateKeySlot::SigningKey { kid: r.kid.clone() };
    let pem = sealing::open(kek, &slot, &r.private_pem)?;
    let key = SigningKey::from_pkcs8_pem(pem.expose_secret())
        .map_err(|e| StoreError::Backend(format!("signing key {}: {e}", r.kid)))?;
    if key.alg() != r.alg || key.kid() != r.kid {
        return Err(StoreError::Backend(format!(
            "signing key {} does not match its record",
            r.kid
        )));
    }
    Ok(key)
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
        for e in prev.entries() {
            names.insert(
                e.issuer_id.clone(),
                (e.issuer_name.clone(), e.issuer_name_key.clone()),
            );
        }
    }
    let mut ring = IssuerKeyRing::default();
    for r in records {
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
        ring.insert(IssuerKeyEntry {
            key,
            issuer_id: r.issuer_id.clone(),
            issuer_name,
            issuer_name_key,
            revoked_at_ms: r.revoked_at_ms,
            alias: r.alias.clone(),
        });
    }
    Ok(ring)
}

/// The receipt-signing key: the stored one, or a new Ed25519 key stored now (sealed).
pub(crate) async fn load_receipt_key(
    store: &dyn Store,
    kek: &Kek,
    now_ms: i64,
) -> Result<SigningKey, StoreError> {
    load_ed25519(store, kek, now_ms, PrivateKeySlot::ReceiptKey).await
}

/// The event-signing key (push events' SETs only), as the receipt key.
pub(crate) async fn load_event_key(
    store: &dyn Store,
    kek: &Kek,
    now_ms: i64,
) -> Result<SigningKey, StoreError> {
    load_ed25519(store, kek, now_ms, PrivateKeySlot::EventKey).await
}

/// One of the single-row Ed25519 keys: the stored one, or a new key stored now.
async fn load_ed25519(
    store: &dyn Store,
    kek: &Kek,
    now_ms: i64,
    slot: PrivateKeySlot,
) -> Result<SigningKey, StoreError> {
    let fresh =
        SigningKey::generate(Algorithm::EdDSA).map_err(|e| StoreError::Backend(e.to_string()))?;
    let pem = fresh
        .to_pkcs8_pem()
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let candidate = ReceiptKeyRecord {
        private_pem: sealing::seal(kek, &slot, pem.expose_secret())?,
        created_at_ms: now_ms,
    };
    let stored = match slot {
        PrivateKeySlot::EventKey => store.event_key(&candidate).await?,
        _ => store.receipt_key(&candidate).await?,
    };
    let pem = sealing::open(kek, &slot, &stored.private_pem)?;
    let name = slot.identity();
    let key = SigningKey::from_pkcs8_pem(pem.expose_secret())
        .map_err(|e| StoreError::Backend(format!("{name}: {e}")))?;
    if key.alg() != Algorithm::EdDSA {
        return Err(StoreError::Backend(format!("the {name} is not Ed25519")));
    }
    Ok(key)
}

/// A fresh signing key as a store record, its private key sealed under `kek`.
pub fn new_key_record(
    alg: Algorithm,
    now_ms: i64,
    kek: &Kek,
) -> Result<SigningKeyRecord, StoreError> {
    let key = SigningKey::generate(alg).map_err(|e| StoreError::Backend(e.to_string()))?;
    let pem = key
        .to_pkcs8_pem()
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let slot = PrivateKeySlot::SigningKey {
        kid: key.kid().to_owned(),
    };
    Ok(SigningKeyRecord {
        kid: key.kid().to_owned(),
        alg,
        private_pem: sealing::seal(kek, &slot, pem.expose_secret())?,
        state: KeyState::Active,
        created_at_ms: now_ms,
        publish_until_s: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn kek() -> Arc<Kek> {
        crate::sealing::ephemeral_kek().unwrap()
    }

    fn record(state: KeyState, publish_until_s: Option<i64>) -> SigningKeyRecord {
        let mut r = new_key_record(Algorithm::EdDSA, 0, &kek()).unwrap();
        r.state = state;
        r.publish_until_s = publish_until_s;
        r
    }

    #[test]
    fn retired_keys_are_published_until_their_last_token_expires_plus_leeway() {
        let active = record(KeyState::Active, None);
        let live = record(KeyState::Retired, Some(1_000));
        let gone = record(KeyState::Retired, Some(900));
        let ring = KeyRing::from_records(
            &[active.clone(), live.clone(), gone.clone()],
            &kek(),
            1_000,
            60,
        )
        .unwrap();
        assert_eq!(ring.active.kid(), active.kid);
        assert_eq!(ring.verifying.len(), 2);
        assert_eq!(ring.retired, vec![(live.kid.clone(), 1_000)]);
        // At the edge: until + leeway == now is no longer published.
        let ring = KeyRing::from_records(&[active, live], &kek(), 1_060, 60).unwrap();
        assert_eq!(ring.verifying.len(), 1);
    }

    #[test]
    fn a_ring_needs_an_active_key_and_matching_records() {
        let retired = record(KeyState::Retired, Some(i64::MAX));
        assert!(KeyRing::from_records(&[retired], &kek(), 0, 60).is_err());
        let mut wrong = record(KeyState::Active, None);
        wrong.kid = "not-the-thumbprint".into();
        assert!(KeyRing::from_records(&[wrong], &kek(), 0, 60).is_err());
    }

    #[test]
    fn signing_keys_are_stored_sealed_and_open_only_with_their_kek_and_row() {
        let r = record(KeyState::Active, None);
        assert!(r.private_pem.starts_with("bfk-sealed-v1:"));
        assert!(!r.private_pem.contains("PRIVATE KEY"));
        assert_eq!(load_key(&r, &kek()).unwrap().kid(), r.kid);
        let other = Kek::from_bytes(&bonafide_core::sealed::random_kek_bytes().unwrap()).unwrap();
        let err = load_key(&r, &other).unwrap_err().to_string();
        assert!(err.contains("does not open"), "{err}");
        // Another row's sealed key does not open in this row.
        let mut swapped = record(KeyState::Active, None);
        swapped.private_pem = r.private_pem.clone();
        assert!(load_key(&swapped, &kek()).is_err());
    }
}
