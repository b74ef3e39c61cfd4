//! Schemas of the values the server checks by one shared rule, for request and answer
//! fields to name with `#[schema(value_type = …)]`: ids and their formats, scopes,
//! and the text fields the server's `routes::check_text` checks (trimmed, non-empty,
//! bounded, none of `bonafide_core::names::is_forbidden`'s characters).

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// The characters no text field may hold (`bonafide_core::names::is_forbidden`):
/// controls, the Arabic letter mark, zero-width and bidirectional controls, line
/// and paragraph separators, invisible operators, the BOM.
const FORBIDDEN: &str =
    r"\u0000-\u001F\u007F-\u009F\u061C\u200B-\u200F\u2028-\u202E\u2060-\u2064\u2066-\u2069\uFEFF";

fn string(pattern: String, description: String) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}

macro_rules! text {
    ($(#[$doc:meta])* $name:ident, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                let f = FORBIDDEN;
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some($max))
                    // Something besides white space, and nothing forbidden.
                    .pattern(Some(format!(r"^[^{f}]*[^{f}\s][^{f}]*$")))
                    .description(Some(concat!(
                        "Text of 1 to ", $max, " characters (after trimming white space \
                         at either end), none of them a control, invisible, \
                         bidirectional-control or line-separator character (422 otherwise)."
                    )))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

text!(
    /// An agent's name.
    Text128,
    128
);
text!(
    /// An issuer's or receiver's name.
    Text253,
    253
);
text!(
    /// An audience, a `user`.
    Text256,
    256
);
text!(
    /// A reason.
    Text512,
    512
);
text!(
    /// A description.
    Text1024,
    1024
);

macro_rules! id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string(
                    concat!("^", $prefix, "[a-z2-7]{26}$").to_owned(),
                    concat!(
                        "A", $kind, " id: `", $prefix,
                        "` and 26 characters of lowercase base32 (128 random bits)."
                    )
                    .to_owned(),
                )
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

id!(
    /// `agt_…`.
    AgentId,
    "agt_",
    "n agent"
);
id!(
    /// `tok_…`.
    TokenId,
    "tok_",
    " token"
);
id!(
    /// `iss_…`.
    IssuerId,
    "iss_",
    "n issuer"
);
id!(
    /// `rcv_…`.
    ReceiverId,
    "rcv_",
    " receiver"
);
id!(
    /// `rcp_…`.
    ReceiptId,
    "rcp_",
    " receipt"
);

/// A scope: `verb:resource` (2 to 4 `:`-separated parts of lowercase letters,
/// digits, `_`, `.` and `-`, each starting with a letter or digit) or the dotted
/// `resource.verb` (2 to 4 `.`-separated parts without `.`), at most 64 characters
/// (`bonafide_core::scopes::validate`).
#[derive(Debug)]
pub struct Scope;

impl utoipa::PartialSchema for Scope {
    fn schema() -> RefOr<Schema> {
        const PART: &str = "[a-z0-9][a-z0-9_.-]*";
        const DOTTED: &str = "[a-z0-9][a-z0-9_-]*";
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(3))
            .max_length(Some(64))
            .pattern(Some(format!(
                "^({PART}(:{PART}){{1,3}}|{DOTTED}(\\.{DOTTED}){{1,3}})$"
            )))
            .description(Some(
                "A scope, `verb:resource` (see `GET /v1/scopes`): 2 to 4 `:`-separated parts of lowercase letters, digits, `_`, `.` and `-`, each starting with a letter or digit; or the dotted `resource.verb` (`payments.send`): 2 to 4 `.`-separated parts of lowercase letters, digits, `_` and `-`; at most 64 characters.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Scope {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Scope")
    }
}

macro_rules! string {
    ($(#[$doc:meta])* $name:ident, $pattern:expr, $min:expr, $max:expr, $description:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length($min)
                    .max_length($max)
                    .pattern(Some(String::from($pattern)))
                    .description(Some($description))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

string!(
    /// `verify-action`'s `action`.
    SignedAction,
    format!("^[^{FORBIDDEN}]+$"),
    Some(1),
    Some(128),
    "1 to 128 characters, none of them a control, invisible, bidirectional-control or line-separator character."
);
string!(
    /// `verify-action`'s `resource`.
    SignedResource,
    format!("^[^:{FORBIDDEN}]+$"),
    Some(1),
    Some(256),
    "1 to 256 characters, no `:`, none of them a control, invisible, bidirectional-control or line-separator character."
);
string!(
    /// An audience a verifier names.
    NamedAudience,
    format!("^[^{FORBIDDEN}]+$"),
    Some(1),
    Some(256),
    "1 to 256 bytes (UTF-8), none of them a control, invisible, bidirectional-control or line-separator character (422 otherwise)."
);
string!(
    /// `verify-action`'s `nonce`.
    Nonce,
    "^[A-Za-z0-9._+/=-]+$",
    Some(1),
    Some(128),
    "1 to 128 characters of `A-Z a-z 0-9 - _ . + / =` (a base64 nonce in either alphabet)."
);
string!(
    /// `verify`'s `idempotency_key`.
    IdempotencyKey,
    "^[!-~]+$",
    Some(1),
    Some(255),
    "1 to 255 visible ASCII characters (`!` to `~`)."
);
string!(
    /// An ISO 4217 code.
    Currency,
    "^[A-Z]{3}$",
    Some(3),
    Some(3),
    "An ISO 4217 currency code in use (`USD`); a withdrawn or unknown one is refused with 422."
);
string!(
    /// A DNS name to verify.
    Domain,
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$",
    Some(1),
    Some(253),
    "A DNS name: ASCII letters, digits and hyphens in dot-separated labels of 1 to 63 characters (no hyphen first or last), at most 253 in all; no IP address, port or trailing dot (422 `DOMAIN_INVALID` otherwise)."
);
string!(
    /// A C2SP tlog-tiles path after `tile/`.
    TilePath,
    r"^(entries|[0-9]|[1-5][0-9]|6[0-3])/(x[0-9]{3}/)*[0-9]{3}(\.p/([1-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5]))?$",
    Some(5),
    None,
    "A tile path after `tile/` (c2sp.org/tlog-tiles): `<L>/<N>[.p/<W>]` for a hash tile of level `L` (0 to 63), `entries/<N>[.p/<W>]` for an entry bundle; `N` in 3-digit groups, all but the last prefixed with `x` (1234067 is `x001/x234/067`), `W` the width (1 to 255) of a partial tile. Anything else, or a path not in canonical form, is a 400."
);
string!(
    /// An admin key's id.
    AdminKeyId,
    "^sha256:[0-9a-f]{16}$",
    Some(23),
    Some(23),
    "An admin API key's id: `sha256:` and the first 16 hex digits of the key's SHA-256."
);
string!(
    /// Any API key's id (admin, issuer or receiver).
    ApiKeyHashId,
    "^sha256:[0-9a-f]{16}$",
    Some(23),
    Some(23),
    "An API key's id: `sha256:` and the first 16 hex digits of the key's SHA-256 (`bonafide rate-limit` computes it from the key, locally)."
);
string!(
    /// A rate limit.
    RateLimitText,
    "^ *[0-9_]+ */ *[0-9]*[a-z]+ *$",
    Some(3),
    Some(64),
    "A rate limit: N requests per window, `N/min`, `N/h`, `N/s`, `N/d` or `N/<n>s` (`1000/min`, `5000/60s`); N from 1 to 1,000,000,000, the window from 1 s to a day. Anything else is a 422."
);
string!(
    /// An RFC 7638 thumbprint.
    Thumbprint,
    "^[A-Za-z0-9_-]{43}$",
    Some(43),
    Some(43),
    "An RFC 7638 JWK thumbprint (SHA-256, base64url without padding)."
);

/// A list of audiences.
#[derive(Debug)]
pub struct Audiences;

impl utoipa::PartialSchema for Audiences {
    fn schema() -> RefOr<Schema> {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(<Text256 as utoipa::PartialSchema>::schema())
            .min_items(Some(1))
            .max_items(Some(16))
            .description(Some("1 to 16 audiences (repeats count once)."))
            .into()
    }
}

impl utoipa::ToSchema for Audiences {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Audiences")
    }
}

/// `verify`'s `amount`: an exact decimal as a string, or a JSON number read exactly.
#[derive(Debug)]
pub struct Amount;

impl utoipa::PartialSchema for Amount {
    fn schema() -> RefOr<Schema> {
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^[0-9]+(\.[0-9]+)?$")),
            )
            .item(ObjectBuilder::new().schema_type(Type::Number).minimum(Some(0)))
            .description(Some(
                "An amount to spend: an exact decimal as a string (`\"12.50\"`) or a JSON number (`12.50`, read from its digits, never through a binary float), at most the currency's minor units, no exponent. Requires `currency` (and `currency` requires it: 422 otherwise), an `action`, and a receiver key.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Amount {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Amount")
    }
}

fn enumeration(values: &[&str], description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
}

fn public_jwk(ktys: &[&str], rsa: bool, description: &str) -> RefOr<Schema> {
    let member = |d: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(d))
    };
    let mut jwk = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("kty", enumeration(ktys, "Key type."))
        .required("kty")
        .property(
            "crv",
            enumeration(&["Ed25519", "P-256"], "Curve (OKP and EC keys)."),
        )
        .property(
            "x",
            member("Public coordinate, base64url (OKP and EC keys)."),
        )
        .property("y", member("Public coordinate, base64url (EC keys)."));
    if rsa {
        jwk = jwk
            .property("n", member("RSA modulus, base64url."))
            .property("e", member("RSA exponent, base64url."));
    }
    jwk.property(
        "kid",
        member("Key id; if present, must be the key's RFC 7638 thumbprint."),
    )
    .property("alg", member("Algorithm; if present, must fit the key."))
    .property("use", member("Public key use."))
    .description(Some(description))
    .into()
}

/// An agent's public key as a JWK.
#[derive(Debug)]
pub struct AgentPublicJwk;

impl utoipa::PartialSchema for AgentPublicJwk {
    fn schema() -> RefOr<Schema> {
        public_jwk(
            &["OKP", "EC"],
            false,
            "An agent's public key as a JWK (RFC 7517): OKP Ed25519 or EC P-256. A JWK with private members (`d`, …) is refused with 400, any other key type or curve (RSA) with 422.",
        )
    }
}

impl utoipa::ToSchema for AgentPublicJwk {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("AgentPublicJwk")
    }
}

/// An issuer's public key as a JWK.
#[derive(Debug)]
pub struct IssuerPublicJwk;

impl utoipa::PartialSchema for IssuerPublicJwk {
    fn schema() -> RefOr<Schema> {
        public_jwk(
            &["OKP", "EC", "RSA"],
            true,
            "An issuer's public key as a JWK (RFC 7517): OKP Ed25519, EC P-256 or RSA of 2048 to 8192 bits. A JWK with private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`) is refused with 400; an unusable key with 422 `KEY_INVALID`.",
        )
    }
}

impl utoipa::ToSchema for IssuerPublicJwk {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("IssuerPublicJwk")
    }
}

/// The algorithm of an agent key given as PEM.
#[derive(Debug)]
pub struct AgentKeyAlgorithm;

impl utoipa::PartialSchema for AgentKeyAlgorithm {
    fn schema() -> RefOr<Schema> {
        enumeration(
            &["Ed25519", "EdDSA", "ES256", "P-256"],
            "The algorithm of `signing_key_pub`: `Ed25519` (or `EdDSA`) or `ES256` (or `P-256`).",
        )
        .into()
    }
}

impl utoipa::ToSchema for AgentKeyAlgorithm {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("AgentKeyAlgorithm")
    }
}

/// An issuer key's JWS algorithm.
#[derive(Debug)]
pub struct IssuerKeyAlg;

impl utoipa::PartialSchema for IssuerKeyAlg {
    fn schema() -> RefOr<Schema> {
        enumeration(
            &["EdDSA", "ES256", "RS256"],
            "The key's JWS algorithm; it must fit the key (422 `KEY_INVALID` otherwise).",
        )
        .into()
    }
}

impl utoipa::ToSchema for IssuerKeyAlg {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("IssuerKeyAlg")
    }
}
