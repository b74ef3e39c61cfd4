//! The one place domain errors become HTTP answers.
//!
//! Every error body is `{"error":{"code","message","request_id"}}`
//! ([`bonafide_api::ErrorBody`]). `code` is an [`ErrorCode`]: stable and
//! machine-readable, and only known variants are constructed here; `message` is for the client and never contains a secret or a
//! token; the internal detail of a 500 goes to the log only.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bonafide_core::keys::KeyError;
use bonafide_store::StoreError;

use crate::request_id;

pub use bonafide_api::{ErrorBody, ErrorCode, ErrorDetail};

/// An error answer: status, stable code, client message.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine code, e.g. `NOT_FOUND`.
    pub code: ErrorCode,
    /// Human message for the client.
    pub message: String,
    /// Detail for the log only (500s).
    pub internal: Option<String>,
    /// When to try again (boxed: most errors have none, and the error type stays
    /// small).
    pub retry: Option<Box<Retry>>,
}

/// When a refused request may be tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Seconds, for `Retry-After`.
    pub after_s: u64,
    /// `QUOTA_EXCEEDED`: when the quota is full again (RFC 3339), the body's `reset`.
    pub reset: Option<String>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            internal: None,
            retry: None,
        }
    }

    /// 400 for malformed input.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    /// 422 for well-formed but invalid input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidRequest,
            message,
        )
    }

    /// 404; also for objects that belong to someone else.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{what} not found"),
        )
    }

    /// 401 for a missing or unknown key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    /// 403 for a key of the wrong kind.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// 500 with detail kept for the log.
    pub fn internal(detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: ErrorCode::Internal,
            message: "internal error; the request id identifies it in the server log".into(),
            internal: Some(detail.into()),
            retry: None,
        }
    }
}

impl ApiError {
    /// Logs the error; the `error` member of its body.
    fn logged(self) -> ErrorDetail {
        let id = request_id::current();
        let code = self.code.as_str();
        if let Some(detail) = &self.internal {
            tracing::error!(request_id = %id, code, detail = %detail, "request failed");
        } else {
            tracing::debug!(request_id = %id, code, status = self.status.as_u16(), "request refused");
        }
        ErrorDetail {
            code: self.code,
            message: self.message,
            request_id: id.to_string(),
            reset: self.retry.and_then(|r| r.reset),
        }
    }

    /// This error's answer with `extra` top-level members beside `error`, its own
    /// content type and `Cache-Control: no-store`: for documents whose standard says
    /// how an absence is written (the DID resolution result of a deactivated DID), so
    /// the answer is both that and an ordinary error body. An `error` member in
    /// `extra` is replaced.
    pub fn into_response_with(
        self,
        content_type: &'static str,
        mut extra: serde_json::Map<String, serde_json::Value>,
    ) -> Response {
        let status = self.status;
        let error = serde_json::to_value(self.logged()).unwrap_or_default();
        extra.insert("error".into(), error);
        let mut resp = (status, Json(serde_json::Value::Object(extra))).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

impl ApiError {
    /// This error for a compatibility surface whose product writes `error` as a
    /// string (`crate::compat`): `{"error": CODE, "message", "request_id"}` with
    /// `extra` members beside them (`extra`'s own `error` is replaced); the same
    /// status, logging and headers as every other error answer.
    pub fn into_string_error_response(
        self,
        mut extra: serde_json::Map<String, serde_json::Value>,
    ) -> Response {
        let status = self.status;
        let retry_after = self.retry.as_ref().map(|r| r.after_s);
        let detail = self.logged();
        extra.insert("error".into(), detail.code.as_str().into());
        extra
            .entry("message")
            .or_insert_with(|| detail.message.into());
        extra
            .entry("request_id")
            .or_insert_with(|| detail.request_id.into());
        if let Some(reset) = detail.reset {
            extra.entry("reset").or_insert_with(|| reset.into());
        }
        with_retry_after(
            error_headers(
                status,
                (status, Json(serde_json::Value::Object(extra))).into_response(),
            ),
            retry_after,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry_after = self.retry.as_ref().map(|r| r.after_s);
        let body = ErrorBody {
            error: self.logged(),
        };
        with_retry_after(
            error_headers(status, (status, Json(body)).into_response()),
            retry_after,
        )
    }
}

/// `Retry-After` of an error that says when (a quota's reset), over any default.
fn with_retry_after(mut resp: Response, after_s: Option<u64>) -> Response {
    if let Some(s) = after_s {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

/// The headers every error answer carries: a challenge on a 401, `Retry-After` on a
/// 503.
fn error_headers(status: StatusCode, mut resp: Response) -> Response {
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"bonafide\""),
        );
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // Every 503 here is a condition that passes (a full or locked store, a
        // busy audit log, a timeout): say when to try again (RFC 9110 §10.2.3).
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    resp
}

/// `Retry-After` of every 503, seconds.
pub const RETRY_AFTER_SECS: &str = "5";

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("object"),
            StoreError::Conflict(kind) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, kind.message())
            }
            // The store's own trouble, not the client's, and nothing was written: 503
            // so clients retry later. The store logs when it starts and stops failing.
            StoreError::Full(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StorageFull,
                "the registry's storage is full; nothing was written; retry later",
            ),
            StoreError::Unavailable(detail) => ApiError {
                internal: Some(detail),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::StoreUnavailable,
                    "the registry's store cannot take writes now; nothing was written; retry later",
                )
            },
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        ApiError::internal(format!("signing key: {e}"))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let (code, message) = match &r {
            JsonRejection::JsonDataError(e) => (ErrorCode::InvalidRequest, body_error_text(e)),
            JsonRejection::JsonSyntaxError(_) => (
                ErrorCode::MalformedJson,
                "request body is not valid JSON".to_owned(),
            ),
            JsonRejection::MissingJsonContentType(_) => (
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with `Content-Type: application/json`".to_owned(),
            ),
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => (
                ErrorCode::PayloadTooLarge,
                "request body is too large".to_owned(),
            ),
            _ => (
                ErrorCode::BadRequest,
                "request body could not be read".to_owned(),
            ),
        };
        ApiError::new(status, code, message)
    }
}

/// serde's message for a data error without axum's prefix, e.g. "missing field `name`".
fn body_error_text(e: &impl std::error::Error) -> String {
    let text = match e.source() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    };
    let text = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m)
        .to_owned();
    format!("invalid request body: {text}")
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(format!("invalid path parameter: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        let text = r.body_text();
        let text = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        ApiError::bad_request(format!("invalid query string: {text}"))
    }
}

/// `Json` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// `Path` whose rejections are [`ApiError`]s.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `Query` whose rejections are [`ApiError`]s.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// A JSON body that may also be absent (empty), in which case `T::default()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonOrEmpty<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonOrEmpty<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ErrorCode::PayloadTooLarge,
                        "request body is too large",
                    )
                } else {
                    ApiError::bad_request("request body could not be read")
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonOrEmpty(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(JsonOrEmpty)
            .map_err(|e| match e.classify() {
                serde_json::error::Category::Data => {
                    ApiError::invalid(format!("invalid request body: {}", strip_position(&e)))
                }
                _ => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::MalformedJson,
                    "request body is not valid JSON",
                ),
            })
    }
}

fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    text.rsplit_once(" at line ")
        .map_or(text.clone(), |(m, _)| m.to_owned())
}

#[cfg(test)]
mod retry_after_tests {
    use super::*;

    #[test]
    fn every_503_says_when_to_retry_and_nothing_else_does() {
        let full: ApiError = StoreError::Full("disk".into()).into();
        let resp = full.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.headers()
                .get(header::RETRY_AFTER)
                .map(HeaderValue::as_bytes),
            Some(RETRY_AFTER_SECS.as_bytes())
        );
        let locked: ApiError = StoreError::Unavailable("locked".into()).into();
        assert!(
            locked
                .into_response()
                .headers()
                .contains_key(header::RETRY_AFTER)
        );
        let bad = ApiError::invalid("no").into_response();
        assert!(!bad.headers().contains_key(header::RETRY_AFTER));
    }

    #[tokio::test]
    async fn every_error_body_is_the_documented_error_body() {
        for err in [
            ApiError::invalid("no"),
            ApiError::unauthorized("who"),
            StoreError::Full("disk".into()).into(),
        ] {
            let code = err.code.clone();
            let bytes = axum::body::to_bytes(err.into_response().into_body(), 1 << 16)
                .await
                .unwrap();
            let raw: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let body: ErrorBody = serde_json::from_value(raw.clone()).unwrap();
            assert_eq!(body.error.code, code);
            // Nothing beside the schema's members (`ErrorBody` reads answers
            // leniently, so compare what it writes back with what was sent).
            assert_eq!(serde_json::to_value(&body).unwrap(), raw);
        }
    }
}
