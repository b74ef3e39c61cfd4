//! What an error is, for `--json`: every error is one object on stderr,
//! `{"error":{"code","message","http_status","request_id"}}` (and `hint` when there is
//! one). `code` is the registry's own code when the registry refused, else one of the
//! CLI's: `USAGE` (how the command was called), `FILE` (a local file), `UNREACHABLE`,
//! `NOT_A_REGISTRY`, `INVALID_URL`, `BAD_ANSWER`, `JWKS_INVALID`, `OUTPUT`, `ERROR`.
//!
//! Errors stay typed inside the `anyhow::Error` ([`bonafide_client::ClientError`], an
//! I/O error, a [`Failure`]) and are found again here by downcasting, so `message`
//! keeps the whole chain's text while the code comes from the type.

use bonafide_client::ClientError;
use serde_json::{Value, json};

/// A CLI error with its code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The `--json` code.
    pub code: &'static str,
    /// What to tell the user.
    pub message: String,
}

impl Failure {
    /// How the command was called is wrong (a flag, a missing setting).
    pub fn usage(message: impl Into<String>) -> anyhow::Error {
        Failure {
            code: "USAGE",
            message: message.into(),
        }
        .into()
    }

    /// An error with `code`.
    pub fn coded(code: &'static str, message: impl Into<String>) -> anyhow::Error {
        Failure {
            code,
            message: message.into(),
        }
        .into()
    }
}

/// An error as `--json` shows it, and the hint text output adds.
#[derive(Debug)]
pub struct Described {
    /// The code.
    pub code: String,
    /// The whole chain's text.
    pub message: String,
    /// The registry's HTTP status, when the registry refused.
    pub http_status: Option<u16>,
    /// The registry's request id, when it gave one.
    pub request_id: Option<String>,
    /// What to try.
    pub hint: Option<String>,
}

impl Described {
    /// `{"error":{…}}`.
    pub fn to_json(&self) -> Value {
        let mut error = json!({
            "code": self.code,
            "message": self.message,
            "http_status": self.http_status,
            "request_id": self.request_id,
        });
        if let Some(h) = &self.hint {
            error["hint"] = json!(h);
        }
        json!({ "error": error })
    }
}

/// Finds what `e` is.
pub fn describe(e: &anyhow::Error) -> Described {
    let message = format!("{e:#}");
    let mut d = Described {
        code: "ERROR".to_owned(),
        message,
        http_status: None,
        request_id: None,
        hint: None,
    };
    // The outermost typed error decides.
    for (depth, cause) in e.chain().enumerate() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            d.code = f.code.to_owned();
            return d;
        }
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            describe_client(c, &mut d);
            // A hint speaks of --url and BONAFIDE_API_KEY: not for an error the
            // command framed as about something else (`cannot load the JWKS …`).
            if depth > 0 {
                d.hint = None;
            }
            return d;
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            d.code = "FILE".to_owned();
            return d;
        }
    }
    d
}

fn describe_client(e: &ClientError, d: &mut Described) {
    let (code, hint) = match e {
        ClientError::Api {
            status,
            code,
            request_id,
            ..
        } => {
            d.http_status = Some(*status);
            d.request_id = (request_id != "-").then(|| request_id.clone());
            let hint = match status {
                401 => Some("check BONAFIDE_API_KEY".to_owned()),
                _ => None,
            };
            (code.as_str().to_owned(), hint)
        }
        ClientError::Unreachable { url, .. } => (
            "UNREACHABLE".to_owned(),
            Some(format!(
                "is `bonafide serve` running, and is --url right? (tried {url})"
            )),
        ),
        ClientError::NotARegistry { url, .. } => (
            "NOT_A_REGISTRY".to_owned(),
            Some(format!(
                "--url (or BONAFIDE_URL) is {url}: give the address `bonafide serve` printed (`bonafide listening on …`)"
            )),
        ),
        ClientError::InvalidUrl { .. } => ("INVALID_URL".to_owned(), None),
        ClientError::Decode { .. } => ("BAD_ANSWER".to_owned(), None),
        ClientError::Key(_) => ("JWKS_INVALID".to_owned(), None),
        ClientError::File { .. } => ("FILE".to_owned(), None),
        _ => ("ERROR".to_owned(), None),
    };
    d.code = code;
    d.hint = hint;
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_registry_refusal_keeps_its_fields_under_context() {
        let e = anyhow::Error::new(ClientError::Api {
            status: 401,
            code: bonafide_api::ErrorCode::Unauthorized,
            message: "unknown API key".into(),
            request_id: "req_1".into(),
        })
        .context("cannot list agents");
        let d = describe(&e);
        assert_eq!(d.code, "UNAUTHORIZED");
        assert_eq!(d.http_status, Some(401));
        assert_eq!(d.request_id.as_deref(), Some("req_1"));
        assert!(d.message.starts_with("cannot list agents: unknown API key"));
        assert!(
            d.to_json()["error"].get("hint").is_none(),
            "framed: no hint"
        );
        let bare = anyhow::Error::new(ClientError::Api {
            status: 401,
            code: bonafide_api::ErrorCode::Unauthorized,
            message: "unknown API key".into(),
            request_id: "-".into(),
        });
        let v = describe(&bare).to_json();
        assert_eq!(v["error"]["hint"], "check BONAFIDE_API_KEY");
        assert!(v["error"]["request_id"].is_null());
    }

    #[test]
    fn local_errors_have_cli_codes() {
        let io: anyhow::Result<()> = Err(std::io::Error::other("gone").into());
        let d = describe(&io.context("cannot read `x`").unwrap_err());
        assert_eq!((d.code.as_str(), d.http_status), ("FILE", None));
        assert_eq!(describe(&Failure::usage("no")).code, "USAGE");
        assert_eq!(describe(&anyhow::anyhow!("other")).code, "ERROR");
        let v = describe(&anyhow::anyhow!("other")).to_json();
        assert!(v["error"]["http_status"].is_null() && v["error"]["request_id"].is_null());
    }
}
