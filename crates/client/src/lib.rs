//! Bonafide Rust SDK for receivers and operators.
//!
//! - [`OfflineVerifier`]: verify agent tokens locally with a cached JWKS, no registry
//!   call (pipeline steps 1–4; revocation needs the online check or a status list —
//!   [`OfflineVerdict::revocation_checked`] says so explicitly).
//! - [`status::StatusLists`]: the registry's Token Status Lists, fetched, verified
//!   with the JWKS and cached, so an offline verifier sees revocations and
//!   suspensions within a list's `ttl`.
//! - [`Client`]: the HTTP API (verify online, register agents, revoke, …), and
//!   [`Client::receipt`] to fetch and verify a decision's signed receipt
//!   ([`receipts`]).
//! - [`receiver`] (feature `axum`, on by default): a tower/axum layer that
//!   authenticates agents calling your API — token, DPoP or HTTP message signature,
//!   its own replay cache — offline with a cached JWKS or online through the registry.

use std::fmt;

#[cfg(feature = "axum")]
pub mod events;
pub mod receipts;
#[cfg(feature = "axum")]
pub mod receiver;
pub mod status;

pub use bonafide_api as api;
use bonafide_api::verify::VerifyResponse;
use bonafide_api::{ErrorBody, ErrorCode};
use bonafide_core::keys::{Jwks, KeyError};
use bonafide_core::token::{KeySet, TokenError, VerifiedToken, VerifyOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// What went wrong talking to the registry or reading keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The registry could not be reached.
    #[error("cannot reach the registry at {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The registry answered with an error.
    #[error("{message} ({code}, HTTP {status}, request {request_id})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable error code: [`ErrorCode::Unknown`] for one this version does not
        /// know (a newer registry's; branch on `status` then), and `UNKNOWN` when the
        /// answer was not the API's error body at all.
        code: ErrorCode,
        /// Message.
        message: String,
        /// Request id for the server log.
        request_id: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from {url}: {reason}")]
    Decode {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A key in the JWKS is unusable.
    #[error("unusable key in JWKS: {0}")]
    Key(#[from] KeyError),
    /// A receipt the registry served does not verify with its receipt keys.
    #[error("{0}")]
    Receipt(#[from] receipts::ReceiptCheckError),
    /// A local file could not be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The base URL given to [`Client::new`] is not an absolute `http(s)` URL with a
    /// host; nothing was sent.
    #[error("{reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why, and what to write instead.
        reason: String,
    },
    /// An answer that is not the API's (not JSON, or an error without the API's
    /// `{"error":{"code",…}}`), and the registry's discovery document
    /// (`GET /.well-known/bonafide-configuration`) is not there either: the URL points
    /// at something else (a web server, a proxy's error page, another service).
    #[error(
        "that is not a Bonafide registry: GET {DISCOVERY_PATH} answered {status} {content_type}{note}"
    )]
    NotARegistry {
        /// The base URL.
        url: String,
        /// HTTP status of the discovery request.
        status: u16,
        /// Its media type (without parameters), `-` if none.
        content_type: String,
        /// Empty, or what else was wrong with a 200 answer (`, not a Bonafide
        /// configuration`).
        note: String,
    },
}

/// Where a registry serves its discovery document.
pub const DISCOVERY_PATH: &str = "/.well-known/bonafide-configuration";

/// Largest discovery answer read while checking what a URL points at.
const MAX_PROBE_BYTES: usize = 256 * 1024;

/// Checks a registry base URL: an absolute `http://` or `https://` URL with a host.
fn check_base_url(base: &str) -> Result<(), ClientError> {
    let invalid = |reason: String| ClientError::InvalidUrl {
        url: base.to_owned(),
        reason,
    };
    let lower = base.get(..8).unwrap_or(base).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        let rest = base.split_once("://").map_or(base, |(_, rest)| rest);
        let example = if rest.is_empty() {
            "localhost:8080"
        } else {
            rest
        };
        return Err(invalid(format!(
            "the registry URL must start with http:// or https://, for example http://{example} (got `{base}`)"
        )));
    }
    let url = reqwest::Url::parse(base)
        .map_err(|e| invalid(format!("the registry URL `{base}` is not a valid URL: {e}")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("the registry URL `{base}` has no host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "the registry URL `{base}` has a query or fragment: give its base, such as http://localhost:8080"
        )));
    }
    Ok(())
}

/// The media type of an answer, without parameters (`text/html`), `-` if none.
fn media_type(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

/// A `POST /v1/verify` (or `/v1/simulate`) request: the token and what the receiver
/// asks about it. Members left empty are not sent.
#[derive(Clone, Default, Serialize)]
pub struct VerifyRequest {
    /// The agent token.
    pub token: String,
    /// Scopes the request needs (`scopes_requested`).
    #[serde(rename = "scopes_requested", skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The receiver's identifier; a token with `aud` must name it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The action asked for (`payments.send`), decided by the token's consent policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// What the action acts on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// Amount to spend, an exact decimal (`"12.50"`); needs `currency`, `action` and
    /// a receiver key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// ISO 4217 code of `amount`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Makes a retry return the first decision without spending twice (needs a
    /// receiver key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The proof of possession the agent sent, for a token bound to its key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
}

impl fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyRequest")
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("action", &self.action)
            .field("resource", &self.resource)
            .field("amount", &self.amount)
            .field("currency", &self.currency)
            .field("idempotency_key", &self.idempotency_key)
            .field("proof", &self.proof.as_ref().map(|_| "<proof>"))
            .finish()
    }
}

/// `resource` of a verify request.
#[derive(Debug, Clone, Serialize)]
pub struct Resource {
    /// Resource type (`merchant`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource id (`acct/12/sub`).
    pub id: String,
}

/// `proof` of a verify request: what the agent sent the receiver to prove it holds
/// the key its token is bound to (`cnf.jkt`).
#[derive(Clone, Serialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum Proof {
    /// A DPoP proof (RFC 9449), with the method and URL of the request it came with.
    #[serde(rename = "dpop")]
    Dpop {
        /// The proof JWT (the `DPoP` header).
        jwt: String,
        /// The request's method (`POST`).
        htm: String,
        /// The request's URL as the receiver saw it.
        htu: String,
    },
}

impl fmt::Debug for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proof::Dpop { htm, htu, .. } => f
                .debug_struct("Dpop")
                .field("jwt", &"<redacted>")
                .field("htm", htm)
                .field("htu", htu)
                .finish(),
        }
    }
}

/// An HTTP client for one registry.
#[derive(Clone)]
pub struct Client {
    base: String,
    api_key: Option<String>,
    http: reqwest::Client,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client for the registry at `base` (e.g. `http://127.0.0.1:8080`), with a 30 s
    /// timeout per request. Fails if `base` is not an absolute `http://` or `https://`
    /// URL with a host ([`ClientError::InvalidUrl`]), or if the TLS backend cannot be
    /// set up.
    pub fn new(base: &str, api_key: Option<String>) -> Result<Self, ClientError> {
        check_base_url(base)?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Unreachable {
                url: base.to_owned(),
                reason: format!("cannot set up the HTTP client: {e}"),
            })?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            api_key,
            http,
        })
    }

    /// The registry's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`, decoded as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let req = self.authorize(self.http.get(&url));
        self.send(req, url).await
    }

    /// `POST path` with a JSON body, decoded as `T`.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let req = self.authorize(self.http.post(&url).json(body));
        self.send(req, url).await
    }

    /// `PUT path` with a JSON body, decoded as `T`.
    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let req = self.authorize(self.http.put(&url).json(body));
        self.send(req, url).await
    }

    /// `DELETE path` (an answer without a body, 204, is success).
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let url = format!("{}{path}", self.base);
        let req = self.authorize(self.http.delete(&url));
        self.send_bytes(req, url, MAX_JSON_BYTES).await.map(drop)
    }

    /// `PATCH path` with a JSON body, decoded as `T`.
    pub async fn patch<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let req = self.authorize(self.http.patch(&url).json(body));
        self.send(req, url).await
    }

    /// `POST path` with a JSON body, for an answer without one (204).
    pub async fn post_no_content<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(), ClientError> {
        let url = format!("{}{path}", self.base);
        let req = self.authorize(self.http.post(&url).json(body));
        self.send_bytes(req, url, MAX_JSON_BYTES).await.map(drop)
    }

    /// `POST path` with no body, for an answer without one (204).
    pub async fn post_empty(&self, path: &str) -> Result<(), ClientError> {
        let url = format!("{}{path}", self.base);
        let req = self.authorize(self.http.post(&url));
        self.send_bytes(req, url, MAX_JSON_BYTES).await.map(drop)
    }

    /// `DELETE path`, decoded as `T`.
    pub async fn delete_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let req = self.authorize(self.http.delete(&url));
        self.send(req, url).await
    }

    /// `POST path` with a JSON body sent byte for byte as given (for documents the
    /// registry must judge as written, such as a policy to lint: repeated members or
    /// formatting survive), decoded as `T`.
    pub async fn post_json_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let req = self.authorize(
            self.http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
        );
        self.send(req, url).await
    }

    /// Online verification: `POST /v1/verify` with a token, the scopes the request
    /// needs and the receiver's audience ([`Client::verify_request`] asks about
    /// actions, amounts and proofs too).
    pub async fn verify(
        &self,
        token: &str,
        scopes: &[String],
        audience: Option<&str>,
    ) -> Result<VerifyResponse, ClientError> {
        self.verify_request(&VerifyRequest {
            token: token.to_owned(),
            scopes: scopes.to_vec(),
            audience: audience.map(str::to_owned),
            ..VerifyRequest::default()
        })
        .await
    }

    /// Online verification: `POST /v1/verify` with everything a receiver can ask
    /// (action, resource, amount, proof of possession). The answer is the API's,
    /// `valid`/`allowed` with `reasons`, and `error` when the token is not valid.
    pub async fn verify_request(&self, req: &VerifyRequest) -> Result<VerifyResponse, ClientError> {
        self.post("/v1/verify", req).await
    }

    /// `POST /v1/simulate`: the decision `verify_request` would get, with nothing
    /// recorded or spent (`simulated` is true).
    pub async fn simulate(&self, req: &VerifyRequest) -> Result<VerifyResponse, ClientError> {
        self.post("/v1/simulate", req).await
    }

    /// The registry's token JWKS (token-signing keys only).
    pub async fn jwks(&self) -> Result<Jwks, ClientError> {
        self.get("/.well-known/jwks.json").await
    }

    /// The registry's receipt JWKS: the key that signs verify receipts, which is not
    /// in the token JWKS. Verify a receipt with [`receipts::verify`].
    pub async fn receipt_jwks(&self) -> Result<Jwks, ClientError> {
        self.get("/.well-known/receipt-jwks.json").await
    }

    /// `GET /v1/receipts/{id}` (readable by the receiver key that asked for the
    /// decision and by the agent's issuer), verified with the registry's receipt
    /// JWKS. Check it is the receipt of your request with
    /// [`receipts::VerifiedReceipt::check_request`]; keep its `jws` (the answer's) to
    /// prove the decision later, offline. An id that is not a receipt id is refused
    /// before anything is sent.
    pub async fn receipt(
        &self,
        id: &str,
    ) -> Result<(String, receipts::VerifiedReceipt), ClientError> {
        let id = bonafide_core::ids::ReceiptId::try_from(id).map_err(|_| {
            ClientError::Receipt(receipts::ReceiptCheckError::InvalidId(
                id.chars().take(64).collect(),
            ))
        })?;
        let view: bonafide_api::receipts::ReceiptView =
            self.get(&format!("/v1/receipts/{}", id.as_str())).await?;
        let jwks = self.receipt_jwks().await?;
        let verified = receipts::verify(&view.jws, &jwks)?;
        if verified.claims.receipt_id != id {
            return Err(ClientError::Receipt(
                receipts::ReceiptCheckError::OtherReceipt {
                    asked: id.as_str().to_owned(),
                    got: verified.claims.receipt_id.as_str().to_owned(),
                },
            ));
        }
        Ok((view.jws, verified))
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    /// `GET path` as text (signed notes, tlog proofs), at most 1 MiB.
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let url = format!("{}{path}", self.base);
        let req = self.authorize(self.http.get(&url));
        let bytes = self.send_bytes(req, url.clone(), MAX_TEXT_BYTES).await?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(text),
            Err(_) => Err(self
                .unless_registry(ClientError::Decode {
                    url,
                    reason: "answer is not UTF-8 text".into(),
                })
                .await),
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        url: String,
    ) -> Result<T, ClientError> {
        let bytes = self.send_bytes(req, url.clone(), MAX_JSON_BYTES).await?;
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(v),
            Err(e) => Err(self
                .unless_registry(ClientError::Decode {
                    url,
                    reason: e.to_string(),
                })
                .await),
        }
    }

    /// `error`, unless the base URL turns out not to be a registry at all: then
    /// [`ClientError::NotARegistry`], with what its discovery document's URL answered.
    /// Called only when an answer was not the API's, so a working registry never pays
    /// for the extra request; if that request gets no answer, `error` stands.
    async fn unless_registry(&self, error: ClientError) -> ClientError {
        let url = format!("{}{DISCOVERY_PATH}", self.base);
        let Ok(mut resp) = self
            .http
            .get(&url)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
        else {
            return error;
        };
        let status = resp.status();
        let content_type = media_type(resp.headers());
        let not_a_registry = |note: &str| ClientError::NotARegistry {
            url: self.base.clone(),
            status: status.as_u16(),
            content_type: content_type.clone(),
            note: note.to_owned(),
        };
        if !status.is_success() || content_type != "application/json" {
            return not_a_registry("");
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_PROBE_BYTES => {
                    body.extend_from_slice(&chunk);
                }
                Ok(Some(_)) => return not_a_registry(", not a Bonafide configuration"),
                Ok(None) => break,
                Err(_) => return error,
            }
        }
        let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if doc["issuer"].is_string() && doc["verify_endpoint"].is_string() {
            error
        } else {
            not_a_registry(", not a Bonafide configuration")
        }
    }

    /// Sends `req`; the body of a 2xx answer, or the API error of any other.
    async fn send_bytes(
        &self,
        req: reqwest::RequestBuilder,
        url: String,
        max: usize,
    ) -> Result<Vec<u8>, ClientError> {
        let mut resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status();
        // Read at most `max` bytes: a broken or hostile registry cannot make the client
        // buffer without bound.
        let too_large = || ClientError::Decode {
            url: url.clone(),
            reason: format!("answer is over {max} bytes"),
        };
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })? {
            if bytes.len() + chunk.len() > max {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let (error, the_apis) = api_error(status.as_u16(), &bytes);
            // Not the API's error shape: is this a registry at all?
            return Err(if the_apis {
                error
            } else {
                self.unless_registry(error).await
            });
        }
        Ok(bytes)
    }
}

/// The [`ClientError::Api`] of an error answer, and whether it was the API's: the
/// [`ErrorBody`] `{"error":{code, message, request_id}}`, or the OAuth shape of the
/// token endpoint (RFC 6749 §5.2: `{error, error_description, code, request_id}`,
/// where `error` is the RFC's code and `code` Bonafide's), whose message then starts
/// with the RFC's code. Anything else (code `UNKNOWN`) keeps the first 200
/// characters of the body as the message.
fn api_error(status: u16, bytes: &[u8]) -> (ClientError, bool) {
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(bytes) {
        let e = body.error;
        let error = ClientError::Api {
            status,
            code: e.code,
            message: e.message,
            request_id: e.request_id,
        };
        return (error, true);
    }
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    if let Some(oauth) = v["error"].as_str() {
        let error = ClientError::Api {
            status,
            code: ErrorCode::from_wire(v["code"].as_str().unwrap_or(oauth)),
            message: v["error_description"]
                .as_str()
                .map_or_else(|| oauth.to_owned(), |d| format!("{oauth}: {d}")),
            request_id: v["request_id"].as_str().unwrap_or("-").to_owned(),
        };
        return (error, true);
    }
    let e = &v["error"];
    let error = ClientError::Api {
        status,
        code: ErrorCode::from_wire(e["code"].as_str().unwrap_or("UNKNOWN")),
        message: e["message"].as_str().map_or_else(
            || String::from_utf8_lossy(bytes).chars().take(200).collect(),
            str::to_owned,
        ),
        request_id: e["request_id"].as_str().unwrap_or("-").to_owned(),
    };
    (error, e["code"].is_string())
}

/// Largest text answer [`Client::get_text`] accepts (the signed-note limit).
pub const MAX_TEXT_BYTES: usize = 1024 * 1024;

/// Largest JSON answer accepted: a full page of audit entries (1000 of at most 64 KiB)
/// with room to spare.
pub const MAX_JSON_BYTES: usize = 128 * 1024 * 1024;

/// Largest JWKS accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// True for `http://` URLs whose host is loopback (`localhost`, `127.x`, `[::1]`).
fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Loads a JWKS from an `https://` URL (or `http://` on loopback) or a file path.
///
/// The keys decide which tokens are trusted, so the fetch is strict: plain http only
/// to this machine, no redirects, at most [`MAX_JWKS_BYTES`], 30 s; a file is held to
/// the same size.
pub async fn load_jwks(source: &str) -> Result<Jwks, ClientError> {
    let decode = |reason: String| ClientError::Decode {
        url: source.to_owned(),
        reason,
    };
    if source.starts_with("http://") && !is_loopback_http(source) {
        return Err(decode(
            "refusing a JWKS over plain http from another host: use https (or a file)".into(),
        ));
    }
    if source.starts_with("http://") || source.starts_with("https://") {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| decode(e.to_string()))?;
        let mut resp = http
            .get(source)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: source.to_owned(),
                reason: e.to_string(),
            })?;
        if !resp.status().is_success() {
            return Err(decode(format!(
                "HTTP {} (redirects are not followed)",
                resp.status()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| decode(e.to_string()))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(decode(format!("JWKS larger than {MAX_JWKS_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| decode(e.to_string()))
    } else {
        // Read at most one byte past the limit, so a huge file (or an endless pipe such
        // as /dev/zero) is refused without being read whole, as a URL's body is.
        use std::io::Read as _;
        let file_error = |e: std::io::Error| ClientError::File {
            path: source.to_owned(),
            reason: e.to_string(),
        };
        let file = std::fs::File::open(source).map_err(file_error)?;
        let mut body = Vec::new();
        file.take(MAX_JWKS_BYTES as u64 + 1)
            .read_to_end(&mut body)
            .map_err(file_error)?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(ClientError::File {
                path: source.to_owned(),
                reason: format!("the JWKS file is larger than {MAX_JWKS_BYTES} bytes (1 MiB)"),
            });
        }
        serde_json::from_slice(&body).map_err(|e| decode(e.to_string()))
    }
}

/// The outcome of an offline verification.
#[derive(Debug)]
pub struct OfflineVerdict {
    /// The verified token.
    pub token: VerifiedToken,
    /// Always false: this verifier alone cannot see revocations made after the token
    /// was issued. Check the token's status list with [`status::StatusLists`] (what
    /// the receiver layer and `bonafide verify --offline` do), or verify online.
    pub revocation_checked: bool,
}

/// Verifies tokens locally with cached keys.
#[derive(Debug)]
pub struct OfflineVerifier {
    keys: KeySet,
    opts: VerifyOptions,
}

impl OfflineVerifier {
    /// A verifier trusting `jwks` for tokens whose `iss` is `issuer`. Like the
    /// registry, it accepts no token that lives longer than 30 days from its `iat`
    /// (`options_mut().max_lifetime_secs` changes that).
    pub fn new(jwks: &Jwks, issuer: &str) -> Result<Self, ClientError> {
        let mut opts = VerifyOptions::for_issuer(issuer);
        opts.max_lifetime_secs = Some(bonafide_core::token::DEFAULT_MAX_LIFETIME_SECS);
        Ok(OfflineVerifier {
            keys: KeySet::from_jwks(jwks)?,
            opts,
        })
    }

    /// Settings (leeway, audience, size cap).
    pub fn options_mut(&mut self) -> &mut VerifyOptions {
        &mut self.opts
    }

    /// Verifies `token` at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<OfflineVerdict, TokenError> {
        let token = bonafide_core::token::verify(token, &self.keys, &self.opts, now)?;
        // Pipeline step 7: a token whose `policy_hash` is not its policy's is invalid.
        bonafide_core::token::policy_of(&token.claims)?;
        Ok(OfflineVerdict {
            token,
            revocation_checked: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offline, as at the registry: a token that lives longer than 30 days from its
    /// `iat` is refused, whoever signed it (the second review found offline
    /// verifiers accepted what the registry refuses).
    #[test]
    fn offline_refuses_a_token_longer_lived_than_the_registry_accepts() {
        use bonafide_core::keys::{Algorithm, SigningKey};
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let jwks = Jwks {
            keys: vec![key.verifying_key().jwk().clone()],
        };
        let verifier = OfflineVerifier::new(&jwks, "iss_test").unwrap();
        let now = 1_800_000_000;
        let token = |exp: i64| {
            let claims = serde_json::json!({
                "iss": "iss_test", "sub": "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "iat": now,
                "exp": exp, "jti": "tok_aaaaaaaaaaaaaaaaaaaaaaaaab",
                "agent": {"name": "A", "issuer": "i", "scopes": ["read:x"]},
            });
            bonafide_core::jws::sign_compact(&key, "agent+jwt", claims.to_string().as_bytes())
                .unwrap()
        };
        let max = bonafide_core::token::DEFAULT_MAX_LIFETIME_SECS;
        assert!(verifier.verify(&token(now + max), now).is_ok());
        let e = verifier.verify(&token(now + max + 1), now).unwrap_err();
        assert!(matches!(e, TokenError::LifetimeTooLong { .. }), "{e:?}");
    }

    #[test]
    fn error_codes_are_read_as_the_enum_unknown_ones_kept() {
        let (e, the_apis) = api_error(
            409,
            br#"{"error":{"code":"IDEMPOTENCY_CONFLICT","message":"used","request_id":"req_1"}}"#,
        );
        assert!(the_apis);
        assert!(
            matches!(
                &e,
                ClientError::Api {
                    code: ErrorCode::IdempotencyConflict,
                    status: 409,
                    ..
                }
            ),
            "{e:?}"
        );
        // A code a newer registry sends: kept as sent, the error still the API's.
        let (e, the_apis) = api_error(
            429,
            br#"{"error":{"code":"COFFEE_REQUIRED","message":"slow down","request_id":"req_2"}}"#,
        );
        assert!(the_apis);
        let ClientError::Api { code, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(!code.is_known());
        assert_eq!(code.as_str(), "COFFEE_REQUIRED");
        assert_eq!(
            e.to_string(),
            "slow down (COFFEE_REQUIRED, HTTP 429, request req_2)"
        );
        // Token exchange's OAuth error: Bonafide's `code` as the enum.
        let (e, _) = api_error(
            400,
            br#"{"error":"invalid_scope","error_description":"wider","code":"DELEGATION_WIDENS","request_id":"r"}"#,
        );
        assert!(
            matches!(
                &e,
                ClientError::Api {
                    code: ErrorCode::DelegationWidens,
                    ..
                }
            ),
            "{e:?}"
        );
        // Not the API's shape at all.
        let (_, the_apis) = api_error(502, b"<h1>Bad Gateway</h1>");
        assert!(!the_apis);
    }

    #[test]
    fn error_answers_in_both_shapes() {
        let (api, _) = api_error(
            404,
            br#"{"error":{"code":"NOT_FOUND","message":"agent not found","request_id":"r1"}}"#,
        );
        assert_eq!(
            api.to_string(),
            "agent not found (NOT_FOUND, HTTP 404, request r1)"
        );
        let (oauth, _) = api_error(
            400,
            br#"{"error":"invalid_request","error_description":"`subject_token` does not verify: revoked","code":"TOKEN_REVOKED","request_id":"r2"}"#,
        );
        assert_eq!(
            oauth.to_string(),
            "invalid_request: `subject_token` does not verify: revoked (TOKEN_REVOKED, HTTP 400, request r2)"
        );
        let (bare, _) = api_error(401, br#"{"error":"invalid_client"}"#);
        assert_eq!(
            bare.to_string(),
            "invalid_client (invalid_client, HTTP 401, request -)"
        );
        let (text, _) = api_error(502, b"Bad Gateway");
        assert_eq!(
            text.to_string(),
            "Bad Gateway (UNKNOWN, HTTP 502, request -)"
        );
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:8080/.well-known/jwks.json",
            "http://localhost/x",
            "http://[::1]:9/x",
            "http://127.1.2.3",
        ] {
            assert!(is_loopback_http(ok), "{ok}");
        }
        for bad in [
            "http://example.com/x",
            "http://127.0.0.1.evil.example/x",
            "http://10.0.0.1/",
            "https://127.0.0.1/",
            "http://user@example.com/",
        ] {
            assert!(!is_loopback_http(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn refuses_remote_plain_http_without_connecting() {
        let err = load_jwks("http://example.invalid/jwks.json")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("plain http"), "{err}");
    }

    /// A one-shot HTTP server on 127.0.0.1 answering `body`, chunked or not.
    async fn answer_once(body: Vec<u8>, chunked: bool) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let head = if chunked {
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_owned()
            } else {
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len())
            };
            let _ = sock.write_all(head.as_bytes()).await;
            if chunked {
                for part in body.chunks(64 * 1024) {
                    let _ = sock
                        .write_all(format!("{:x}\r\n", part.len()).as_bytes())
                        .await;
                    let _ = sock.write_all(part).await;
                    let _ = sock.write_all(b"\r\n").await;
                }
                let _ = sock.write_all(b"0\r\n\r\n").await;
            } else {
                let _ = sock.write_all(&body).await;
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn a_base_url_without_a_scheme_is_refused_before_any_request() {
        let e = Client::new("localhost:8080", None).unwrap_err();
        assert!(matches!(e, ClientError::InvalidUrl { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "the registry URL must start with http:// or https://, for example http://localhost:8080 (got `localhost:8080`)"
        );
        let e = Client::new("ftp://registry.example", None).unwrap_err();
        assert!(e.to_string().contains("http://registry.example"), "{e}");
        for bad in [
            "",
            "http://",
            "http://exa mple.com",
            "http://h:99999",
            "http://h/?x=1",
        ] {
            let e = Client::new(bad, None).unwrap_err();
            assert!(matches!(e, ClientError::InvalidUrl { .. }), "{bad}: {e:?}");
            assert!(!e.to_string().contains("builder"), "{bad}: {e}");
        }
        for ok in [
            "http://127.0.0.1:8080",
            "HTTPS://registry.example/",
            "http://[::1]:1",
            "https://registry.example/prefix",
        ] {
            assert!(Client::new(ok, None).is_ok(), "{ok}");
        }
    }

    /// An HTTP server on 127.0.0.1 answering every request: the discovery document's
    /// path with `discovery`, any other with `other` (each `(status line, content
    /// type, body)`), closing each connection.
    async fn answer_always(
        discovery: (&'static str, &'static str, &'static str),
        other: (&'static str, &'static str, &'static str),
    ) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 8192];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let (status, ctype, body) =
                        if head.starts_with(&format!("GET {DISCOVERY_PATH} ")) {
                            discovery
                        } else {
                            other
                        };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(answer.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_web_server_that_is_not_a_registry_is_named_so() {
        let html = ("404 Not Found", "text/html; charset=utf-8", "<h1>nope</h1>");
        let base = answer_always(html, html).await;
        let client = Client::new(&base, None).unwrap();
        let e = client.get::<Value>("/v1/agents").await.unwrap_err();
        assert!(
            matches!(e, ClientError::NotARegistry { status: 404, .. }),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "that is not a Bonafide registry: GET /.well-known/bonafide-configuration answered 404 text/html"
        );
        // A success that is not JSON, and JSON that is not a Bonafide configuration.
        let page = ("200 OK", "text/html", "<html></html>");
        let base = answer_always(page, page).await;
        let e = Client::new(&base, None)
            .unwrap()
            .post::<_, Value>("/v1/verify", &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(e.to_string().ends_with("answered 200 text/html"), "{e}");
        let other = ("200 OK", "application/json", r#"{"issuer":"x"}"#);
        let base = answer_always(other, html).await;
        let e = Client::new(&base, None)
            .unwrap()
            .get_text("/v1/audit/checkpoint")
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .ends_with("answered 200 application/json, not a Bonafide configuration"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_registry_behind_a_proxy_error_keeps_the_error() {
        let config = (
            "200 OK",
            "application/json",
            r#"{"issuer":"http://r","verify_endpoint":"http://r/v1/verify"}"#,
        );
        let bad_gateway = ("502 Bad Gateway", "text/html", "<h1>502</h1>");
        let base = answer_always(config, bad_gateway).await;
        let e = Client::new(&base, None)
            .unwrap()
            .get::<Value>("/v1/agents")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ClientError::Api { status: 502, code, .. } if *code == "UNKNOWN"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn oversized_answers_are_refused_not_buffered() {
        for chunked in [false, true] {
            let base = answer_once(vec![b'a'; MAX_TEXT_BYTES + 1], chunked).await;
            let client = Client::new(&base, None).unwrap();
            let err = client.get_text("/v1/audit/checkpoint").await.unwrap_err();
            assert!(
                matches!(&err, ClientError::Decode { reason, .. } if reason.contains("over")),
                "chunked={chunked}: {err}"
            );
        }
        let base = answer_once(b"checkpoint\n".to_vec(), true).await;
        let client = Client::new(&base, None).unwrap();
        assert_eq!(client.get_text("/x").await.unwrap(), "checkpoint\n");
    }
}
