//! `httpsig.json`: HTTP message signatures (RFC 9421) in the Web Bot Auth profile, as
//! an agent signs a request to prove it holds the key its token is bound to: the full
//! request (method, target URI, headers in order), the keys by `keyid`, the time, and
//! whether a verifier must accept the signature. A refusal is always `PROOF_INVALID`;
//! `why` names the rule, for people.

use bonafide_core::b64;
use bonafide_core::httpsig::{self, Check, Message, SignParams};
use bonafide_core::keys::{SigningKey, VerifyingKey};
use serde_json::{Value, json};

use crate::{VectorError, VectorFile, ed25519, pretty};

const NOW: i64 = 1_800_000_000;
const URL: &str = "https://api.example/v1/payments?currency=EUR";
const LEEWAY: i64 = 60;
const MAX_AGE: i64 = 300;
/// The `Signature-Agent` of the requests: a Dictionary whose `sig1` member names the
/// agent's key directory (Web Bot Auth).
const AGENT_DIR: &str = r#"sig1="https://registry.example/agents/agt_aaaaaaaaaaaaaaaaaaaaaaaaaa""#;

type Headers = Vec<(String, String)>;

struct Case {
    name: &'static str,
    why: Option<&'static str>,
    method: &'static str,
    url: &'static str,
    headers: Headers,
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// The request's headers before signing.
fn base_headers() -> Headers {
    headers(&[
        ("Host", "api.example"),
        ("Content-Type", "application/json"),
        (
            "Content-Digest",
            &httpsig::content_digest(br#"{"amount":"10.00"}"#),
        ),
        ("Signature-Agent", AGENT_DIR),
    ])
}

fn params(created: i64, expires: Option<i64>, nonce: Option<&'static str>) -> SignParams<'static> {
    SignParams {
        label: "sig1",
        created,
        expires,
        keyid: None,
        nonce,
        tag: Some(httpsig::WEB_BOT_AUTH_TAG),
        include_alg: false,
    }
}

const FULL: &[&str] = &[
    "@method",
    "@authority",
    "@path",
    "@query",
    "content-type",
    "content-digest",
    "signature-agent;key=\"sig1\"",
];

/// `hs` signed by `key` over `components` with `p`, as `method url`.
fn sign(
    case: &str,
    key: &SigningKey,
    method: &str,
    url: &str,
    mut hs: Headers,
    components: &[&str],
    p: &SignParams<'_>,
) -> Result<Headers, VectorError> {
    let out = httpsig::sign(
        key,
        &Message::Request {
            method,
            url,
            headers: &hs,
        },
        components,
        p,
    )
    .map_err(|e| VectorError::Build {
        case: case.to_owned(),
        message: e.to_string(),
    })?;
    hs.push(("Signature-Input".into(), out.signature_input));
    hs.push(("Signature".into(), out.signature));
    Ok(hs)
}

/// `hs` with a `Signature-Input` written by hand (`input`, one member `sig1`), signed
/// over the signature base the verifier will build from it: for parameters
/// [`httpsig::sign`] never writes.
fn sign_input(
    case: &str,
    key: &SigningKey,
    mut hs: Headers,
    input: &str,
) -> Result<Headers, VectorError> {
    let build = |e: &dyn std::fmt::Display| VectorError::Build {
        case: case.to_owned(),
        message: e.to_string(),
    };
    hs.push(("Signature-Input".into(), input.to_owned()));
    let base = httpsig::signature_base(
        &Message::Request {
            method: "POST",
            url: URL,
            headers: &hs,
        },
        "sig1",
    )
    .map_err(|e| build(&e))?;
    let sig = key.sign(base.as_bytes()).map_err(|e| build(&e))?;
    hs.push(("Signature".into(), format!("sig1=:{}:", std_b64(&sig))));
    Ok(hs)
}

/// Standard base64 with padding (RFC 8941 byte sequences), from the base64url the
/// core exposes.
fn std_b64(bytes: &[u8]) -> String {
    let mut s: String = b64::encode(bytes)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

fn set(hs: &mut Headers, name: &str, value: &str) {
    for (n, v) in hs.iter_mut() {
        if n.eq_ignore_ascii_case(name) {
            *v = value.to_owned();
        }
    }
}

fn remove(hs: &mut Headers, name: &str) {
    hs.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
}

fn cases(agent: &SigningKey, other: &SigningKey) -> Result<Vec<Case>, VectorError> {
    let ok_params = params(NOW - 10, Some(NOW + 290), Some("n-valid"));
    let post = |name: &'static str, why, hs| Case {
        name,
        why,
        method: "POST",
        url: URL,
        headers: hs,
    };
    let full =
        |name: &str, p: &SignParams<'_>| sign(name, agent, "POST", URL, base_headers(), FULL, p);
    let kid = agent.kid().to_owned();
    let valid = full("valid", &ok_params)?;

    let tampered_method = full(
        "tampered_method",
        &params(NOW - 10, Some(NOW + 290), Some("n-tm")),
    )?;
    let mut tampered_digest = full(
        "tampered_digest",
        &params(NOW - 10, Some(NOW + 290), Some("n-td")),
    )?;
    set(
        &mut tampered_digest,
        "Content-Digest",
        &httpsig::content_digest(br#"{"amount":"9999.00"}"#),
    );
    let mut extra_member = full(
        "extra_agent_member",
        &params(NOW - 10, Some(NOW + 290), Some("n-em")),
    )?;
    set(
        &mut extra_member,
        "Signature-Agent",
        &format!(r#"{AGENT_DIR}, sig2="https://evil.example/keys""#),
    );
    let agent_uncovered = sign(
        "signature_agent_not_covered",
        agent,
        "POST",
        URL,
        base_headers(),
        &["@method", "@authority", "@path"],
        &params(NOW - 10, Some(NOW + 290), Some("n-ac")),
    )?;
    let mut header_removed = full(
        "covered_header_missing",
        &params(NOW - 10, Some(NOW + 290), Some("n-hr")),
    )?;
    remove(&mut header_removed, "Content-Type");
    let mut no_signature = full(
        "signature_header_missing",
        &params(NOW - 10, Some(NOW + 290), Some("n-ns")),
    )?;
    remove(&mut no_signature, "Signature");
    let mut bad_sig = full(
        "bad_signature",
        &params(NOW - 10, Some(NOW + 290), Some("n-bs")),
    )?;
    for (n, v) in bad_sig.iter_mut() {
        if n == "Signature" {
            // Another valid byte sequence of the same length: the signature is wrong.
            *v = format!("sig1=:{}:", std_b64(&[7u8; 64]));
        }
    }
    let mut non_canonical = full(
        "non_canonical_input",
        &params(NOW - 10, Some(NOW + 290), Some("n-nc")),
    )?;
    for (n, v) in non_canonical.iter_mut() {
        if n == "Signature-Input" {
            *v = v.replacen("(\"@method\" ", "(\"@method\"  ", 1);
        }
    }
    let with_label = |label: &'static str| SignParams {
        label,
        ..params(NOW - 10, Some(NOW + 290), Some("n-label"))
    };
    let mut wrong_label = full("signature_label_missing", &with_label("sig1"))?;
    for (n, v) in wrong_label.iter_mut() {
        if n == "Signature" {
            *v = v.replacen("sig1=", "sig2=", 1);
        }
    }
    let input = |components: &str, rest: &str| {
        format!(
            r#"sig1=({components});created={};expires={};keyid="{kid}";{rest}"#,
            NOW - 10,
            NOW + 290
        )
    };
    let std = r#""@method" "@authority" "@path""#;
    Ok(vec![
        post("valid", None, valid.clone()),
        post(
            "valid_minimal",
            None,
            sign(
                "valid_minimal",
                agent,
                "POST",
                URL,
                headers(&[("Host", "api.example")]),
                &["@authority"],
                &params(NOW - 10, Some(NOW + 290), Some("n-minimal")),
            )?,
        ),
        post(
            "valid_target_uri",
            None,
            sign(
                "valid_target_uri",
                agent,
                "POST",
                URL,
                headers(&[("Host", "api.example")]),
                &["@target-uri", "@method"],
                &params(NOW - 10, Some(NOW + 290), Some("n-target")),
            )?,
        ),
        post(
            "valid_signature_agent_whole",
            None,
            sign(
                "valid_signature_agent_whole",
                agent,
                "POST",
                URL,
                base_headers(),
                &["@authority", "signature-agent"],
                &params(NOW - 10, Some(NOW + 290), Some("n-whole")),
            )?,
        ),
        post(
            "valid_with_alg",
            None,
            full(
                "valid_with_alg",
                &SignParams {
                    include_alg: true,
                    ..params(NOW - 10, Some(NOW + 290), Some("n-alg"))
                },
            )?,
        ),
        post(
            "valid_created_oldest",
            None,
            full(
                "valid_created_oldest",
                &params(NOW - MAX_AGE - LEEWAY, Some(NOW + 10), Some("n-oldest")),
            )?,
        ),
        post(
            "valid_expires_within_leeway",
            None,
            full(
                "valid_expires_within_leeway",
                &params(NOW - 100, Some(NOW - LEEWAY), Some("n-leeway")),
            )?,
        ),
        post(
            "valid_header_name_case",
            None,
            valid
                .iter()
                .map(|(n, v)| (n.to_ascii_uppercase(), v.clone()))
                .collect(),
        ),
        Case {
            name: "tampered_method",
            why: Some("the method is not the one signed (`@method`)"),
            method: "PUT",
            url: URL,
            headers: tampered_method,
        },
        Case {
            name: "tampered_authority",
            why: Some("the request is for another host than the one signed (`@authority`)"),
            method: "POST",
            url: "https://evil.example/v1/payments?currency=EUR",
            headers: valid.clone(),
        },
        Case {
            name: "tampered_path",
            why: Some("the path is not the one signed (`@path`)"),
            method: "POST",
            url: "https://api.example/v1/refunds?currency=EUR",
            headers: valid.clone(),
        },
        Case {
            name: "tampered_query",
            why: Some("the query is not the one signed (`@query`)"),
            method: "POST",
            url: "https://api.example/v1/payments?currency=USD",
            headers: valid.clone(),
        },
        post(
            "tampered_header",
            Some("a covered header (`content-digest`) changed after signing"),
            tampered_digest,
        ),
        post(
            "signature_agent_extra_member",
            Some("`Signature-Agent` has a member the signature does not cover"),
            extra_member,
        ),
        post(
            "signature_agent_not_covered",
            Some("a present `Signature-Agent` must be covered"),
            agent_uncovered,
        ),
        post(
            "authority_not_covered",
            Some("the signature covers neither `@authority` nor `@target-uri`"),
            sign(
                "authority_not_covered",
                agent,
                "POST",
                URL,
                headers(&[("Host", "api.example")]),
                &["@method", "@path"],
                &params(NOW - 10, Some(NOW + 290), Some("n-auth")),
            )?,
        ),
        post(
            "covered_header_missing",
            Some("a covered header (`content-type`) is absent from the request"),
            header_removed,
        ),
        post(
            "created_in_future",
            Some("`created` after now plus the leeway"),
            full(
                "created_in_future",
                &params(NOW + LEEWAY + 1, Some(NOW + 300), Some("n-future")),
            )?,
        ),
        post(
            "too_old",
            Some("`created` more than `max_age_secs` plus the leeway before now"),
            full(
                "too_old",
                &params(NOW - MAX_AGE - LEEWAY - 1, Some(NOW + 10), Some("n-old")),
            )?,
        ),
        post(
            "expired",
            Some("`expires` more than the leeway before now"),
            full(
                "expired",
                &params(NOW - 100, Some(NOW - LEEWAY - 1), Some("n-expired")),
            )?,
        ),
        post(
            "expires_before_created",
            Some("`expires` before `created`"),
            full(
                "expires_before_created",
                &params(NOW - 10, Some(NOW - 20), Some("n-order")),
            )?,
        ),
        post(
            "expires_missing",
            Some("no `expires` (Web Bot Auth requires it)"),
            full("expires_missing", &params(NOW - 10, None, Some("n-noexp")))?,
        ),
        post(
            "nonce_missing",
            Some("no `nonce` (required: it is the replay key)"),
            full("nonce_missing", &params(NOW - 10, Some(NOW + 290), None))?,
        ),
        post(
            "tag_missing",
            Some("no signature with `tag=\"web-bot-auth\"`"),
            full(
                "tag_missing",
                &SignParams {
                    tag: None,
                    ..params(NOW - 10, Some(NOW + 290), Some("n-notag"))
                },
            )?,
        ),
        post(
            "unknown_keyid",
            Some("`keyid` names no key the verifier holds"),
            sign(
                "unknown_keyid",
                other,
                "POST",
                URL,
                base_headers(),
                FULL,
                &params(NOW - 10, Some(NOW + 290), Some("n-unknown")),
            )?,
        ),
        post(
            "signed_by_another_key",
            Some("signed by another key under the agent's `keyid`"),
            sign(
                "signed_by_another_key",
                other,
                "POST",
                URL,
                base_headers(),
                FULL,
                &SignParams {
                    keyid: Some(agent.kid()),
                    ..params(NOW - 10, Some(NOW + 290), Some("n-other"))
                },
            )?,
        ),
        post(
            "bad_signature",
            Some("the signature does not verify"),
            bad_sig,
        ),
        post(
            "alg_mismatch",
            Some("`alg=\"ecdsa-p256-sha256\"` for an Ed25519 key"),
            sign_input(
                "alg_mismatch",
                agent,
                headers(&[("Host", "api.example")]),
                &input(
                    std,
                    r#"alg="ecdsa-p256-sha256";nonce="n-am";tag="web-bot-auth""#,
                ),
            )?,
        ),
        post(
            "alg_unsupported",
            Some("`alg=\"hmac-sha256\"` is not supported"),
            sign_input(
                "alg_unsupported",
                agent,
                headers(&[("Host", "api.example")]),
                &input(std, r#"alg="hmac-sha256";nonce="n-au";tag="web-bot-auth""#),
            )?,
        ),
        post(
            "component_twice",
            Some("a component (`@method`) is covered twice"),
            {
                let mut hs = full(
                    "component_twice",
                    &params(NOW - 10, Some(NOW + 290), Some("n-twice")),
                )?;
                for (n, v) in hs.iter_mut() {
                    if n == "Signature-Input" {
                        *v = v.replacen("(\"@method\" ", "(\"@method\" \"@method\" ", 1);
                    }
                }
                hs
            },
        ),
        post(
            "component_parameter_unsupported",
            Some("a component parameter other than `key` (`;sf`)"),
            {
                let mut hs = full(
                    "component_parameter_unsupported",
                    &params(NOW - 10, Some(NOW + 290), Some("n-sf")),
                )?;
                for (n, v) in hs.iter_mut() {
                    if n == "Signature-Input" {
                        *v = v.replacen("\"content-type\"", "\"content-type\";sf", 1);
                    }
                }
                hs
            },
        ),
        post(
            "non_canonical_input",
            Some("`Signature-Input` not in canonical RFC 8941 form (two spaces)"),
            non_canonical,
        ),
        post(
            "signature_header_missing",
            Some("no `Signature` header"),
            no_signature,
        ),
        post(
            "signature_label_missing",
            Some("`Signature` has no member of the `Signature-Input` label"),
            wrong_label,
        ),
    ])
}

/// The settings the vectors run with: the Web Bot Auth profile, nonce required (as
/// Bonafide's receivers require it).
pub fn check(now: i64) -> Check<'static> {
    let mut check = Check::web_bot_auth(now);
    check.leeway = LEEWAY;
    check.max_age = MAX_AGE;
    check.require_nonce = true;
    check
}

pub(crate) fn file() -> Result<VectorFile, VectorError> {
    let agent = ed25519(5)?;
    let other = ed25519(6)?;
    let public =
        VerifyingKey::from_jwk(agent.verifying_key().jwk()).map_err(|e| VectorError::Build {
            case: "keys".into(),
            message: e.to_string(),
        })?;
    let kid = agent.kid().to_owned();
    let (token, jwks) = crate::bound_token(&kid, 0xd2, NOW, "httpsig access_token")?;
    let mut out = Vec::new();
    for case in cases(&agent, &other)? {
        let msg = Message::Request {
            method: case.method,
            url: case.url,
            headers: &case.headers,
        };
        let found = httpsig::verify(&msg, &check(NOW), |k| {
            (k == kid)
                .then(|| VerifyingKey::from_jwk(public.jwk()).ok())
                .flatten()
        });
        if found.is_ok() != case.why.is_none() {
            return Err(VectorError::Disagrees {
                case: case.name.into(),
                expected: format!("{:?}", case.why),
                found: format!("{found:?}"),
            });
        }
        let expect = match (&found, case.why) {
            (Ok(v), None) => {
                let base =
                    httpsig::signature_base(&msg, &v.label).map_err(|e| VectorError::Build {
                        case: case.name.into(),
                        message: e.to_string(),
                    })?;
                json!({
                    "valid": true,
                    "label": v.label,
                    "keyid": v.keyid,
                    "created": v.created,
                    "expires": v.expires,
                    "nonce": v.nonce,
                    "covered": v.covered,
                    "replay_until": v.replay_until,
                    "signature_base": base,
                })
            }
            (_, why) => json!({"valid": false, "code": "PROOF_INVALID", "why": why}),
        };
        let hs: Vec<Value> = case.headers.iter().map(|(n, v)| json!([n, v])).collect();
        out.push(json!({
            "name": case.name,
            "request": {"method": case.method, "url": case.url, "headers": hs},
            "expect": expect,
        }));
    }
    let mut keys = serde_json::Map::new();
    keys.insert(kid.clone(), crate::public_jwk(&agent)?);
    pretty(
        "httpsig.json",
        &json!({
            "description": "HTTP message signatures (RFC 9421) in the Web Bot Auth profile: each case is a full request (`method`, absolute target `url`, `headers` as [name, value] pairs in order; names match case-insensitively, repeated names combine as RFC 9421 §2.1 says) and whether a verifier must accept its signature at `now`. Verifier settings: only the first `Signature-Input` member with `tag` = `required_tag` is considered; it must cover `@authority` (or `@target-uri`), and a present `Signature-Agent` whole or each of its Dictionary members (`\"signature-agent\";key=\"sig1\"`); `created`, `expires` and `nonce` are required; accepted while `created <= now + leeway_secs`, `now <= expires + leeway_secs`, `now <= created + max_age_secs + leeway_secs`, `expires >= created`; `Signature-Input` must be in canonical RFC 8941 form; component parameters other than `key` are refused. `keys` maps `keyid` to the public JWK (Web Bot Auth: the RFC 7638 thumbprint); `agent_jwk` is that key with its private part, for implementations that sign. On acceptance, `expect` gives what was read and the `signature_base` (RFC 9421 §2.5); `replay_until` = min(created + max_age_secs, expires) + leeway_secs, how long the (keyid, nonce) pair must be remembered. A refusal is `PROOF_INVALID`; `why` is for people. `access_token` is a real agent token of the registry (`issuer`, `jwks`) bound to the agent's key (`cnf.jkt` = its `keyid`), valid at `now`, so a receiver can run each case whole: the token sent beside the request's headers as `X-Agent-Token` (covered by no signature), the request's `url` origin being the receiver's own public URL.",
            "now": NOW,
            "leeway_secs": LEEWAY,
            "max_age_secs": MAX_AGE,
            "required_tag": httpsig::WEB_BOT_AUTH_TAG,
            "required_components": ["@authority"],
            "require_expires": true,
            "require_nonce": true,
            "keys": keys,
            "agent_jwk": crate::private_jwk(&agent)?,
            "access_token": token,
            "issuer": crate::REGISTRY,
            "jwks": jwks,
            "cases": out,
        }),
    )
}
