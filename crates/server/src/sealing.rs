//! The registry's private keys at rest (issue 16 item 6): every private key the store
//! holds (signing keys, the receipt key, the audit log key) is sealed under the
//! key-encryption key (KEK, [`bonafide_core::sealed`]) before it is stored and opened
//! after it is read, so the database alone cannot sign. The KEK comes from the
//! operator ([`crate::Config::kek`]); it is never stored, logged or sent.

use std::sync::{Arc, Mutex, OnceLock};

use bonafide_core::sealed::{self, Kek, Opened, SealError};
use bonafide_store::{PrivateKeySlot, Store, StoreError};

/// Why the registry's stored keys cannot be used with the KEK given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    /// A sealed key does not open: another KEK sealed it (or its row was altered).
    #[error(
        "this key-encryption key does not open the registry's keys ({slot} does not open): start with the KEK they were sealed under (--key-encryption-key-file); a new KEK would make the registry unable to sign"
    )]
    WrongKek {
        /// Which key, e.g. `signing-key/<kid>`.
        slot: String,
    },
    /// A stored key is sealed in a form this build cannot read, or sealing failed.
    #[error("the stored {slot}: {reason}")]
    Unusable {
        /// Which key.
        slot: String,
        /// Why, without key material.
        reason: SealError,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// A KEK made at random once per process, for embedders and tests that set none
/// ([`crate::Config::kek`] `None`): keys sealed under it open only in this process.
pub fn ephemeral_kek() -> Result<Arc<Kek>, SealError> {
    static EPHEMERAL: OnceLock<Arc<Kek>> = OnceLock::new();
    if let Some(kek) = EPHEMERAL.get() {
        return Ok(Arc::clone(kek));
    }
    let kek = Arc::new(Kek::from_bytes(&sealed::random_kek_bytes()?)?);
    // A racing thread may have set one first: use whichever won.
    Ok(Arc::clone(EPHEMERAL.get_or_init(|| kek)))
}

/// Seals a private key's text for its row.
pub fn seal(kek: &Kek, slot: &PrivateKeySlot, text: &str) -> Result<String, StoreError> {
    kek.seal(&slot.identity(), text)
        .map_err(|e| StoreError::Backend(format!("sealing the {}: {e}", slot.identity())))
}

/// Opens a stored private key. Keys are checked at start ([`seal_stored_keys`]), so
/// a failure here means a key stored since under another KEK (a replica configured
/// with a different one).
pub fn open(kek: &Kek, slot: &PrivateKeySlot, stored: &str) -> Result<Opened, StoreError> {
    kek.open(&slot.identity(), stored).map_err(|e| {
        StoreError::Backend(format!(
            "the stored {} does not open with this key-encryption key: {e}",
            slot.identity()
        ))
    })
}

/// At start (and before `keys rotate` writes): seals every key still stored in
/// plaintext (a database made before sealing), in one transaction, and checks that
/// the KEK opens every key already sealed. A wrong KEK is an error here, before
/// anything could make a new key in its place.
pub async fn seal_stored_keys(store: &dyn Store, kek: &Kek) -> Result<usize, KeysError> {
    // `reseal` can only fail with a `StoreError`: the typed reason waits here.
    let refused: Mutex<Option<KeysError>> = Mutex::new(None);
    let outcome = store
        .reseal_private_keys(&|slot: &PrivateKeySlot, stored: &str| {
            let identity = slot.identity();
            let failed = |e: KeysError| {
                if let Ok(mut cell) = refused.lock() {
                    cell.get_or_insert(e);
                }
                Err(StoreError::Backend(format!(
                    "the stored {identity} is not usable"
                )))
            };
            if !sealed::is_sealed(stored) {
                return match kek.seal(&identity, stored) {
                    Ok(text) => Ok(Some(text)),
                    Err(reason) => failed(KeysError::Unusable {
                        slot: identity.clone(),
                        reason,
                    }),
                };
            }
            match kek.open(&identity, stored) {
                Ok(_) => Ok(None),
                Err(SealError::DoesNotOpen) => failed(KeysError::WrongKek {
                    slot: identity.clone(),
                }),
                Err(reason) => failed(KeysError::Unusable {
                    slot: identity.clone(),
                    reason,
                }),
            }
        })
        .await;
    match outcome {
        Ok(n) => {
            if n > 0 {
                tracing::info!(keys = n, "sealed private keys stored in plaintext");
            }
            Ok(n)
        }
        Err(e) => match refused.into_inner().ok().flatten() {
            Some(typed) => Err(typed),
            None => Err(KeysError::Store(e)),
        },
    }
}
