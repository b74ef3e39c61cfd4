//! Decision receipts: the registry's signed record of one `POST /v1/verify` decision
//! (`receipt_id` in the answer, `GET /v1/receipts/{id}`), checked here as a receiver
//! keeping one needs: the signature with the registry's **receipt** keys
//! (`/.well-known/receipt-jwks.json`, never the token JWKS), the claims
//! ([`bonafide_core::receipt::verify`]), and that it was issued for the verify request
//! the receiver sent ([`VerifiedReceipt::check_request`]), so it cannot be shown for
//! another one. Time is not checked: a receipt stays a true record after its token
//! expires.

use bonafide_core::keys::{Jwks, KeyError};
use bonafide_core::receipt::{self, ReceiptClaims, ReceiptError, RequestFacts};
use bonafide_core::token::KeySet;

/// Why a receipt was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptCheckError {
    /// A key of the receipt JWKS is unusable.
    #[error("unusable key in the receipt JWKS: {0}")]
    Keys(#[from] KeyError),
    /// Not a genuine receipt of those keys, or its claims are malformed.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    /// Not a receipt id (`rcp_…`): nothing was asked.
    #[error("`{0}` is not a receipt id (`rcp_…`)")]
    InvalidId(String),
    /// The registry answered with a receipt other than the one asked for.
    #[error("asked for receipt {asked}, the registry served {got}")]
    OtherReceipt {
        /// The id asked for.
        asked: String,
        /// The id of the receipt served.
        got: String,
    },
}

/// A receipt whose signature and claims verified.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedReceipt {
    /// What it says: the decision, reasons, digests, agent, audit index.
    pub claims: ReceiptClaims,
}

impl VerifiedReceipt {
    /// Checks that the receipt was issued for `request_body`, the `POST /v1/verify`
    /// body sent (its RFC 8785 form as receipts bind it: `token` and `proof` left
    /// out, so a body kept without the token still matches). Returns that form and
    /// digest; [`ReceiptError::RequestMismatch`] when the receipt is another
    /// request's, [`ReceiptError::Request`] when the body is not a verify request.
    pub fn check_request(&self, request_body: &[u8]) -> Result<RequestFacts, ReceiptError> {
        let facts = RequestFacts::from_request_json(request_body)?;
        receipt::check_request(&self.claims, &facts)?;
        Ok(facts)
    }
}

/// Verifies a receipt (compact JWS) with the registry's receipt keys.
pub fn verify(
    receipt_jws: &str,
    receipt_jwks: &Jwks,
) -> Result<VerifiedReceipt, ReceiptCheckError> {
    let keys = KeySet::from_jwks(receipt_jwks)?;
    let claims = receipt::verify(receipt_jws.trim(), &keys)?;
    Ok(VerifiedReceipt { claims })
}
