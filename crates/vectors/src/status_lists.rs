//! `status_lists.json`: signed Token Status Lists (draft-ietf-oauth-status-list,
//! `typ statuslist+jwt`) as a registry serves them, and agent tokens that name an
//! entry in one, with the status a verifier must read for each token: valid,
//! revoked, suspended, or a refusal when the list itself does not verify.

use bonafide_core::b64;
use bonafide_core::keys::{SigningKey, VerifyingKey};
use bonafide_core::status_list::{self, Bits, EncodedList, Status, StatusList, StatusListClaims};
use bonafide_core::token::{self, KeySet, TokenError, VerifyOptions};
use serde_json::{Value, json};

use crate::{VectorError, VectorFile, ed25519, pretty, raw_jws};

const NOW: i64 = 1_800_000_000;
const LEEWAY: i64 = 60;
const REGISTRY: &str = "https://registry.example";
const LIST_1: &str = "https://registry.example/v1/status-lists/1";
const LIST_2: &str = "https://registry.example/v1/status-lists/2";

fn build<E: std::fmt::Display>(case: &str) -> impl Fn(E) -> VectorError + '_ {
    move |e| VectorError::Build {
        case: case.to_owned(),
        message: e.to_string(),
    }
}

fn list_claims(uri: &str, list: &StatusList) -> StatusListClaims {
    StatusListClaims {
        iss: Some(REGISTRY.into()),
        sub: uri.into(),
        iat: NOW - 30,
        exp: Some(NOW + 3600),
        ttl: Some(300),
        status_list: list.encode(),
        extra: serde_json::Map::new(),
    }
}

struct List {
    name: &'static str,
    /// Where it is served: the URI a token names.
    uri: &'static str,
    token: String,
    why: Option<&'static str>,
}

struct TokenCase {
    name: &'static str,
    rule: &'static str,
    /// `(idx, uri)`, or none for a token without `status`.
    entry: Option<(u64, &'static str)>,
    /// The list served at that URI (by name).
    list: Option<&'static str>,
    /// `Ok(status)` or `Err(code)`.
    expect: Result<&'static str, &'static str>,
}

fn lists(key: &SigningKey, other: &SigningKey) -> Result<Vec<List>, VectorError> {
    let mut one = StatusList::new(Bits::TWO, 16).map_err(build("list-1"))?;
    let set = |l: &mut StatusList, i, s| l.set(i, s).map_err(build("list"));
    set(&mut one, 3, Status::Invalid)?;
    set(&mut one, 5, Status::Suspended)?;
    set(&mut one, 7, Status::Other(3))?;
    set(&mut one, 12, Status::Invalid)?;
    let mut two = StatusList::new(Bits::ONE, 16).map_err(build("list-2"))?;
    set(&mut two, 4, Status::Invalid)?;
    let sign = |c: &StatusListClaims, name: &str| status_list::sign(key, c).map_err(build(name));
    let good = sign(&list_claims(LIST_1, &one), "list-1")?;
    let mut bad_sig = good.clone();
    let last = if bad_sig.ends_with('A') { 'B' } else { 'A' };
    bad_sig.pop();
    bad_sig.push(last);
    let mut expired = list_claims(LIST_1, &one);
    expired.iat = NOW - 7200;
    expired.exp = Some(NOW - LEEWAY);
    let mut not_zlib = list_claims(LIST_1, &one);
    not_zlib.status_list = EncodedList {
        bits: 2,
        lst: b64::encode(one.as_bytes()),
        aggregation_uri: None,
    };
    let mut bad_bits = list_claims(LIST_1, &one);
    bad_bits.status_list.bits = 3;
    let header = |typ: &str| json!({"alg": "EdDSA", "typ": typ, "kid": key.kid()});
    let payload = |c: &StatusListClaims, name: &str| -> Result<Vec<u8>, VectorError> {
        serde_json::to_vec(c).map_err(build(name))
    };
    Ok(vec![
        List {
            name: "list_1",
            uri: LIST_1,
            token: good,
            why: None,
        },
        List {
            name: "list_2",
            uri: LIST_2,
            token: sign(&list_claims(LIST_2, &two), "list-2")?,
            why: None,
        },
        List {
            name: "list_1_bad_signature",
            uri: LIST_1,
            token: bad_sig,
            why: Some("the list's signature does not verify"),
        },
        List {
            name: "list_1_other_key",
            uri: LIST_1,
            token: status_list::sign(other, &list_claims(LIST_1, &one))
                .map_err(build("list_1_other_key"))?,
            why: Some("signed by a key the status-list key set does not hold"),
        },
        List {
            name: "list_2_served_for_1",
            uri: LIST_1,
            token: sign(&list_claims(LIST_2, &two), "list_2_served_for_1")?,
            why: Some("its `sub` (list 2) is not the URI the token names (list 1)"),
        },
        List {
            name: "list_1_expired",
            uri: LIST_1,
            token: sign(&expired, "list_1_expired")?,
            why: Some("its `exp` is at or before now minus the leeway"),
        },
        List {
            name: "list_1_wrong_typ",
            uri: LIST_1,
            token: raw_jws(
                key,
                &header("JWT"),
                &payload(&list_claims(LIST_1, &one), "list_1_wrong_typ")?,
                "list_1_wrong_typ",
            )?,
            why: Some("`typ` is not `statuslist+jwt`"),
        },
        List {
            name: "list_1_not_zlib",
            uri: LIST_1,
            token: sign(&not_zlib, "list_1_not_zlib")?,
            why: Some("`lst` is not zlib-compressed"),
        },
        List {
            name: "list_1_bits_3",
            uri: LIST_1,
            token: sign(&bad_bits, "list_1_bits_3")?,
            why: Some("`bits` is not 1, 2, 4 or 8"),
        },
    ])
}

fn token_cases() -> Vec<TokenCase> {
    let t = |name, rule, idx, uri, list, expect| TokenCase {
        name,
        rule,
        entry: Some((idx, uri)),
        list: Some(list),
        expect,
    };
    vec![
        t(
            "valid",
            "entry 0 of list 1 is 0x00",
            0,
            LIST_1,
            "list_1",
            Ok("valid"),
        ),
        t(
            "revoked",
            "entry 3 of list 1 is 0x01",
            3,
            LIST_1,
            "list_1",
            Err("TOKEN_REVOKED"),
        ),
        t(
            "suspended",
            "entry 5 of list 1 is 0x02",
            5,
            LIST_1,
            "list_1",
            Err("AGENT_SUSPENDED"),
        ),
        t(
            "unknown_status",
            "entry 7 of list 1 is 0x03, a status no verifier may read as valid",
            7,
            LIST_1,
            "list_1",
            Err("TOKEN_INVALID"),
        ),
        t(
            "revoked_last_byte",
            "entry 12 of list 1 (byte 3, bits 0–1) is 0x01",
            12,
            LIST_1,
            "list_1",
            Err("TOKEN_REVOKED"),
        ),
        t(
            "valid_neighbour",
            "entry 13 of list 1 is 0x00",
            13,
            LIST_1,
            "list_1",
            Ok("valid"),
        ),
        t(
            "index_beyond_list",
            "index 16 of a list of 16 entries",
            16,
            LIST_1,
            "list_1",
            Err("TOKEN_INVALID"),
        ),
        t(
            "one_bit_revoked",
            "entry 4 of the 1-bit list 2 is 1",
            4,
            LIST_2,
            "list_2",
            Err("TOKEN_REVOKED"),
        ),
        t(
            "one_bit_valid",
            "entry 5 of the 1-bit list 2 is 0",
            5,
            LIST_2,
            "list_2",
            Ok("valid"),
        ),
        t(
            "list_bad_signature",
            "the list served does not verify: no status can be read",
            0,
            LIST_1,
            "list_1_bad_signature",
            Err("STATUS_LIST_UNAVAILABLE"),
        ),
        t(
            "list_other_key",
            "the list served is signed by an unknown key",
            0,
            LIST_1,
            "list_1_other_key",
            Err("STATUS_LIST_UNAVAILABLE"),
        ),
        t(
            "list_wrong_sub",
            "the list served at the token's URI is another list",
            0,
            LIST_1,
            "list_2_served_for_1",
            Err("STATUS_LIST_UNAVAILABLE"),
        ),
        t(
            "list_expired",
            "the list served has expired",
            0,
            LIST_1,
            "list_1_expired",
            Err("STATUS_LIST_UNAVAILABLE"),
        ),
        t(
            "list_wrong_typ",
            "the list served is not a status list token",
            0,
            LIST_1,
            "list_1_wrong_typ",
            Err("STATUS_LIST_UNAVAILABLE"),
        ),
        t(
            "list_not_zlib",
            "the list served cannot be inflated",
            0,
            LIST_1,
            "list_1_not_zlib",
            Err("STATUS_LIST_UNAVAILABLE"),
        ),
        TokenCase {
            name: "no_status",
            rule: "a token without `status`: no list is read (revocation not checked offline)",
            entry: None,
            list: None,
            expect: Ok("unchecked"),
        },
    ]
}

/// The core's reading of `list` served at `uri`: its decoded list, or the error.
fn read_list(
    keys: &KeySet,
    list: &str,
    uri: &str,
) -> Result<StatusList, status_list::StatusListError> {
    status_list::verify(list, keys, uri, NOW, LEEWAY).map(|(_, l)| l)
}

fn status_name(s: Status) -> Value {
    match s {
        Status::Valid => json!("valid"),
        Status::Invalid => json!("revoked"),
        Status::Suspended => json!("suspended"),
        Status::Other(v) => json!(v),
    }
}

pub(crate) fn file() -> Result<VectorFile, VectorError> {
    let registry = ed25519(1)?;
    let list_key = ed25519(10)?;
    let other = ed25519(11)?;
    let public =
        |k: &SigningKey| VerifyingKey::from_jwk(k.verifying_key().jwk()).map_err(build("keys"));
    let mut token_keys = KeySet::new();
    token_keys.insert(public(&registry)?);
    let mut list_keys = KeySet::new();
    list_keys.insert(public(&list_key)?);

    let all_lists = lists(&list_key, &other)?;
    let mut lists_out = Vec::new();
    for l in &all_lists {
        let found = read_list(&list_keys, &l.token, l.uri);
        if found.is_ok() != l.why.is_none() {
            return Err(VectorError::Disagrees {
                case: l.name.into(),
                expected: format!("{:?}", l.why),
                found: format!("{:?}", found.err()),
            });
        }
        let expect = match found {
            Ok(list) => {
                let statuses: Result<Vec<Value>, _> = (0..list.len())
                    .map(|i| list.get(i).map(status_name))
                    .collect();
                json!({
                    "valid": true,
                    "bits": list.bits().get(),
                    "len": list.len(),
                    "statuses": statuses.map_err(build(l.name))?,
                })
            }
            Err(_) => json!({"valid": false, "why": l.why}),
        };
        lists_out.push(json!({"name": l.name, "uri": l.uri, "token": l.token, "expect": expect}));
    }

    let mut cases = Vec::new();
    for (i, case) in token_cases().into_iter().enumerate() {
        let mut claims = json!({
            "iss": REGISTRY,
            "sub": "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa",
            "iat": NOW - 10,
            "exp": NOW + 600,
            "jti": bonafide_core::ids::TokenId::from_random([i as u8; 16]).as_str(),
            "agent": {"name": "PortfolioBot", "issuer": "apexwealth.example", "scopes": ["read:portfolio"]},
        });
        if let Some((idx, uri)) = case.entry {
            claims["status"] = json!({"status_list": {"idx": idx, "uri": uri}});
        }
        let text = token::sign(
            &registry,
            &serde_json::from_value(claims).map_err(build(case.name))?,
        )
        .map_err(build(case.name))?;
        let mut opts = VerifyOptions::for_issuer(REGISTRY);
        opts.leeway_secs = LEEWAY;
        let verified = token::verify(&text, &token_keys, &opts, NOW).map_err(build(case.name))?;
        let entry = verified
            .claims
            .status
            .as_ref()
            .and_then(|s| s.status_list.as_ref());
        let found: Result<&str, String> = match (entry, case.list) {
            (None, _) => Ok("unchecked"),
            (Some(r), Some(name)) => {
                let served = all_lists
                    .iter()
                    .find(|l| l.name == name)
                    .ok_or_else(|| build(case.name)("no such list"))?;
                match read_list(&list_keys, &served.token, &r.uri) {
                    Err(_) => Err("STATUS_LIST_UNAVAILABLE".into()),
                    Ok(list) => match list.get(r.idx) {
                        Err(_) => Err(TokenError::Claims(String::new()).code().as_str().into()),
                        Ok(s) => s
                            .check()
                            .map(|()| "valid")
                            .map_err(|e| e.code().as_str().to_owned()),
                    },
                }
            }
            (Some(_), None) => return Err(build(case.name)("a token with `status` needs a list")),
        };
        let expected = case.expect.map_err(str::to_owned);
        if found != expected {
            return Err(VectorError::Disagrees {
                case: case.name.into(),
                expected: format!("{expected:?}"),
                found: format!("{found:?}"),
            });
        }
        let expect = match case.expect {
            Ok(status) => json!({"valid": true, "status": status}),
            Err(code) => {
                let status = match code {
                    "TOKEN_REVOKED" => json!("revoked"),
                    "AGENT_SUSPENDED" => json!("suspended"),
                    _ => Value::Null,
                };
                json!({"valid": false, "status": status, "code": code})
            }
        };
        cases.push(json!({
            "name": case.name,
            "rule": case.rule,
            "token": text,
            "list": case.list,
            "expect": expect,
        }));
    }
    pretty(
        "status_lists.json",
        &json!({
            "description": "Token Status Lists (draft-ietf-oauth-status-list): `lists` are Status List Tokens (`typ statuslist+jwt`) as served at `uri`, verified with `status_list_jwks` at `now` (leeway `leeway_secs`): header as for agent tokens, signature, `sub` equal to the URI it was fetched for, `exp` (if present) after now minus the leeway, `ttl` (if present) positive, `status_list.bits` 1, 2, 4 or 8, `status_list.lst` base64url of the zlib (RFC 1950) compressed bytes; status i is bits (i*bits)%8 upwards of byte (i*bits)/8, least significant first. `expect.statuses` lists every entry (`valid` 0x00, `revoked` 0x01, `suspended` 0x02, or the number). `cases` are agent tokens (valid under `jwks` and `issuer` at `now`) whose `status.status_list` names {idx, uri}; `list` is the name of the list served at that uri. `expect`: `valid` true with `status` `valid`, or `unchecked` for a token without `status`; else the wire `code`: TOKEN_REVOKED (0x01), AGENT_SUSPENDED (0x02), TOKEN_INVALID (another value, or an index beyond the list), STATUS_LIST_UNAVAILABLE (the list served does not verify, so no status can be read: fail closed).",
            "now": NOW,
            "leeway_secs": LEEWAY,
            "issuer": REGISTRY,
            "jwks": token_keys.to_jwks(),
            "status_list_jwks": list_keys.to_jwks(),
            "lists": lists_out,
            "cases": cases,
        }),
    )
}
