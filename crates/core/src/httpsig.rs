//! HTTP Message Signatures (RFC 9421) for requests signed by agents, in the Web Bot
//! Auth profile (draft-meunier-web-bot-auth-architecture): verify, sign, and the key
//! directory body.
//!
//! What this is: a pure verifier and signer for `ed25519` and `ecdsa-p256-sha256`
//! signatures over the components of one HTTP message, with the freshness and coverage
//! rules of the Web Bot Auth profile (`tag="web-bot-auth"`, `created` and `expires`
//! required, `@authority` covered, a present `Signature-Agent` header covered). The
//! caller passes the message it saw ([`Message`]), the clock and policy ([`Check`]),
//! and a key lookup by `keyid`; in the profile `keyid` is the RFC 7638 JWK thumbprint,
//! but the lookup decides, so the RFC 9421 Appendix B keys (`test-key-ed25519`) work.
//!
//! What this is not: no I/O, no clock (`now` is in [`Check`]), no replay cache (the
//! caller stores [`Verified::nonce`] or the signature until
//! [`Verified::replay_until`], the end of its window), no body digest
//! (`content-digest` is covered as a plain header; checking it against a body is the
//! caller's job), no RSA or HMAC algorithms.
//!
//! Strictness beyond RFC 9421, each to keep one meaning per byte string:
//! - Structured fields (RFC 8941) with duplicate dictionary keys or duplicate
//!   parameters are refused (RFC 8941 would keep the last one).
//! - The `Signature-Input` member must be in canonical RFC 8941 serialization: the
//!   `@signature-params` line of the signature base (RFC 9421 §2.3) is rebuilt from the
//!   parsed value and must equal the text that was sent, so the verifier and any other
//!   parser cannot disagree about what was signed.
//! - Of the component parameters, only `key` (RFC 9421 §2.1.2: one member of a
//!   Dictionary field, as Web Bot Auth covers `"signature-agent";key="sig1"`) is
//!   supported, on header fields; `sf`, `bs`, `req`, `tr`, `name` and `@query-param`
//!   are refused with [`HttpSigError::UnsupportedComponentParameter`]; a covered
//!   component (with its `key`) may appear once.
//! - Header values holding CR, LF or NUL are refused (they would forge base lines).
//!
//! Limits: [`MAX_MEMBERS`] signatures per field, [`MAX_COMPONENTS`] covered
//! components, [`MAX_PARAMS`] parameters per item, and [`Check::max_header_bytes`] for
//! the whole message (method, URL, header names and values).

use std::fmt::Write as _;

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::keys::{Algorithm, Jwk, Jwks, SigningKey, VerifyingKey};

/// The `tag` of Web Bot Auth signatures.
pub const WEB_BOT_AUTH_TAG: &str = "web-bot-auth";
/// The request header naming the signer's key directory (Web Bot Auth); when present
/// it must be covered.
pub const SIGNATURE_AGENT: &str = "signature-agent";
/// Media type of the key directory body built by [`directory`].
pub const DIRECTORY_MEDIA_TYPE: &str = "application/http-message-signatures-directory+json";
/// Well-known path of the key directory (draft-meunier-http-message-signatures-directory).
pub const DIRECTORY_PATH: &str = "/.well-known/http-message-signatures-directory";

/// Most dictionary members (signatures) read from `Signature-Input` or `Signature`.
pub const MAX_MEMBERS: usize = 16;
/// Most covered components in one signature.
pub const MAX_COMPONENTS: usize = 32;
/// Most parameters on one item or inner list.
pub const MAX_PARAMS: usize = 16;
/// Default of [`Check::max_header_bytes`].
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default of [`Check::leeway`], in seconds.
pub const DEFAULT_LEEWAY: i64 = 60;
/// Default of [`Check::max_age`], in seconds.
pub const DEFAULT_MAX_AGE: i64 = 300;

/// The components Web Bot Auth requires to be covered (a covered `@target-uri` also
/// satisfies `@authority`).
pub const WEB_BOT_AUTH_COMPONENTS: &[&str] = &["@authority"];

/// Longest user-supplied text echoed back in an error.
const SHOWN: usize = 64;

/// One HTTP message as its receiver saw it. Header names match case-insensitively;
/// repeated headers are combined as RFC 9421 §2.1 says (values trimmed, joined with
/// `, `).
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// A request.
    Request {
        /// The method, as sent (case-sensitive, RFC 9421 §2.2.1).
        method: &'a str,
        /// The absolute target URI (`https://host[:port]/path?query`, no fragment, no
        /// userinfo); the derived components are cut from it.
        url: &'a str,
        /// Header fields as (name, value) pairs, in order.
        headers: &'a [(String, String)],
    },
    /// A response (for `@status`; RFC 9421 Appendix B.2.4 signs one).
    Response {
        /// The status code.
        status: u16,
        /// Header fields as (name, value) pairs, in order.
        headers: &'a [(String, String)],
    },
}

/// The verifier's clock and policy. [`Check::web_bot_auth`] gives the profile's
/// defaults.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// Current time, Unix seconds.
    pub now: i64,
    /// Clock skew allowed on every time comparison, in seconds. Default 60.
    pub leeway: i64,
    /// `created` may be at most this many seconds (plus leeway) before `now`.
    /// Default 300.
    pub max_age: i64,
    /// Only a signature with this `tag` is considered. Default `Some("web-bot-auth")`;
    /// `None` takes the first signature whatever its tag.
    pub required_tag: Option<&'a str>,
    /// Components the signature must cover. Default `["@authority"]`; `@authority` is
    /// also satisfied by `@target-uri`.
    pub required_components: &'a [&'a str],
    /// Refuse a signature without `expires`. Default true (Web Bot Auth requires it;
    /// RFC 9421 does not).
    pub require_expires: bool,
    /// Refuse a signature without `nonce`. Default false: Web Bot Auth only recommends
    /// a nonce, so replay protection without one rests on the caller remembering the
    /// signature until it expires.
    pub require_nonce: bool,
    /// Most bytes in the method, URL, header names and values together. Default
    /// [`DEFAULT_MAX_HEADER_BYTES`] (16 KiB).
    pub max_header_bytes: usize,
}

impl Check<'static> {
    /// The Web Bot Auth profile at `now`: tag `web-bot-auth`, `@authority` covered,
    /// `created` and `expires` required, 60 s leeway, 300 s maximum age, nonce
    /// optional, 16 KiB of headers.
    pub fn web_bot_auth(now: i64) -> Self {
        Check {
            now,
            leeway: DEFAULT_LEEWAY,
            max_age: DEFAULT_MAX_AGE,
            required_tag: Some(WEB_BOT_AUTH_TAG),
            required_components: WEB_BOT_AUTH_COMPONENTS,
            require_expires: true,
            require_nonce: false,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// A signature that verified, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The dictionary label (`sig1`).
    pub label: String,
    /// The `keyid` parameter, as passed to the key lookup.
    pub keyid: String,
    /// The verifying key's algorithm (EdDSA or ES256).
    pub alg: Algorithm,
    /// The `created` parameter, Unix seconds.
    pub created: i64,
    /// The `expires` parameter, Unix seconds.
    pub expires: Option<i64>,
    /// The `nonce` parameter; the caller refuses a repeat.
    pub nonce: Option<String>,
    /// The `tag` parameter.
    pub tag: Option<String>,
    /// The covered component names, in signed order.
    pub covered: Vec<String>,
    /// The `Signature-Agent` header value, when present (and therefore covered).
    pub signature_agent: Option<String>,
    /// The last second (Unix, inclusive) at which [`verify`] would accept this
    /// signature again: `min(created + max_age, expires) + leeway`. The caller keeps
    /// its replay-cache entry (`keyid`, `nonce`) until then, and may forget it after
    /// (the signature is refused as too old or expired anyway).
    pub replay_until: i64,
}

/// What [`sign`] puts on a request: the two header values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// `Signature-Input` value: `label=("@authority" …);created=…;keyid="…"…`.
    pub signature_input: String,
    /// `Signature` value: `label=:base64:`.
    pub signature: String,
}

/// Parameters of a signature made by [`sign`]. They are written in this order:
/// `created`, `expires`, `keyid`, `alg`, `nonce`, `tag` (absent ones skipped).
#[derive(Debug, Clone, Copy)]
pub struct SignParams<'a> {
    /// Dictionary label, an RFC 8941 key such as `sig1`.
    pub label: &'a str,
    /// `created`, Unix seconds.
    pub created: i64,
    /// `expires`, Unix seconds; Web Bot Auth requires it.
    pub expires: Option<i64>,
    /// `keyid`; `None` uses the key's RFC 7638 thumbprint (the Web Bot Auth keyid).
    pub keyid: Option<&'a str>,
    /// `nonce`; printable ASCII.
    pub nonce: Option<&'a str>,
    /// `tag`, e.g. [`WEB_BOT_AUTH_TAG`].
    pub tag: Option<&'a str>,
    /// Write the `alg` parameter (`ed25519` or `ecdsa-p256-sha256`).
    pub include_alg: bool,
}

/// Why a message signature was refused or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpSigError {
    /// The message is larger than [`Check::max_header_bytes`].
    #[error("message headers exceed {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A count limit was passed.
    #[error("more than {limit} {what}")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A required header field is absent.
    #[error("missing `{0}` header")]
    MissingHeader(&'static str),
    /// A structured field (RFC 8941) does not parse.
    #[error("malformed `{field}` header at byte {at}: {reason}")]
    Malformed {
        /// The header field.
        field: &'static str,
        /// What was wrong.
        reason: &'static str,
        /// Byte offset in the combined field value.
        at: usize,
    },
    /// No `Signature-Input` member carries the required tag.
    #[error("no signature with tag `{0}`")]
    NoSignatureWithTag(String),
    /// The label is absent from a field.
    #[error("no `{label}` member in `{field}`")]
    MissingLabel {
        /// The header field.
        field: &'static str,
        /// The label.
        label: String,
    },
    /// A member has the wrong shape.
    #[error("`{field}` member `{label}` is not {expected}")]
    BadMember {
        /// The header field.
        field: &'static str,
        /// The label.
        label: String,
        /// What it must be.
        expected: &'static str,
    },
    /// The `Signature-Input` member is not in canonical RFC 8941 serialization.
    #[error("`Signature-Input` member `{0}` is not canonically serialized (RFC 8941 §4.1)")]
    NonCanonical(String),
    /// A required signature parameter is absent.
    #[error("signature parameter `{0}` is missing")]
    MissingParameter(&'static str),
    /// A signature parameter has the wrong type.
    #[error("signature parameter `{name}` must be {expected}")]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// The type it must have.
        expected: &'static str,
    },
    /// `expires` is before `created`.
    #[error("`expires` ({expires}) is before `created` ({created})")]
    ExpiresBeforeCreated {
        /// `created`.
        created: i64,
        /// `expires`.
        expires: i64,
    },
    /// `created` is in the future beyond the leeway.
    #[error("`created` ({created}) is in the future (now {now})")]
    CreatedInFuture {
        /// `created`.
        created: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// `expires` has passed (beyond the leeway).
    #[error("signature expired at {expires} (now {now})")]
    Expired {
        /// `expires`.
        expires: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// `created` is older than the maximum age.
    #[error("signature created at {created} is older than {max_age} s (now {now})")]
    TooOld {
        /// `created`.
        created: i64,
        /// The maximum age.
        max_age: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// The key lookup knows no key of this `keyid`.
    #[error("unknown keyid `{0}`")]
    UnknownKey(String),
    /// The `alg` parameter is not `ed25519` or `ecdsa-p256-sha256`.
    #[error("unsupported signature algorithm `{0}` (use ed25519 or ecdsa-p256-sha256)")]
    UnsupportedAlgorithm(String),
    /// The key is of an algorithm this module does not use (RS256).
    #[error("key algorithm {0} is not usable for HTTP message signatures")]
    UnsupportedKey(Algorithm),
    /// The `alg` parameter does not fit the key.
    #[error("`alg` `{alg}` does not fit the {key} key")]
    AlgorithmMismatch {
        /// The `alg` parameter.
        alg: String,
        /// The key's algorithm.
        key: Algorithm,
    },
    /// A covered component is not a quoted string, or a component name is invalid.
    #[error("invalid component identifier `{0}`")]
    BadComponent(String),
    /// A covered component appears twice.
    #[error("component `{0}` is covered twice")]
    DuplicateComponent(String),
    /// A derived component is unknown, unsupported, or not defined for this message.
    #[error("component `{0}` is unknown, unsupported or not defined for this message")]
    UnknownComponent(String),
    /// A component parameter that is not supported.
    #[error("component `{component}` has unsupported parameter `{parameter}`")]
    UnsupportedComponentParameter {
        /// The component.
        component: String,
        /// The parameter.
        parameter: String,
    },
    /// A covered header field is absent from the message.
    #[error("covered header `{0}` is missing from the message")]
    MissingComponent(String),
    /// The signature does not cover a component the policy requires.
    #[error("signature does not cover required component `{0}`")]
    NotCovered(String),
    /// A header value is unusable (CR, LF or NUL).
    #[error("header `{0}` holds a CR, LF or NUL")]
    BadHeader(String),
    /// The method is not an HTTP token.
    #[error("method `{0}` is not an HTTP token")]
    BadMethod(String),
    /// The target URI is not usable.
    #[error("target URI {0}")]
    BadUrl(&'static str),
    /// A value given to [`sign`] cannot be serialized.
    #[error("cannot sign: {0}")]
    BadSignInput(&'static str),
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The crypto backend failed to sign.
    #[error("signing failed")]
    Sign,
}

fn shown(s: &str) -> String {
    s.chars().take(SHOWN).collect()
}

/// Verifies one signature of `msg` under `check`. `key_for` maps a `keyid` to its key
/// (the Web Bot Auth keyid is the key's RFC 7638 thumbprint, [`VerifyingKey::kid`]).
///
/// Which signature: with [`Check::required_tag`] set, the first `Signature-Input`
/// member whose `tag` equals it; otherwise the first member. Others are ignored.
///
/// Order of checks (RFC 9421 §3.2 plus the profile): size, parse, choose the label,
/// canonical form, parameters and times, coverage, key lookup and `alg`, signature.
pub fn verify(
    msg: &Message<'_>,
    check: &Check<'_>,
    key_for: impl Fn(&str) -> Option<VerifyingKey>,
) -> Result<Verified, HttpSigError> {
    let resolved = Resolved::new(msg, check.max_header_bytes)?;
    let chosen = choose(&resolved, check.required_tag)?;
    let params = SigParams::read(&chosen.params)?;

    // Freshness (Web Bot Auth; RFC 9421 §3.2.1 leaves the policy to the verifier).
    let created = params
        .created
        .ok_or(HttpSigError::MissingParameter("created"))?;
    if let Some(expires) = params.expires {
        if expires < created {
            return Err(HttpSigError::ExpiresBeforeCreated { created, expires });
        }
    } else if check.require_expires {
        return Err(HttpSigError::MissingParameter("expires"));
    }
    let now = check.now;
    if created > now.saturating_add(check.leeway) {
        return Err(HttpSigError::CreatedInFuture { created, now });
    }
    if let Some(expires) = params.expires
        && now > expires.saturating_add(check.leeway)
    {
        return Err(HttpSigError::Expired { expires, now });
    }
    if now
        > created
            .saturating_add(check.max_age)
            .saturating_add(check.leeway)
    {
        return Err(HttpSigError::TooOld {
            created,
            max_age: check.max_age,
            now,
        });
    }
    if check.require_nonce && params.nonce.is_none() {
        return Err(HttpSigError::MissingParameter("nonce"));
    }

    // Coverage.
    let covered = covered_names(&chosen.items)?;
    for required in check.required_components {
        let met = covered
            .iter()
            .any(|c| c == required || (*required == "@authority" && c == "@target-uri"));
        if !met {
            return Err(HttpSigError::NotCovered(shown(required)));
        }
    }
    let signature_agent = resolved.header(SIGNATURE_AGENT)?;
    if let Some(agent) = &signature_agent {
        signature_agent_covered(agent, &covered_components(&chosen.items)?)?;
    }

    // The signature value.
    let sig_field = resolved
        .header("signature")?
        .ok_or(HttpSigError::MissingHeader("Signature"))?;
    let sigs = parse_dictionary(&sig_field, "Signature")?;
    let entry =
        sigs.iter()
            .find(|e| e.key == chosen.label)
            .ok_or_else(|| HttpSigError::MissingLabel {
                field: "Signature",
                label: chosen.label.clone(),
            })?;
    let sig_bytes = match &entry.member {
        Member::Item(Item {
            bare: Bare::Bytes(b),
            ..
        }) => b,
        _ => {
            return Err(HttpSigError::BadMember {
                field: "Signature",
                label: chosen.label.clone(),
                expected: "a byte sequence",
            });
        }
    };

    // The key.
    let keyid = params
        .keyid
        .ok_or(HttpSigError::MissingParameter("keyid"))?;
    let key = key_for(&keyid).ok_or_else(|| HttpSigError::UnknownKey(shown(&keyid)))?;
    let alg = key.alg();
    if !matches!(alg, Algorithm::EdDSA | Algorithm::ES256) {
        return Err(HttpSigError::UnsupportedKey(alg));
    }
    if let Some(declared) = &params.alg {
        let named = match declared.as_str() {
            "ed25519" => Algorithm::EdDSA,
            "ecdsa-p256-sha256" => Algorithm::ES256,
            other => return Err(HttpSigError::UnsupportedAlgorithm(shown(other))),
        };
        if named != alg {
            return Err(HttpSigError::AlgorithmMismatch {
                alg: declared.clone(),
                key: alg,
            });
        }
    }

    let base = build_base(&resolved, &chosen.items, &chosen.text)?;
    if !key.verify(base.as_bytes(), sig_bytes) {
        return Err(HttpSigError::BadSignature);
    }
    // Accepted while `now <= created + max_age + leeway` and `now <= expires + leeway`.
    let last = created.saturating_add(check.max_age);
    let replay_until = params
        .expires
        .map_or(last, |e| e.min(last))
        .saturating_add(check.leeway);
    Ok(Verified {
        label: chosen.label,
        keyid,
        alg,
        created,
        replay_until,
        expires: params.expires,
        nonce: params.nonce,
        tag: params.tag,
        covered,
        signature_agent,
    })
}

/// The signature base (RFC 9421 §2.5) of the `Signature-Input` member `label` of
/// `msg`, for diagnostics and test vectors. Applies the same parsing, canonical-form and
/// component rules as [`verify`], with the default size limit; checks no signature.
pub fn signature_base(msg: &Message<'_>, label: &str) -> Result<String, HttpSigError> {
    let resolved = Resolved::new(msg, DEFAULT_MAX_HEADER_BYTES)?;
    let entries = signature_inputs(&resolved)?;
    let entry = entries
        .into_iter()
        .find(|e| e.key == label)
        .ok_or_else(|| HttpSigError::MissingLabel {
            field: "Signature-Input",
            label: shown(label),
        })?;
    let chosen = Chosen::from_entry(entry, &resolved)?;
    covered_names(&chosen.items)?;
    build_base(&resolved, &chosen.items, &chosen.text)
}

/// Signs `msg` over `components` (names such as `@authority` or `signature-agent`,
/// or a Dictionary member of a header as `signature-agent;key=sig1`) with `key`
/// (Ed25519 or P-256). Returns the `Signature-Input` and `Signature` header values
/// to add.
pub fn sign(
    key: &SigningKey,
    msg: &Message<'_>,
    components: &[&str],
    params: &SignParams<'_>,
) -> Result<Signed, HttpSigError> {
    let alg_name = match key.alg() {
        Algorithm::EdDSA => "ed25519",
        Algorithm::ES256 => "ecdsa-p256-sha256",
        other => return Err(HttpSigError::UnsupportedKey(other)),
    };
    if !is_key(params.label) {
        return Err(HttpSigError::BadSignInput(
            "label must be an RFC 8941 key (lowercase letters, digits, `_-.*`)",
        ));
    }
    if components.len() > MAX_COMPONENTS {
        return Err(HttpSigError::TooMany {
            what: "covered components",
            limit: MAX_COMPONENTS,
        });
    }
    let resolved = Resolved::new(msg, usize::MAX)?;
    let items: Vec<Item> = components.iter().map(|c| component_item(c)).collect();
    covered_names(&items)?;

    let text_param = |v: &str, what: &'static str| -> Result<Bare, HttpSigError> {
        if v.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            Ok(Bare::Str(v.to_owned()))
        } else {
            Err(HttpSigError::BadSignInput(what))
        }
    };
    let mut sp: Vec<(String, Bare)> = vec![("created".into(), Bare::Int(params.created))];
    if let Some(e) = params.expires {
        sp.push(("expires".into(), Bare::Int(e)));
    }
    let keyid = params.keyid.unwrap_or_else(|| key.kid());
    sp.push((
        "keyid".into(),
        text_param(keyid, "keyid must be printable ASCII")?,
    ));
    if params.include_alg {
        sp.push(("alg".into(), Bare::Str(alg_name.into())));
    }
    if let Some(n) = params.nonce {
        sp.push((
            "nonce".into(),
            text_param(n, "nonce must be printable ASCII")?,
        ));
    }
    if let Some(t) = params.tag {
        sp.push(("tag".into(), text_param(t, "tag must be printable ASCII")?));
    }
    for (_, v) in &sp {
        if let Bare::Int(i) = v
            && !(-MAX_INT..=MAX_INT).contains(i)
        {
            return Err(HttpSigError::BadSignInput(
                "created and expires must have at most 15 digits",
            ));
        }
    }
    let mut inner = String::new();
    ser_inner(&items, &sp, &mut inner);
    let base = build_base(&resolved, &items, &inner)?;
    let sig = key.sign(base.as_bytes()).map_err(|_| HttpSigError::Sign)?;
    Ok(Signed {
        signature_input: format!("{}={inner}", params.label),
        signature: format!("{}=:{}:", params.label, STANDARD.encode(sig)),
    })
}

/// The RFC 9530 `Content-Digest` value of `body` with SHA-256
/// (`sha-256=:<base64>:`), for a signer to send and cover, and a verifier to compare
/// with the body it received.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(crate::sha256(body)))
}

/// The key directory body (`{"keys": [JWK, …]}`), served at [`DIRECTORY_PATH`] as
/// [`DIRECTORY_MEDIA_TYPE`] (draft-meunier-http-message-signatures-directory §3). Only
/// public members are written ([`Jwk`] never serializes private ones).
pub fn directory(keys: &[Jwk]) -> serde_json::Value {
    let set = Jwks {
        keys: keys.to_vec(),
    };
    // A Jwk is strings only: serialization cannot fail; an empty set is the fallback.
    serde_json::to_value(set).unwrap_or_else(|_| serde_json::json!({ "keys": [] }))
}

// ---------------------------------------------------------------------------------
// Choosing and reading a signature.

/// The chosen `Signature-Input` member.
struct Chosen {
    label: String,
    items: Vec<Item>,
    params: Vec<(String, Bare)>,
    /// The member value as sent; equal to its canonical serialization.
    text: String,
}

impl Chosen {
    fn from_entry(entry: Entry, resolved: &Resolved<'_>) -> Result<Self, HttpSigError> {
        let Member::Inner(items, params) = entry.member else {
            return Err(HttpSigError::BadMember {
                field: "Signature-Input",
                label: entry.key,
                expected: "an inner list",
            });
        };
        let mut canonical = String::new();
        ser_inner(&items, &params, &mut canonical);
        let sent = resolved
            .signature_input
            .get(entry.text.0..entry.text.1)
            .unwrap_or_default();
        if canonical != sent {
            return Err(HttpSigError::NonCanonical(entry.key));
        }
        Ok(Chosen {
            label: entry.key,
            items,
            params,
            text: canonical,
        })
    }
}

fn signature_inputs(resolved: &Resolved<'_>) -> Result<Vec<Entry>, HttpSigError> {
    if resolved.signature_input.is_empty() {
        return Err(HttpSigError::MissingHeader("Signature-Input"));
    }
    parse_dictionary(&resolved.signature_input, "Signature-Input")
}

fn choose(resolved: &Resolved<'_>, tag: Option<&str>) -> Result<Chosen, HttpSigError> {
    let entries = signature_inputs(resolved)?;
    let entry = match tag {
        None => entries.into_iter().next(),
        Some(tag) => entries.into_iter().find(|e| match &e.member {
            Member::Inner(_, params) => params
                .iter()
                .any(|(k, v)| k == "tag" && matches!(v, Bare::Str(s) if s == tag)),
            Member::Item(_) => false,
        }),
    }
    .ok_or_else(|| match tag {
        Some(t) => HttpSigError::NoSignatureWithTag(shown(t)),
        None => HttpSigError::MissingHeader("Signature-Input"),
    })?;
    Chosen::from_entry(entry, resolved)
}

/// The signature parameters of RFC 9421 §2.3 this module reads; others are signed but
/// not interpreted.
struct SigParams {
    created: Option<i64>,
    expires: Option<i64>,
    keyid: Option<String>,
    alg: Option<String>,
    nonce: Option<String>,
    tag: Option<String>,
}

impl SigParams {
    fn read(params: &[(String, Bare)]) -> Result<Self, HttpSigError> {
        let int = |name: &'static str| -> Result<Option<i64>, HttpSigError> {
            match params.iter().find(|(k, _)| k == name) {
                None => Ok(None),
                Some((_, Bare::Int(i))) => Ok(Some(*i)),
                Some(_) => Err(HttpSigError::BadParameter {
                    name,
                    expected: "an integer",
                }),
            }
        };
        let string = |name: &'static str| -> Result<Option<String>, HttpSigError> {
            match params.iter().find(|(k, _)| k == name) {
                None => Ok(None),
                Some((_, Bare::Str(s))) => Ok(Some(s.clone())),
                Some(_) => Err(HttpSigError::BadParameter {
                    name,
                    expected: "a string",
                }),
            }
        };
        Ok(SigParams {
            created: int("created")?,
            expires: int("expires")?,
            keyid: string("keyid")?,
            alg: string("alg")?,
            nonce: string("nonce")?,
            tag: string("tag")?,
        })
    }
}

/// The covered component names, checked: quoted strings, valid names, no parameters
/// but `key` on a header field (the rest of RFC 9421 §2.1 is refused), no repeats of
/// a name and key, not `@signature-params`.
fn covered_names(items: &[Item]) -> Result<Vec<String>, HttpSigError> {
    Ok(covered_components(items)?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// [`covered_names`], each with the Dictionary member its `key` selects.
fn covered_components(items: &[Item]) -> Result<Vec<(String, Option<String>)>, HttpSigError> {
    if items.len() > MAX_COMPONENTS {
        return Err(HttpSigError::TooMany {
            what: "covered components",
            limit: MAX_COMPONENTS,
        });
    }
    let mut covered: Vec<(String, Option<String>)> = Vec::with_capacity(items.len());
    for item in items {
        let Bare::Str(name) = &item.bare else {
            let mut s = String::new();
            ser_bare(&item.bare, &mut s);
            return Err(HttpSigError::BadComponent(shown(&s)));
        };
        let key = component_key(name, &item.params)?;
        let valid = match name.strip_prefix('@') {
            Some(derived) => !derived.is_empty() && derived.bytes().all(is_lower_tchar),
            None => !name.is_empty() && name.bytes().all(is_lower_tchar),
        };
        if !valid || name == "@signature-params" {
            return Err(HttpSigError::BadComponent(shown(name)));
        }
        if covered.iter().any(|(n, k)| n == name && *k == key) {
            return Err(HttpSigError::DuplicateComponent(shown(name)));
        }
        covered.push((name.clone(), key));
    }
    Ok(covered)
}

/// A component as [`sign`] takes it: `name`, or `name;key=member` (the member may be
/// quoted).
fn component_item(spec: &str) -> Item {
    match spec.split_once(";key=") {
        Some((name, member)) => Item {
            bare: Bare::Str(name.to_owned()),
            params: vec![(
                "key".to_owned(),
                Bare::Str(member.trim_matches('"').to_owned()),
            )],
        },
        None => Item {
            bare: Bare::Str(spec.to_owned()),
            params: Vec::new(),
        },
    }
}

/// The `key` parameter of a covered header field, if it has one (a String naming a
/// Dictionary member); any other parameter, or `key` on a derived component, is
/// refused.
fn component_key(name: &str, params: &[(String, Bare)]) -> Result<Option<String>, HttpSigError> {
    let unsupported = |parameter: &str| HttpSigError::UnsupportedComponentParameter {
        component: shown(name),
        parameter: shown(parameter),
    };
    match params {
        [] => Ok(None),
        [(k, Bare::Str(member))] if k == "key" && !name.starts_with('@') => {
            if is_key(member) {
                Ok(Some(member.clone()))
            } else {
                Err(HttpSigError::BadComponent(shown(name)))
            }
        }
        [(first, _), ..] => {
            // Name the parameter that is not supported (`key` is, alone).
            let other = params
                .iter()
                .find(|(k, _)| k != "key")
                .map_or(first, |(k, _)| k);
            Err(unsupported(other))
        }
    }
}

fn is_lower_tchar(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// ---------------------------------------------------------------------------------
// The message and its components (RFC 9421 §2.1, §2.2).

struct Target<'a> {
    uri: &'a str,
    scheme: String,
    authority: String,
    path: &'a str,
    query: Option<&'a str>,
}

enum Kind<'a> {
    Request { method: &'a str, target: Target<'a> },
    Response { status: u16 },
}

struct Resolved<'a> {
    kind: Kind<'a>,
    headers: &'a [(String, String)],
    /// The combined `Signature-Input` value, empty if absent.
    signature_input: String,
}

impl<'a> Resolved<'a> {
    fn new(msg: &Message<'a>, limit: usize) -> Result<Self, HttpSigError> {
        let (kind, headers, start) = match *msg {
            Message::Request {
                method,
                url,
                headers,
            } => {
                if method.is_empty() || !method.bytes().all(is_tchar) {
                    return Err(HttpSigError::BadMethod(shown(method)));
                }
                let target = parse_target(url)?;
                let kind = Kind::Request { method, target };
                (kind, headers, method.len().saturating_add(url.len()))
            }
            Message::Response { status, headers } => {
                if !(100..=999).contains(&status) {
                    return Err(HttpSigError::UnknownComponent("@status".into()));
                }
                (Kind::Response { status }, headers, 3)
            }
        };
        // Each header costs its bytes plus 4 (": " and CRLF), so empty ones count too.
        let size = headers.iter().fold(start, |n, (k, v)| {
            n.saturating_add(k.len())
                .saturating_add(v.len())
                .saturating_add(4)
        });
        if size > limit {
            return Err(HttpSigError::TooLarge { limit });
        }
        let mut resolved = Resolved {
            kind,
            headers,
            signature_input: String::new(),
        };
        resolved.signature_input = resolved.header("signature-input")?.unwrap_or_default();
        Ok(resolved)
    }

    /// The combined value of header `name` (lowercase): every field line's value,
    /// trimmed, joined with `, ` (RFC 9421 §2.1). `None` if absent.
    fn header(&self, name: &str) -> Result<Option<String>, HttpSigError> {
        let mut out: Option<String> = None;
        for (k, v) in self.headers {
            if !k.eq_ignore_ascii_case(name) {
                continue;
            }
            if v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                return Err(HttpSigError::BadHeader(shown(name)));
            }
            let v = v.trim_matches([' ', '\t']);
            match &mut out {
                None => out = Some(v.to_owned()),
                Some(acc) => {
                    acc.push_str(", ");
                    acc.push_str(v);
                }
            }
        }
        Ok(out)
    }

    fn component(&self, name: &str) -> Result<String, HttpSigError> {
        let unknown = || HttpSigError::UnknownComponent(shown(name));
        if !name.starts_with('@') {
            return self
                .header(name)?
                .ok_or_else(|| HttpSigError::MissingComponent(shown(name)));
        }
        match (&self.kind, name) {
            (Kind::Response { status }, "@status") => Ok(status.to_string()),
            (Kind::Request { method, .. }, "@method") => Ok((*method).to_owned()),
            (Kind::Request { target, .. }, "@target-uri") => Ok(target.uri.to_owned()),
            (Kind::Request { target, .. }, "@authority") => Ok(target.authority.clone()),
            (Kind::Request { target, .. }, "@scheme") => Ok(target.scheme.clone()),
            (Kind::Request { target, .. }, "@path") => Ok(target.path.to_owned()),
            (Kind::Request { target, .. }, "@query") => {
                Ok(format!("?{}", target.query.unwrap_or_default()))
            }
            (Kind::Request { target, .. }, "@request-target") => Ok(match target.query {
                Some(q) => format!("{}?{q}", target.path),
                None => target.path.to_owned(),
            }),
            _ => Err(unknown()),
        }
    }
}

impl Resolved<'_> {
    /// RFC 9421 §2.1.2: the member `key` of header `name` parsed as a Dictionary,
    /// serialized as RFC 8941 §4.1 writes it (parameters included).
    fn dictionary_member(&self, name: &str, key: &str) -> Result<String, HttpSigError> {
        let missing = || HttpSigError::MissingComponent(format!("{};key={key}", shown(name)));
        let value = self.header(name)?.ok_or_else(missing)?;
        let entries = parse_dictionary(&value, "covered dictionary field")?;
        let entry = entries.iter().find(|e| e.key == key).ok_or_else(missing)?;
        let mut out = String::new();
        match &entry.member {
            Member::Item(item) => ser_item(item, &mut out),
            Member::Inner(items, params) => ser_inner(items, params, &mut out),
        }
        Ok(out)
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Splits an absolute `http`/`https` URI (RFC 3986 §4.3) into the parts RFC 9421
/// §2.2 derives: scheme and host lowercased, default port dropped, empty path `/`.
/// Checks that `url` is a target URI this module can derive components from (an
/// absolute `http`/`https` URI with a host, a valid port, no fragment, visible ASCII),
/// so a caller can refuse a malformed one as a request error before verifying.
pub fn check_url(url: &str) -> Result<(), HttpSigError> {
    parse_target(url).map(|_| ())
}

fn parse_target(url: &str) -> Result<Target<'_>, HttpSigError> {
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HttpSigError::BadUrl(
            "holds spaces, control or non-ASCII characters",
        ));
    }
    if url.contains('#') {
        return Err(HttpSigError::BadUrl("holds a fragment"));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or(HttpSigError::BadUrl("is not an absolute http or https URI"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return Err(HttpSigError::BadUrl("is not an absolute http or https URI")),
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_query) = rest
        .split_at_checked(end)
        .ok_or(HttpSigError::BadUrl("is malformed"))?;
    if authority.contains('@') {
        return Err(HttpSigError::BadUrl("holds userinfo"));
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority
            .find(']')
            .ok_or(HttpSigError::BadUrl("has an unclosed IPv6 literal"))?;
        let (host, after) = authority
            .split_at_checked(close.saturating_add(1))
            .ok_or(HttpSigError::BadUrl("is malformed"))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(HttpSigError::BadUrl("has junk after the IPv6 literal")),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(HttpSigError::BadUrl("has no host"));
    }
    let mut authority = host.to_ascii_lowercase();
    if let Some(port) = port {
        // An empty port (`host:`) means the default (RFC 3986 §3.2.3).
        if !port.is_empty() {
            if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpSigError::BadUrl("has an invalid port"));
            }
            let number: u16 = port
                .parse()
                .map_err(|_| HttpSigError::BadUrl("has an invalid port"))?;
            if number.to_string() != default_port {
                authority.push(':');
                authority.push_str(&number.to_string());
            }
        }
    }
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    };
    Ok(Target {
        uri: url,
        scheme,
        authority,
        path: if path.is_empty() { "/" } else { path },
        query,
    })
}

/// The signature base of RFC 9421 §2.5: one `"name": value` line per covered
/// component, then `"@signature-params": ` and the member value, no final newline.
fn build_base(
    resolved: &Resolved<'_>,
    items: &[Item],
    params_text: &str,
) -> Result<String, HttpSigError> {
    let mut base = String::new();
    for item in items {
        let Bare::Str(name) = &item.bare else {
            return Err(HttpSigError::BadComponent(String::new()));
        };
        let value = match component_key(name, &item.params)? {
            None => resolved.component(name)?,
            Some(key) => resolved.dictionary_member(name, &key)?,
        };
        ser_item(item, &mut base);
        base.push_str(": ");
        base.push_str(&value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(params_text);
    Ok(base)
}

/// A present `Signature-Agent` must be covered whole, or every member of it by `key`
/// (Web Bot Auth's `"signature-agent";key="sig1"`): no member a signature does not
/// vouch for may reach the caller.
fn signature_agent_covered(
    value: &str,
    covered: &[(String, Option<String>)],
) -> Result<(), HttpSigError> {
    let keys: Vec<&str> = covered
        .iter()
        .filter(|(name, _)| name == SIGNATURE_AGENT)
        .map(|(_, key)| key.as_deref())
        .collect::<Option<Vec<&str>>>()
        .unwrap_or_default();
    let whole = covered
        .iter()
        .any(|(name, key)| name == SIGNATURE_AGENT && key.is_none());
    if whole {
        return Ok(());
    }
    let not_covered = || HttpSigError::NotCovered(SIGNATURE_AGENT.to_owned());
    if keys.is_empty() {
        return Err(not_covered());
    }
    let members = parse_dictionary(value, "Signature-Agent")?;
    if members.iter().all(|m| keys.contains(&m.key.as_str())) {
        Ok(())
    } else {
        Err(not_covered())
    }
}

// ---------------------------------------------------------------------------------
// RFC 8941 structured fields: the Dictionary, Inner List, Item and parameter subset
// RFC 9421 uses, with serialization (§4.1) for the canonical-form check.

/// Largest RFC 8941 integer (15 digits).
const MAX_INT: i64 = 999_999_999_999_999;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Bare {
    Int(i64),
    /// A decimal in thousandths (RFC 8941 allows three fractional digits).
    Dec(i64),
    Str(String),
    Token(String),
    Bytes(Vec<u8>),
    Bool(bool),
}

/// Parameters in order, keys unique.
type Params = Vec<(String, Bare)>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    bare: Bare,
    params: Vec<(String, Bare)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Member {
    Item(Item),
    Inner(Vec<Item>, Vec<(String, Bare)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    member: Member,
    /// Byte range of the member value in the field value (empty for a bare key).
    text: (usize, usize),
}

/// RFC 8941 byte sequences: standard alphabet, padding optional (§4.2.7 says parsers
/// SHOULD NOT fail without it), non-zero trailing bits refused.
const BYTES: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    field: &'static str,
}

/// Parses an RFC 8941 Dictionary (§4.2.2), refusing duplicate keys.
fn parse_dictionary(input: &str, field: &'static str) -> Result<Vec<Entry>, HttpSigError> {
    let mut p = Parser {
        s: input.as_bytes(),
        pos: 0,
        field,
    };
    p.skip_sp();
    let mut entries: Vec<Entry> = Vec::new();
    while p.peek().is_some() {
        let key = p.key()?;
        if entries.iter().any(|e| e.key == key) {
            return Err(p.err("duplicate dictionary key"));
        }
        let (member, text) = if p.eat(b'=') {
            let start = p.pos;
            let member = if p.peek() == Some(b'(') {
                let (items, params) = p.inner_list()?;
                Member::Inner(items, params)
            } else {
                Member::Item(p.item()?)
            };
            (member, (start, p.pos))
        } else {
            let params = p.params()?;
            let member = Member::Item(Item {
                bare: Bare::Bool(true),
                params,
            });
            (member, (p.pos, p.pos))
        };
        entries.push(Entry { key, member, text });
        if entries.len() > MAX_MEMBERS {
            return Err(HttpSigError::TooMany {
                what: "dictionary members",
                limit: MAX_MEMBERS,
            });
        }
        p.skip_ows();
        if p.peek().is_none() {
            break;
        }
        if !p.eat(b',') {
            return Err(p.err("expected `,` between members"));
        }
        p.skip_ows();
        if p.peek().is_none() {
            return Err(p.err("trailing comma"));
        }
    }
    Ok(entries)
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos = self.pos.saturating_add(1);
            true
        } else {
            false
        }
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos = self.pos.saturating_add(1);
        Some(b)
    }

    fn err(&self, reason: &'static str) -> HttpSigError {
        HttpSigError::Malformed {
            field: self.field,
            reason,
            at: self.pos,
        }
    }

    fn skip_sp(&mut self) {
        while self.eat(b' ') {}
    }

    fn skip_ows(&mut self) {
        while self.eat(b' ') || self.eat(b'\t') {}
    }

    /// §4.2.3.3: `( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`.
    fn key(&mut self) -> Result<String, HttpSigError> {
        match self.peek() {
            Some(b) if b.is_ascii_lowercase() || b == b'*' => {}
            _ => return Err(self.err("expected a key")),
        }
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b) {
                self.pos = self.pos.saturating_add(1);
            } else {
                break;
            }
        }
        Ok(self.text(start))
    }

    fn text(&self, start: usize) -> String {
        self.s
            .get(start..self.pos)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }

    /// §4.2.3.2, refusing duplicate keys.
    fn params(&mut self) -> Result<Vec<(String, Bare)>, HttpSigError> {
        let mut params: Vec<(String, Bare)> = Vec::new();
        while self.eat(b';') {
            self.skip_sp();
            let key = self.key()?;
            let value = if self.eat(b'=') {
                self.bare()?
            } else {
                Bare::Bool(true)
            };
            if params.iter().any(|(k, _)| *k == key) {
                return Err(self.err("duplicate parameter"));
            }
            params.push((key, value));
            if params.len() > MAX_PARAMS {
                return Err(HttpSigError::TooMany {
                    what: "parameters",
                    limit: MAX_PARAMS,
                });
            }
        }
        Ok(params)
    }

    fn item(&mut self) -> Result<Item, HttpSigError> {
        let bare = self.bare()?;
        let params = self.params()?;
        Ok(Item { bare, params })
    }

    /// §4.2.1.2.
    fn inner_list(&mut self) -> Result<(Vec<Item>, Params), HttpSigError> {
        if !self.eat(b'(') {
            return Err(self.err("expected `(`"));
        }
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            if self.eat(b')') {
                let params = self.params()?;
                return Ok((items, params));
            }
            items.push(self.item()?);
            if items.len() > MAX_COMPONENTS {
                return Err(HttpSigError::TooMany {
                    what: "inner list items",
                    limit: MAX_COMPONENTS,
                });
            }
            match self.peek() {
                Some(b' ' | b')') => {}
                _ => return Err(self.err("expected a space or `)` in inner list")),
            }
        }
    }

    /// §4.2.3.1.
    fn bare(&mut self) -> Result<Bare, HttpSigError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string(),
            Some(b':') => self.bytes(),
            Some(b'?') => self.boolean(),
            Some(b) if b.is_ascii_alphabetic() || b == b'*' => Ok(self.token()),
            _ => Err(self.err("expected an item")),
        }
    }

    /// §4.2.4: integers of up to 15 digits, decimals of up to 12.3 digits.
    fn number(&mut self) -> Result<Bare, HttpSigError> {
        let negative = self.eat(b'-');
        let mut int: i64 = 0;
        let mut int_digits = 0usize;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            self.pos = self.pos.saturating_add(1);
            int_digits = int_digits.saturating_add(1);
            if int_digits > 15 {
                return Err(self.err("integer longer than 15 digits"));
            }
            int = int.saturating_mul(10).saturating_add(i64::from(d - b'0'));
        }
        if int_digits == 0 {
            return Err(self.err("expected a digit"));
        }
        let sign = if negative { -1 } else { 1 };
        if !self.eat(b'.') {
            return Ok(Bare::Int(sign * int));
        }
        if int_digits > 12 {
            return Err(self.err("decimal with more than 12 integer digits"));
        }
        let mut frac: i64 = 0;
        let mut frac_digits = 0u32;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            self.pos = self.pos.saturating_add(1);
            frac_digits = frac_digits.saturating_add(1);
            if frac_digits > 3 {
                return Err(self.err("decimal with more than 3 fractional digits"));
            }
            frac = frac * 10 + i64::from(d - b'0');
        }
        if frac_digits == 0 {
            return Err(self.err("decimal ends with `.`"));
        }
        let scaled = frac * 10_i64.pow(3 - frac_digits);
        Ok(Bare::Dec(sign * (int * 1000 + scaled)))
    }

    /// §4.2.5: printable ASCII, `\"` and `\\` the only escapes.
    fn string(&mut self) -> Result<Bare, HttpSigError> {
        self.eat(b'"');
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => return Ok(Bare::Str(out)),
                Some(b'\\') => match self.next() {
                    Some(c @ (b'"' | b'\\')) => out.push(char::from(c)),
                    _ => return Err(self.err("invalid escape in string")),
                },
                Some(c @ 0x20..=0x7e) => out.push(char::from(c)),
                Some(_) => return Err(self.err("non-printable character in string")),
            }
        }
    }

    /// §4.2.6.
    fn token(&mut self) -> Bare {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if is_tchar(b) || b == b':' || b == b'/' {
                self.pos = self.pos.saturating_add(1);
            } else {
                break;
            }
        }
        Bare::Token(self.text(start))
    }

    /// §4.2.7.
    fn bytes(&mut self) -> Result<Bare, HttpSigError> {
        self.eat(b':');
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=') {
                self.pos = self.pos.saturating_add(1);
            } else {
                break;
            }
        }
        let encoded = self.s.get(start..self.pos).unwrap_or_default();
        if !self.eat(b':') {
            return Err(self.err("unterminated byte sequence"));
        }
        BYTES
            .decode(encoded)
            .map(Bare::Bytes)
            .map_err(|_| self.err("invalid base64 in byte sequence"))
    }

    /// §4.2.8.
    fn boolean(&mut self) -> Result<Bare, HttpSigError> {
        self.eat(b'?');
        match self.next() {
            Some(b'1') => Ok(Bare::Bool(true)),
            Some(b'0') => Ok(Bare::Bool(false)),
            _ => Err(self.err("invalid boolean")),
        }
    }
}

fn is_key(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'*')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b))
}

/// §4.1.3.1 (bare item).
fn ser_bare(bare: &Bare, out: &mut String) {
    match bare {
        Bare::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Bare::Dec(thousandths) => {
            let sign = if *thousandths < 0 { "-" } else { "" };
            let abs = thousandths.unsigned_abs();
            let mut frac = format!("{:03}", abs % 1000);
            while frac.len() > 1 && frac.ends_with('0') {
                frac.pop();
            }
            let _ = write!(out, "{sign}{}.{frac}", abs / 1000);
        }
        Bare::Str(s) => {
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        Bare::Token(t) => out.push_str(t),
        Bare::Bytes(b) => {
            out.push(':');
            out.push_str(&STANDARD.encode(b));
            out.push(':');
        }
        Bare::Bool(b) => out.push_str(if *b { "?1" } else { "?0" }),
    }
}

/// §4.1.1.2: `true` parameters are written as the bare key.
fn ser_params(params: &[(String, Bare)], out: &mut String) {
    for (k, v) in params {
        out.push(';');
        out.push_str(k);
        if *v != Bare::Bool(true) {
            out.push('=');
            ser_bare(v, out);
        }
    }
}

fn ser_item(item: &Item, out: &mut String) {
    ser_bare(&item.bare, out);
    ser_params(&item.params, out);
}

/// §4.1.1.1.
fn ser_inner(items: &[Item], params: &[(String, Bare)], out: &mut String) {
    out.push('(');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        ser_item(item, out);
    }
    out.push(')');
    ser_params(params, out);
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use super::*;

    const NOW: i64 = 1_750_000_000;
    const URL: &str = "https://Example.COM:443/a/b?x=1&y=2";

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn params(label: &'static str) -> SignParams<'static> {
        SignParams {
            label,
            created: NOW,
            expires: Some(NOW + 300),
            keyid: None,
            nonce: Some("n-1"),
            tag: Some(WEB_BOT_AUTH_TAG),
            include_alg: true,
        }
    }

    /// A request to `URL` with `extra` headers, signed over `components`.
    fn signed(
        key: &SigningKey,
        components: &[&str],
        p: &SignParams<'_>,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut headers = h(extra);
        let out = sign(
            key,
            &Message::Request {
                method: "POST",
                url: URL,
                headers: &headers,
            },
            components,
            p,
        )
        .unwrap();
        headers.push(("Signature-Input".into(), out.signature_input));
        headers.push(("Signature".into(), out.signature));
        headers
    }

    fn check_with(
        key: &SigningKey,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        check: &Check<'_>,
    ) -> Result<Verified, HttpSigError> {
        let kid = key.kid().to_owned();
        let jwk = key.verifying_key().jwk().clone();
        verify(
            &Message::Request {
                method,
                url,
                headers,
            },
            check,
            |k| (k == kid).then(|| VerifyingKey::from_jwk(&jwk).unwrap()),
        )
    }

    fn run(key: &SigningKey, headers: &[(String, String)]) -> Result<Verified, HttpSigError> {
        check_with(key, "POST", URL, headers, &Check::web_bot_auth(NOW))
    }

    fn ed() -> SigningKey {
        SigningKey::generate(Algorithm::EdDSA).unwrap()
    }

    fn replace(headers: &mut [(String, String)], name: &str, value: &str) {
        for (k, v) in headers.iter_mut() {
            if k.eq_ignore_ascii_case(name) {
                *v = value.to_owned();
            }
        }
    }

    fn input_of(headers: &[(String, String)]) -> String {
        headers
            .iter()
            .find(|(k, _)| k == "Signature-Input")
            .unwrap()
            .1
            .clone()
    }

    // --- structured fields -------------------------------------------------------

    fn dict(s: &str) -> Result<Vec<Entry>, HttpSigError> {
        parse_dictionary(s, "Test")
    }

    fn canonical(s: &str) -> String {
        let mut out = String::new();
        for (i, e) in dict(s).unwrap().iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&e.key);
            match &e.member {
                Member::Item(Item {
                    bare: Bare::Bool(true),
                    params,
                }) => ser_params(params, &mut out),
                Member::Item(item) => {
                    out.push('=');
                    ser_item(item, &mut out);
                }
                Member::Inner(items, params) => {
                    out.push('=');
                    ser_inner(items, params, &mut out);
                }
            }
        }
        out
    }

    #[test]
    fn dictionary_round_trips_canonical_text() {
        for s in [
            r#"sig1=("@method" "content-type");created=1;keyid="k";alg="ed25519""#,
            r#"a=1, b=-2;x, c=?0, d=:AQID:, e=tok/en:x, f=1.5, g=-0.25, h"#,
            r#"a=(), b=("x";p=1 "y");q"#,
            r#"s="quote \" and \\ back""#,
            r#"*k=*tok"#,
        ] {
            assert_eq!(canonical(s), s);
        }
    }

    #[test]
    fn dictionary_values_parse() {
        let e = dict(r#"a=:AQID:, b=:AQI:, c=12.500, d="x\\y""#).unwrap();
        assert_eq!(
            e[0].member,
            Member::Item(Item {
                bare: Bare::Bytes(vec![1, 2, 3]),
                params: vec![]
            })
        );
        // Unpadded byte sequences are accepted (RFC 8941 §4.2.7).
        assert_eq!(
            e[1].member,
            Member::Item(Item {
                bare: Bare::Bytes(vec![1, 2]),
                params: vec![]
            })
        );
        assert_eq!(
            e[2].member,
            Member::Item(Item {
                bare: Bare::Dec(12_500),
                params: vec![]
            })
        );
        assert_eq!(
            e[3].member,
            Member::Item(Item {
                bare: Bare::Str("x\\y".into()),
                params: vec![]
            })
        );
        // Whitespace around members and tabs after commas (OWS) are fine.
        assert_eq!(dict("a=1 ,\tb=2").unwrap().len(), 2);
        assert_eq!(dict("").unwrap(), vec![]);
    }

    #[test]
    fn dictionary_rejections() {
        let malformed = |s: &str| match dict(s) {
            Err(HttpSigError::Malformed { reason, .. }) => reason,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(malformed("a=1, a=2"), "duplicate dictionary key");
        assert_eq!(malformed("a=1;p;p"), "duplicate parameter");
        assert_eq!(malformed("a=1,"), "trailing comma");
        assert_eq!(malformed("a=1 b=2"), "expected `,` between members");
        assert_eq!(malformed("A=1"), "expected a key");
        assert_eq!(malformed(r#"a="x\n""#), "invalid escape in string");
        assert_eq!(malformed("a=\"unterminated"), "unterminated string");
        assert_eq!(
            malformed("a=\"caf\u{e9}\""),
            "non-printable character in string"
        );
        assert_eq!(malformed("a=:AQID"), "unterminated byte sequence");
        assert_eq!(malformed("a=:AR==:"), "invalid base64 in byte sequence");
        assert_eq!(
            malformed("a=1234567890123456"),
            "integer longer than 15 digits"
        );
        assert_eq!(
            malformed("a=1234567890123.5"),
            "decimal with more than 12 integer digits"
        );
        assert_eq!(
            malformed("a=1.2345"),
            "decimal with more than 3 fractional digits"
        );
        assert_eq!(malformed("a=1."), "decimal ends with `.`");
        assert_eq!(malformed("a=-x"), "expected a digit");
        assert_eq!(malformed("a=?2"), "invalid boolean");
        assert_eq!(malformed("a=(1"), "expected a space or `)` in inner list");
        assert_eq!(
            malformed("a=(1,2)"),
            "expected a space or `)` in inner list"
        );
        assert_eq!(malformed("a=@"), "expected an item");
        let many = (0..=MAX_MEMBERS)
            .map(|i| format!("k{i}=1"))
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(
            dict(&many),
            Err(HttpSigError::TooMany {
                what: "dictionary members",
                limit: MAX_MEMBERS
            })
        );
        let params = (0..=MAX_PARAMS)
            .map(|i| format!(";p{i}"))
            .collect::<String>();
        assert!(matches!(
            dict(&format!("a=1{params}")),
            Err(HttpSigError::TooMany { .. })
        ));
        let items = vec!["1"; MAX_COMPONENTS + 1].join(" ");
        assert!(matches!(
            dict(&format!("a=({items})")),
            Err(HttpSigError::TooMany { .. })
        ));
    }

    // --- the target URI ----------------------------------------------------------

    #[test]
    fn target_uri_derivations() {
        let t = parse_target(URL).unwrap();
        assert_eq!(t.scheme, "https");
        assert_eq!(t.authority, "example.com");
        assert_eq!(t.path, "/a/b");
        assert_eq!(t.query, Some("x=1&y=2"));
        let t = parse_target("HTTP://[::1]:8080").unwrap();
        assert_eq!(
            (t.scheme.as_str(), t.authority.as_str(), t.path, t.query),
            ("http", "[::1]:8080", "/", None)
        );
        let t = parse_target("http://h:80?").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path, t.query),
            ("h", "/", Some(""))
        );
        let t = parse_target("https://h:0443/").unwrap();
        assert_eq!(t.authority, "h");
        let t = parse_target("https://h:/").unwrap();
        assert_eq!(t.authority, "h");
        let t = parse_target("http://h:443/").unwrap();
        assert_eq!(t.authority, "h:443");
        for bad in [
            "/relative",
            "ftp://h/",
            "https://user@h/",
            "https:///p",
            "https://h/p#frag",
            "https://h:99999/",
            "https://h:x/",
            "https://[::1/",
            "https://[::1]x/",
            "https://h/a b",
        ] {
            assert!(
                matches!(parse_target(bad), Err(HttpSigError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn derived_component_values() {
        let headers = h(&[
            ("X-A", " one "),
            ("x-a", "two\t"),
            ("Signature-Input", r#"s=("@query");created=1"#),
        ]);
        let r = Resolved::new(
            &Message::Request {
                method: "GET",
                url: "https://h:8443/p?q",
                headers: &headers,
            },
            DEFAULT_MAX_HEADER_BYTES,
        )
        .unwrap();
        assert_eq!(r.component("@method").unwrap(), "GET");
        assert_eq!(r.component("@target-uri").unwrap(), "https://h:8443/p?q");
        assert_eq!(r.component("@authority").unwrap(), "h:8443");
        assert_eq!(r.component("@scheme").unwrap(), "https");
        assert_eq!(r.component("@path").unwrap(), "/p");
        assert_eq!(r.component("@query").unwrap(), "?q");
        assert_eq!(r.component("@request-target").unwrap(), "/p?q");
        assert_eq!(r.component("x-a").unwrap(), "one, two");
        assert_eq!(
            r.component("x-b"),
            Err(HttpSigError::MissingComponent("x-b".into()))
        );
        assert_eq!(
            r.component("@status"),
            Err(HttpSigError::UnknownComponent("@status".into()))
        );
        assert_eq!(
            r.component("@query-param"),
            Err(HttpSigError::UnknownComponent("@query-param".into()))
        );
        let r = Resolved::new(
            &Message::Request {
                method: "GET",
                url: "https://h",
                headers: &[],
            },
            DEFAULT_MAX_HEADER_BYTES,
        )
        .unwrap();
        assert_eq!(r.component("@query").unwrap(), "?");
        assert_eq!(r.component("@request-target").unwrap(), "/");
        let r = Resolved::new(
            &Message::Response {
                status: 404,
                headers: &[],
            },
            100,
        )
        .unwrap();
        assert_eq!(r.component("@status").unwrap(), "404");
        assert_eq!(
            r.component("@method"),
            Err(HttpSigError::UnknownComponent("@method".into()))
        );
    }

    // --- sign and verify ---------------------------------------------------------

    const ALL: &[&str] = &[
        "@method",
        "@target-uri",
        "@authority",
        "@scheme",
        "@request-target",
        "@path",
        "@query",
        "content-type",
        "signature-agent",
    ];

    #[test]
    fn round_trip_and_tampering_for_both_algorithms() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256] {
            let key = SigningKey::generate(alg).unwrap();
            let extra = [
                ("Content-Type", "application/json"),
                ("Signature-Agent", "\"https://a.test\""),
            ];
            let headers = signed(&key, ALL, &params("sig1"), &extra);
            let v = run(&key, &headers).unwrap();
            assert_eq!(v.alg, alg);
            assert_eq!(v.keyid, key.kid());
            assert_eq!(v.covered, ALL);
            assert_eq!(v.nonce.as_deref(), Some("n-1"));
            assert_eq!(v.tag.as_deref(), Some("web-bot-auth"));
            assert_eq!(v.expires, Some(NOW + 300));
            assert_eq!(v.signature_agent.as_deref(), Some("\"https://a.test\""));
            // The same URI spelled differently still verifies every derived component
            // except @target-uri, which is the URI as sent.
            let check = Check::web_bot_auth(NOW);
            let tampered: [(&str, &str, &str); 7] = [
                ("@method", "PUT", URL),
                ("@target-uri", "POST", "https://example.com/a/b?x=1&y=2"),
                ("@authority", "POST", "https://example.org:443/a/b?x=1&y=2"),
                ("@scheme", "POST", "http://Example.COM:443/a/b?x=1&y=2"),
                ("@path", "POST", "https://Example.COM:443/a/c?x=1&y=2"),
                ("@query", "POST", "https://Example.COM:443/a/b?x=1&y=3"),
                ("@request-target", "POST", "https://Example.COM:443/a/b"),
            ];
            for (what, method, url) in tampered {
                assert_eq!(
                    check_with(&key, method, url, &headers, &check),
                    Err(HttpSigError::BadSignature),
                    "{alg:?} {what}"
                );
            }
            for name in ["Content-Type", "Signature-Agent"] {
                let mut t = headers.clone();
                replace(&mut t, name, "changed");
                assert_eq!(run(&key, &t), Err(HttpSigError::BadSignature), "{name}");
            }
            let mut t = headers.clone();
            let b64 = t
                .last()
                .unwrap()
                .1
                .trim_start_matches("sig1=:")
                .trim_end_matches(':')
                .to_owned();
            let mut raw = STANDARD.decode(b64).unwrap();
            raw[0] ^= 1;
            t.last_mut().unwrap().1 = format!("sig1=:{}:", STANDARD.encode(raw));
            assert_eq!(run(&key, &t), Err(HttpSigError::BadSignature));
            // Tampering a parameter changes @signature-params.
            let mut t = headers.clone();
            replace(
                &mut t,
                "Signature-Input",
                &input_of(&headers).replace("n-1", "n-2"),
            );
            assert_eq!(run(&key, &t), Err(HttpSigError::BadSignature));
        }
    }

    #[test]
    fn header_values_are_trimmed_and_repeats_combined() {
        let key = ed();
        let headers = signed(
            &key,
            &["@authority", "x-list"],
            &params("sig1"),
            &[("X-List", "a"), ("x-list", " b ")],
        );
        run(&key, &headers).unwrap();
        // The same combined value sent as one line verifies too.
        let mut one: Vec<_> = headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("x-list"))
            .cloned()
            .collect();
        one.push(("X-LIST".into(), "a, b".into()));
        run(&key, &one).unwrap();
    }

    #[test]
    fn chooses_the_signature_with_the_required_tag() {
        let key = ed();
        let other = SignParams {
            tag: Some("other"),
            ..params("a")
        };
        let mut headers = signed(&key, &["@authority"], &other, &[]);
        let wba = signed(&key, &["@authority"], &params("b"), &[]);
        // Two signatures in one field each (comma-joined), the tagged one second.
        for (name, value) in wba.iter().filter(|(k, _)| k.starts_with("Signature")) {
            headers.push((name.clone(), value.clone()));
        }
        assert_eq!(run(&key, &headers).unwrap().label, "b");
        // Without a required tag, the first member is used.
        let check = Check {
            required_tag: None,
            ..Check::web_bot_auth(NOW)
        };
        assert_eq!(
            check_with(&key, "POST", URL, &headers, &check)
                .unwrap()
                .label,
            "a"
        );
        let only_other = signed(&key, &["@authority"], &other, &[]);
        assert_eq!(
            run(&key, &only_other),
            Err(HttpSigError::NoSignatureWithTag("web-bot-auth".into()))
        );
    }

    #[test]
    fn the_replay_window_is_the_last_second_verify_accepts() {
        let key = ed();
        // (created, expires, max_age, leeway) → replay_until.
        let cases = [
            // `created + max_age` ends first.
            (NOW, Some(NOW + 3600), 300, 60, NOW + 360),
            // `expires` ends first.
            (NOW, Some(NOW + 10), 300, 60, NOW + 70),
            // Both at once.
            (NOW, Some(NOW + 300), 300, 60, NOW + 360),
            // No `expires` (a policy that does not require it).
            (NOW, None, 300, 60, NOW + 360),
            // Another verifier's policy: a shorter age, no skew.
            (NOW - 5, Some(NOW + 100), 30, 0, NOW + 25),
            // Extreme values saturate rather than wrap.
            (NOW, None, i64::MAX, 60, i64::MAX),
        ];
        for (created, expires, max_age, leeway, want) in cases {
            let p = SignParams {
                created,
                expires,
                ..params("sig1")
            };
            let headers = signed(&key, &["@authority"], &p, &[]);
            let at = |now: i64| {
                let mut check = Check::web_bot_auth(now);
                check.max_age = max_age;
                check.leeway = leeway;
                check.require_expires = false;
                check_with(&key, "POST", URL, &headers, &check)
            };
            let v = at(created).unwrap();
            assert_eq!(
                v.replay_until, want,
                "{created} {expires:?} {max_age} {leeway}"
            );
            // The window is exactly what verify accepts: the entry may be forgotten
            // the second after.
            assert_eq!(at(want).unwrap().replay_until, want);
            if want < i64::MAX {
                assert!(
                    at(want + 1).is_err(),
                    "{created} {expires:?}: accepted after"
                );
            }
        }
    }

    #[test]
    fn time_rules() {
        let key = ed();
        let at = |created: i64, expires: Option<i64>, now: i64| {
            let p = SignParams {
                created,
                expires,
                ..params("sig1")
            };
            let headers = signed(&key, &["@authority"], &p, &[]);
            check_with(&key, "POST", URL, &headers, &Check::web_bot_auth(now))
        };
        at(NOW, Some(NOW + 10), NOW + 70).unwrap(); // within leeway after expiry
        assert_eq!(
            at(NOW, Some(NOW + 10), NOW + 71),
            Err(HttpSigError::Expired {
                expires: NOW + 10,
                now: NOW + 71
            })
        );
        at(NOW + 60, Some(NOW + 100), NOW).unwrap();
        assert_eq!(
            at(NOW + 61, Some(NOW + 100), NOW),
            Err(HttpSigError::CreatedInFuture {
                created: NOW + 61,
                now: NOW
            })
        );
        assert_eq!(
            at(NOW, Some(NOW - 1), NOW),
            Err(HttpSigError::ExpiresBeforeCreated {
                created: NOW,
                expires: NOW - 1
            })
        );
        at(NOW, Some(NOW + 3600), NOW + 360).unwrap();
        assert_eq!(
            at(NOW, Some(NOW + 3600), NOW + 361),
            Err(HttpSigError::TooOld {
                created: NOW,
                max_age: 300,
                now: NOW + 361
            })
        );
        assert_eq!(
            at(NOW, None, NOW),
            Err(HttpSigError::MissingParameter("expires"))
        );
        // Extreme values saturate instead of overflowing.
        assert!(at(MAX_INT, Some(MAX_INT), i64::MIN).is_err());
    }

    #[test]
    fn parameter_rules() {
        let key = ed();
        let base = signed(&key, &["@authority"], &params("sig1"), &[]);
        let input = input_of(&base);
        let with_input = |s: &str| {
            let mut t = base.clone();
            replace(&mut t, "Signature-Input", s);
            run(&key, &t)
        };
        assert_eq!(
            with_input(&input.replace(&format!(";created={NOW}"), "")),
            Err(HttpSigError::MissingParameter("created"))
        );
        assert_eq!(
            with_input(&input.replace(&format!("created={NOW}"), "created=\"x\"")),
            Err(HttpSigError::BadParameter {
                name: "created",
                expected: "an integer"
            })
        );
        assert_eq!(
            with_input(&input.replace(";keyid=", ";kid=")),
            Err(HttpSigError::MissingParameter("keyid"))
        );
        assert_eq!(
            with_input(&input.replace("nonce=\"n-1\"", "nonce=1")),
            Err(HttpSigError::BadParameter {
                name: "nonce",
                expected: "a string"
            })
        );
        assert_eq!(
            with_input(&input.replace("\"ed25519\"", "\"rsa-pss-sha512\"")),
            Err(HttpSigError::UnsupportedAlgorithm("rsa-pss-sha512".into()))
        );
        assert_eq!(
            with_input(&input.replace("\"ed25519\"", "\"ecdsa-p256-sha256\"")),
            Err(HttpSigError::AlgorithmMismatch {
                alg: "ecdsa-p256-sha256".into(),
                key: Algorithm::EdDSA
            })
        );
        // An `alg`-less signature takes the key's algorithm.
        let p = SignParams {
            include_alg: false,
            ..params("sig1")
        };
        run(&key, &signed(&key, &["@authority"], &p, &[])).unwrap();
        // Nonce required by policy.
        let p = SignParams {
            nonce: None,
            ..params("sig1")
        };
        let headers = signed(&key, &["@authority"], &p, &[]);
        run(&key, &headers).unwrap();
        let check = Check {
            require_nonce: true,
            ..Check::web_bot_auth(NOW)
        };
        assert_eq!(
            check_with(&key, "POST", URL, &headers, &check),
            Err(HttpSigError::MissingParameter("nonce"))
        );
        // Non-canonical serialization of a valid dictionary is refused.
        assert_eq!(
            with_input(&input.replace("(\"@authority\")", "( \"@authority\" )")),
            Err(HttpSigError::NonCanonical("sig1".into()))
        );
        assert_eq!(
            with_input(&format!("{input};x=?1")),
            Err(HttpSigError::NonCanonical("sig1".into()))
        );
        // A member that is not an inner list.
        assert_eq!(
            with_input("sig1=\"x\";tag=\"web-bot-auth\""),
            Err(HttpSigError::NoSignatureWithTag("web-bot-auth".into()))
        );
        let check = Check {
            required_tag: None,
            ..Check::web_bot_auth(NOW)
        };
        let mut t = base.clone();
        replace(&mut t, "Signature-Input", "sig1=\"x\"");
        assert_eq!(
            check_with(&key, "POST", URL, &t, &check),
            Err(HttpSigError::BadMember {
                field: "Signature-Input",
                label: "sig1".into(),
                expected: "an inner list"
            })
        );
    }

    #[test]
    fn signature_field_rules() {
        let key = ed();
        let base = signed(&key, &["@authority"], &params("sig1"), &[]);
        let with_sig = |s: Option<&str>| {
            let mut t: Vec<_> = base
                .iter()
                .filter(|(k, _)| k != "Signature")
                .cloned()
                .collect();
            if let Some(s) = s {
                t.push(("Signature".into(), s.into()));
            }
            run(&key, &t)
        };
        assert_eq!(
            with_sig(None),
            Err(HttpSigError::MissingHeader("Signature"))
        );
        assert_eq!(
            with_sig(Some("other=:AAAA:")),
            Err(HttpSigError::MissingLabel {
                field: "Signature",
                label: "sig1".into()
            })
        );
        assert_eq!(
            with_sig(Some("sig1=\"AAAA\"")),
            Err(HttpSigError::BadMember {
                field: "Signature",
                label: "sig1".into(),
                expected: "a byte sequence"
            })
        );
        assert_eq!(
            with_sig(Some("sig1=:AAAA:")),
            Err(HttpSigError::BadSignature)
        );
        let no_input: Vec<_> = base
            .iter()
            .filter(|(k, _)| k != "Signature-Input")
            .cloned()
            .collect();
        assert_eq!(
            run(&key, &no_input),
            Err(HttpSigError::MissingHeader("Signature-Input"))
        );
    }

    #[test]
    fn coverage_rules() {
        let key = ed();
        let p = params("sig1");
        let headers = signed(&key, &["@method"], &p, &[]);
        assert_eq!(
            run(&key, &headers),
            Err(HttpSigError::NotCovered("@authority".into()))
        );
        // @target-uri satisfies @authority.
        run(&key, &signed(&key, &["@target-uri"], &p, &[])).unwrap();
        // A present Signature-Agent must be covered.
        let headers = signed(
            &key,
            &["@authority"],
            &p,
            &[("Signature-Agent", "\"https://a\"")],
        );
        assert_eq!(
            run(&key, &headers),
            Err(HttpSigError::NotCovered("signature-agent".into()))
        );
        // A covered header missing from the request is named.
        let mut headers = signed(
            &key,
            &["@authority", "x-covered"],
            &p,
            &[("X-Covered", "1")],
        );
        headers.retain(|(k, _)| k != "X-Covered");
        assert_eq!(
            run(&key, &headers),
            Err(HttpSigError::MissingComponent("x-covered".into()))
        );
    }

    /// RFC 9421 §2.1.2: `key` selects one member of a Dictionary field, serialized
    /// as RFC 8941 writes it (the RFC's own example field and values).
    #[test]
    fn a_key_parameter_covers_one_dictionary_member() {
        let headers = h(&[
            ("Example-Dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c), d"),
            (
                "Signature-Input",
                r#"s=("example-dict";key="a" "example-dict";key="d" "example-dict";key="b" "example-dict";key="c");created=1"#,
            ),
        ]);
        let base = signature_base(
            &Message::Request {
                method: "GET",
                url: URL,
                headers: &headers,
            },
            "s",
        )
        .unwrap();
        assert_eq!(
            base,
            concat!(
                "\"example-dict\";key=\"a\": 1\n",
                "\"example-dict\";key=\"d\": ?1\n",
                "\"example-dict\";key=\"b\": 2;x=1;y=2\n",
                "\"example-dict\";key=\"c\": (a b c)\n",
                "\"@signature-params\": (\"example-dict\";key=\"a\" \"example-dict\";key=\"d\" \"example-dict\";key=\"b\" \"example-dict\";key=\"c\");created=1"
            )
        );
    }

    /// Web Bot Auth's current form: `Signature-Agent` is a Dictionary and the
    /// signature covers the member its label names.
    #[test]
    fn signature_agent_covered_by_its_member_verifies() {
        let key = ed();
        let agent = ("Signature-Agent", r#"sig1="https://agent.test""#);
        let headers = signed(
            &key,
            &["@authority", "signature-agent;key=\"sig1\""],
            &params("sig1"),
            &[agent],
        );
        let v = run(&key, &headers).unwrap();
        assert_eq!(v.covered, ["@authority", "signature-agent"]);
        assert_eq!(
            v.signature_agent.as_deref(),
            Some(r#"sig1="https://agent.test""#)
        );
        let base = signature_base(
            &Message::Request {
                method: "POST",
                url: URL,
                headers: &headers,
            },
            "sig1",
        )
        .unwrap();
        assert!(
            base.contains("\n\"signature-agent\";key=\"sig1\": \"https://agent.test\"\n"),
            "{base}"
        );
        // Another member added after signing is not vouched for: refused.
        let mut two = headers.clone();
        replace(
            &mut two,
            "Signature-Agent",
            r#"sig1="https://agent.test", sig2="https://evil.test""#,
        );
        assert_eq!(
            run(&key, &two),
            Err(HttpSigError::NotCovered(SIGNATURE_AGENT.into()))
        );
        // The member's value is what is signed: changing it breaks the signature.
        let mut changed = headers.clone();
        replace(
            &mut changed,
            "Signature-Agent",
            r#"sig1="https://evil.test""#,
        );
        assert_eq!(run(&key, &changed), Err(HttpSigError::BadSignature));
        // A member the field does not have is missing, not empty.
        let mut gone = headers.clone();
        replace(&mut gone, "Signature-Agent", r#"sig2="https://agent.test""#);
        assert!(matches!(
            run(&key, &gone),
            Err(HttpSigError::MissingComponent(_) | HttpSigError::NotCovered(_))
        ));
    }

    #[test]
    fn key_is_for_header_fields_and_names_a_dictionary_key() {
        let key = ed();
        let base = signed(&key, &["@authority"], &params("sig1"), &[("X-A", "a=1")]);
        let input = input_of(&base);
        let with_components = |c: &str| {
            let mut t = base.clone();
            replace(
                &mut t,
                "Signature-Input",
                &input.replace("(\"@authority\")", c),
            );
            run(&key, &t)
        };
        assert_eq!(
            with_components("(\"@authority\";key=\"a\")"),
            Err(HttpSigError::UnsupportedComponentParameter {
                component: "@authority".into(),
                parameter: "key".into()
            })
        );
        assert_eq!(
            with_components("(\"@authority\" \"x-a\";key=\"A\")"),
            Err(HttpSigError::BadComponent("x-a".into()))
        );
        assert_eq!(
            with_components("(\"@authority\" \"x-a\";key=\"a\";sf)"),
            Err(HttpSigError::UnsupportedComponentParameter {
                component: "x-a".into(),
                parameter: "sf".into()
            })
        );
        // The same field whole and by member are two components, not a repeat.
        assert!(!matches!(
            with_components("(\"@authority\" \"x-a\" \"x-a\";key=\"a\")"),
            Err(HttpSigError::DuplicateComponent(_))
        ));
        assert_eq!(
            with_components("(\"@authority\" \"x-a\";key=\"a\" \"x-a\";key=\"a\")"),
            Err(HttpSigError::DuplicateComponent("x-a".into()))
        );
    }

    #[test]
    fn component_identifier_rules() {
        let key = ed();
        let base = signed(&key, &["@authority"], &params("sig1"), &[("X-A", "1")]);
        let input = input_of(&base);
        let with_components = |c: &str| {
            let mut t = base.clone();
            replace(
                &mut t,
                "Signature-Input",
                &input.replace("(\"@authority\")", c),
            );
            run(&key, &t)
        };
        assert_eq!(
            with_components("(\"@authority\" \"x-a\";sf)"),
            Err(HttpSigError::UnsupportedComponentParameter {
                component: "x-a".into(),
                parameter: "sf".into()
            })
        );
        assert_eq!(
            with_components("(\"@authority\" \"@query-param\";name=\"x\")"),
            Err(HttpSigError::UnsupportedComponentParameter {
                component: "@query-param".into(),
                parameter: "name".into()
            })
        );
        assert_eq!(
            with_components("(\"@authority\" \"x-a\" \"x-a\")"),
            Err(HttpSigError::DuplicateComponent("x-a".into()))
        );
        assert_eq!(
            with_components("(\"@authority\" \"X-A\")"),
            Err(HttpSigError::BadComponent("X-A".into()))
        );
        assert_eq!(
            with_components("(\"@authority\" x-a)"),
            Err(HttpSigError::BadComponent("x-a".into()))
        );
        assert_eq!(
            with_components("(\"@authority\" \"@signature-params\")"),
            Err(HttpSigError::BadComponent("@signature-params".into()))
        );
        assert_eq!(
            with_components("(\"@authority\" \"@status\")"),
            Err(HttpSigError::UnknownComponent("@status".into()))
        );
        assert_eq!(
            with_components("(\"@authority\" \"@nope\")"),
            Err(HttpSigError::UnknownComponent("@nope".into()))
        );
        assert_eq!(
            with_components("(\"@authority\" \"\")"),
            Err(HttpSigError::BadComponent(String::new()))
        );
    }

    #[test]
    fn message_rules() {
        let key = ed();
        let headers = signed(
            &key,
            &["@authority", "x-a"],
            &params("sig1"),
            &[("X-A", "1")],
        );
        let mut t = headers.clone();
        replace(&mut t, "X-A", "1\r\nx-b: 2");
        assert_eq!(run(&key, &t), Err(HttpSigError::BadHeader("x-a".into())));
        let check = Check {
            max_header_bytes: 64,
            ..Check::web_bot_auth(NOW)
        };
        assert_eq!(
            check_with(&key, "POST", URL, &headers, &check),
            Err(HttpSigError::TooLarge { limit: 64 })
        );
        let many: Vec<(String, String)> =
            (0..5000).map(|_| (String::new(), String::new())).collect();
        assert!(matches!(
            run(&key, &many),
            Err(HttpSigError::TooLarge { .. })
        ));
        assert_eq!(
            check_with(&key, "GET /x", URL, &headers, &Check::web_bot_auth(NOW)),
            Err(HttpSigError::BadMethod("GET /x".into()))
        );
        assert!(matches!(
            check_with(
                &key,
                "POST",
                "example.com/a",
                &headers,
                &Check::web_bot_auth(NOW)
            ),
            Err(HttpSigError::BadUrl(_))
        ));
    }

    #[test]
    fn key_rules() {
        let key = ed();
        let headers = signed(&key, &["@authority"], &params("sig1"), &[]);
        let msg = Message::Request {
            method: "POST",
            url: URL,
            headers: &headers,
        };
        assert_eq!(
            verify(&msg, &Check::web_bot_auth(NOW), |_| None),
            Err(HttpSigError::UnknownKey(key.kid().into()))
        );
        let rsa = SigningKey::generate(Algorithm::RS256).unwrap();
        let rsa_public = rsa.verifying_key().jwk().clone();
        assert_eq!(
            verify(&msg, &Check::web_bot_auth(NOW), |_| Some(
                VerifyingKey::from_jwk(&rsa_public).unwrap()
            )),
            Err(HttpSigError::UnsupportedKey(Algorithm::RS256))
        );
        assert_eq!(
            sign(&rsa, &msg, &["@authority"], &params("sig1")),
            Err(HttpSigError::UnsupportedKey(Algorithm::RS256))
        );
        let es = SigningKey::generate(Algorithm::ES256).unwrap();
        let es_public = es.verifying_key().jwk().clone();
        let p = SignParams {
            include_alg: false,
            ..params("sig1")
        };
        let headers = signed(&key, &["@authority"], &p, &[]);
        let msg = Message::Request {
            method: "POST",
            url: URL,
            headers: &headers,
        };
        assert_eq!(
            verify(&msg, &Check::web_bot_auth(NOW), |_| Some(
                VerifyingKey::from_jwk(&es_public).unwrap()
            )),
            Err(HttpSigError::BadSignature)
        );
    }

    #[test]
    fn sign_input_rules() {
        let key = ed();
        let msg = Message::Request {
            method: "GET",
            url: URL,
            headers: &[],
        };
        let bad = |p: SignParams<'_>, c: &[&str]| sign(&key, &msg, c, &p).unwrap_err();
        assert!(matches!(
            bad(params("Sig"), &["@authority"]),
            HttpSigError::BadSignInput(_)
        ));
        assert!(matches!(
            bad(
                SignParams {
                    nonce: Some("\u{e9}"),
                    ..params("s")
                },
                &["@authority"]
            ),
            HttpSigError::BadSignInput(_)
        ));
        assert!(matches!(
            bad(
                SignParams {
                    created: MAX_INT + 1,
                    ..params("s")
                },
                &["@authority"]
            ),
            HttpSigError::BadSignInput(_)
        ));
        assert_eq!(
            bad(params("s"), &["@authority", "@authority"]),
            HttpSigError::DuplicateComponent("@authority".into())
        );
        assert_eq!(
            bad(params("s"), &["x-missing"]),
            HttpSigError::MissingComponent("x-missing".into())
        );
        let many = vec!["@authority"; MAX_COMPONENTS + 1];
        assert!(matches!(
            bad(params("s"), &many),
            HttpSigError::TooMany { .. }
        ));
        // keyid defaults to the thumbprint; the string escapes its quotes.
        let out = sign(
            &key,
            &msg,
            &["@authority"],
            &SignParams {
                nonce: Some("a\"b\\c"),
                ..params("s")
            },
        )
        .unwrap();
        assert!(
            out.signature_input
                .contains(&format!("keyid=\"{}\"", key.kid()))
        );
        assert!(out.signature_input.contains(r#"nonce="a\"b\\c""#));
    }

    #[test]
    fn signature_base_is_exposed() {
        let key = ed();
        let headers = signed(
            &key,
            &["@method", "@authority"],
            &SignParams {
                include_alg: false,
                nonce: None,
                tag: None,
                expires: None,
                keyid: Some("k"),
                ..params("sig1")
            },
            &[],
        );
        let base = signature_base(
            &Message::Request {
                method: "POST",
                url: URL,
                headers: &headers,
            },
            "sig1",
        )
        .unwrap();
        assert_eq!(
            base,
            format!(
                "\"@method\": POST\n\"@authority\": example.com\n\"@signature-params\": (\"@method\" \"@authority\");created={NOW};keyid=\"k\""
            )
        );
    }

    #[test]
    fn directory_lists_public_keys() {
        let key = ed();
        let jwk = key.verifying_key().jwk().clone();
        let dir = directory(std::slice::from_ref(&jwk));
        assert_eq!(dir["keys"][0]["x"], serde_json::json!(jwk.x));
        assert_eq!(dir["keys"][0]["kty"], "OKP");
        assert!(dir["keys"][0].get("d").is_none());
        assert_eq!(directory(&[]), serde_json::json!({ "keys": [] }));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(input in "[ -~\t]{0,200}", url in "[ -~]{0,60}") {
            let _ = parse_dictionary(&input, "Test");
            let _ = parse_target(&url);
            let headers = vec![
                ("Signature-Input".to_owned(), input.clone()),
                ("Signature".to_owned(), input.clone()),
            ];
            let msg = Message::Request { method: "GET", url: &url, headers: &headers };
            let _ = verify(&msg, &Check::web_bot_auth(NOW), |_| None);
            let _ = signature_base(&msg, "sig1");
        }

        #[test]
        fn canonical_inputs_reparse(input in r#"[a-z][a-z0-9]{0,3}=\("@[a-z]{1,6}"( "[a-z-]{1,8}"){0,3}\);created=(0|[1-9][0-9]{0,9})(;keyid="[ -!#-\[\]-~]{0,8}")?"#) {
            let entries = parse_dictionary(&input, "Test").unwrap();
            let Some(Entry { member: Member::Inner(items, params), .. }) = entries.first() else {
                panic!("{input}");
            };
            let mut out = String::new();
            ser_inner(items, params, &mut out);
            proptest::prop_assert_eq!(input.split_once('=').unwrap().1, out.as_str());
        }
    }
}
