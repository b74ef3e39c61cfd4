//! Status lists from the command line, against the real `bonafide serve`: `token
//! sign` gets a slot when it has an issuer key (and none with `--no-status`), and
//! `audit verify --status-list` proves the list served is the one logged — and
//! catches a split view: a list edited in the database behind the server's back (so
//! the server serves it), and a receiver's saved copy the registry never logged.

use crate::common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use bonafide_core::keys::SigningKey;
use bonafide_core::status_list::{self, Status, StatusList, StatusListClaims};
use bonafide_store::{PrivateKeySlot, PublishedStatusList, ReceiptKeyRecord, Store};
use common::{Served, json_of, run, serve, text};
use serde_json::Value;

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn payload(jws: &str) -> Value {
    let part = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&bonafide_core::b64::decode(part).unwrap()).unwrap()
}

/// The token's slot: (uri, idx), or `None` without one.
fn slot(token: &str) -> Option<(String, u64)> {
    let p = payload(token);
    let s = p.get("status")?;
    Some((
        s["status_list"]["uri"].as_str().unwrap().to_owned(),
        s["status_list"]["idx"].as_u64().unwrap(),
    ))
}

/// The list at `uri` once published (a new list is within a round).
fn fetch(uri: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = block_on(async {
            let r = reqwest::get(uri).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        });
        if status == 200 {
            return body;
        }
        assert!(
            status == 503 && Instant::now() < deadline,
            "{status} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the list at `uri` shows `want` at `idx`; the token served.
fn until_status(uri: &str, idx: u64, want: Status) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let token = fetch(uri);
        let claims: StatusListClaims = serde_json::from_value(payload(&token)).unwrap();
        let list = StatusList::decode(&claims.status_list).unwrap();
        if list.get(idx).unwrap() == want {
            return token;
        }
        assert!(Instant::now() < deadline, "{idx} never became {want:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
}

/// The registry's status-list key, read from its data dir as an operator could: the
/// sealed row, opened with the data dir's key-encryption key.
fn status_key(data: &Path) -> SigningKey {
    let raw = std::fs::read(data.join("key-encryption.key")).unwrap();
    let bytes = if raw.len() == 32 {
        raw
    } else {
        let text = String::from_utf8(raw).unwrap();
        let t = text.trim().trim_end_matches('=');
        bonafide_core::b64::decode(&t.replace('+', "-").replace('/', "_")).unwrap()
    };
    let kek = bonafide_core::sealed::Kek::from_bytes(&bytes).unwrap();
    let stored = block_on(async {
        let store = bonafide_store::SqliteStore::open(data).await.unwrap();
        store
            .status_list_key(&ReceiptKeyRecord {
                private_pem: "unused: a key is stored".into(),
                created_at_ms: 0,
            })
            .await
            .unwrap()
    });
    let pem =
        bonafide_server::sealing::open(&kek, &PrivateKeySlot::StatusListKey, &stored.private_pem)
            .unwrap();
    SigningKey::from_pkcs8_pem(pem.expose_secret()).unwrap()
}

/// `token`'s list with `idx` set to `status`, re-signed with `key` as version
/// `version`: what a registry showing one receiver a different state would serve.
fn forged(token: &str, idx: u64, status: Status, version: u64, key: &SigningKey) -> String {
    let mut claims: StatusListClaims = serde_json::from_value(payload(token)).unwrap();
    let mut list = StatusList::decode(&claims.status_list).unwrap();
    list.set(idx, status).unwrap();
    claims.status_list = list.encode();
    claims
        .extra
        .insert(status_list::VERSION_CLAIM.into(), version.into());
    status_list::sign(key, &claims).unwrap()
}

/// An issuer created by the admin (its API key and id) and an agent it registered
/// with scope `read:x`, both through the CLI.
fn issuer_and_agent(srv: &Served, issuer_name: &str, agent_name: &str) -> (String, String, String) {
    let admin = srv.admin_printed.clone().unwrap();
    let out = run(
        &srv.url,
        Some(&admin),
        &["issuer", "create", "--name", issuer_name, "--json"],
    );
    assert_exit(&out, 0);
    let v = json_of(&out);
    let (issuer_key, issuer) = (
        v["api_key"].as_str().unwrap().to_owned(),
        v["issuer_id"].as_str().unwrap().to_owned(),
    );
    let out = run(
        &srv.url,
        Some(&issuer_key),
        &[
            "agent", "register", "--name", agent_name, "--scope", "read:x", "--json",
        ],
    );
    assert_exit(&out, 0);
    let agent = json_of(&out)["agent_id"].as_str().unwrap().to_owned();
    (issuer_key, issuer, agent)
}

#[test]
fn token_sign_gets_a_slot_and_audit_verify_catches_a_split_view() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let srv = serve(data.path(), &[]);
    let admin = srv.admin_printed.clone().unwrap();
    let (issuer_key, issuer, agent) = issuer_and_agent(&srv, "lists.example", "Bot");
    let key = dir.path().join("k.pem");
    let k = key.to_str().unwrap();
    assert_exit(
        &run(
            &srv.url,
            None,
            &["keys", "generate", "--alg", "EdDSA", "--out", k],
        ),
        0,
    );
    let public = format!("{k}.pub.jwk");
    assert_exit(
        &run(&srv.url, Some(&issuer_key), &["issuer-key", "add", &public]),
        0,
    );
    let sign = |api_key: Option<&str>, extra: &[&str]| {
        let mut args = vec![
            "token", "sign", "--key", k, "--issuer", &issuer, "--agent", &agent, "--scope",
            "read:x", "--ttl", "1h",
        ];
        args.extend_from_slice(extra);
        run(&srv.url, api_key, &args)
    };

    // With the issuer key: a slot, and the list flips when the token is revoked.
    let out = sign(Some(&issuer_key), &[]);
    assert_exit(&out, 0);
    let token = String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    let (uri, idx) = slot(&token).expect("a status slot");
    assert!(uri.starts_with(&srv.url), "{uri}");
    until_status(&uri, idx, Status::Valid);
    assert_exit(
        &run(&srv.url, Some(&issuer_key), &["revoke", "--token", &token]),
        0,
    );
    let served = until_status(&uri, idx, Status::Invalid);

    // Without a key: none, and said; --no-status: none, silently; a receiver key: refused.
    let out = sign(None, &[]);
    assert_exit(&out, 0);
    let bare = String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(slot(&bare), None);
    assert!(text(&out).contains("no status-list slot"), "{}", text(&out));
    let out = sign(Some(&issuer_key), &["--no-status"]);
    assert_exit(&out, 0);
    assert_eq!(
        slot(String::from_utf8(out.stdout.clone()).unwrap().trim()),
        None
    );
    let out = sign(Some(&admin), &[]);
    assert_exit(&out, 2);
    assert!(text(&out).contains("issuer key"), "{}", text(&out));

    // The list served is the one logged.
    let state = dir.path().join("audit-state.json");
    let st = state.to_str().unwrap();
    let out = run(
        &srv.url,
        None,
        &[
            "audit",
            "verify",
            "--state",
            st,
            "--status-list",
            &uri,
            "--json",
        ],
    );
    assert_exit(&out, 0);
    let v = json_of(&out);
    let version = status_list::log_claims(&serde_json::from_value(payload(&served)).unwrap())
        .unwrap()
        .0;
    assert_eq!(v["entries"][0]["status_list"], uri.as_str(), "{v}");
    assert!(
        v["entries"][0]["version"].as_u64().unwrap() >= version,
        "{v}"
    );
    // A receiver's saved copy: logged too.
    let saved = dir.path().join("saved.jwt");
    std::fs::write(&saved, &served).unwrap();
    let out = run(
        &srv.url,
        None,
        &[
            "audit",
            "verify",
            "--state",
            st,
            "--status-list-file",
            saved.to_str().unwrap(),
        ],
    );
    assert_exit(&out, 0);

    // A copy showing the revoked token valid, signed with the registry's own key but
    // never logged: caught.
    let signer = status_key(data.path());
    let split = forged(&served, idx, Status::Valid, version + 1, &signer);
    let copy = dir.path().join("split.jwt");
    std::fs::write(&copy, &split).unwrap();
    let out = run(
        &srv.url,
        None,
        &[
            "audit",
            "verify",
            "--state",
            st,
            "--status-list-file",
            copy.to_str().unwrap(),
        ],
    );
    assert_exit(&out, 1);
    assert!(
        text(&out).contains("NOT the one the registry logged"),
        "{}",
        text(&out)
    );

    // The same list put in the database behind the server's back, which serves it:
    // caught at the URL.
    let list_id: u32 = uri.rsplit('/').next().unwrap().parse().unwrap();
    block_on(async {
        let store = bonafide_store::SqliteStore::open(data.path())
            .await
            .unwrap();
        let now = payload(&split)["iat"].as_i64().unwrap();
        assert!(
            store
                .publish_status_list(&PublishedStatusList {
                    list_id,
                    version: 1_000_000,
                    token: split.clone(),
                    issued_at_s: now,
                    expires_at_s: now + 3600,
                    audit_index: 0,
                })
                .await
                .unwrap()
        );
    });
    assert_eq!(fetch(&uri), split, "the server serves what its store holds");
    let out = run(
        &srv.url,
        None,
        &["audit", "verify", "--state", st, "--status-list", &uri],
    );
    assert_exit(&out, 1);
    assert!(
        text(&out).contains("NOT the one the registry logged"),
        "{}",
        text(&out)
    );

    // Bad input: another registry's URL, a file that is no list, a list signed by
    // another key.
    let out = run(
        &srv.url,
        None,
        &[
            "audit",
            "verify",
            "--state",
            st,
            "--status-list",
            "https://elsewhere.example/v1/status-lists/1",
        ],
    );
    assert_exit(&out, 2);
    assert!(
        text(&out).contains("not a status list of"),
        "{}",
        text(&out)
    );
    let junk = dir.path().join("junk.jwt");
    std::fs::write(&junk, "not a token").unwrap();
    let out = run(
        &srv.url,
        None,
        &[
            "audit",
            "verify",
            "--state",
            st,
            "--status-list-file",
            junk.to_str().unwrap(),
        ],
    );
    assert_exit(&out, 1);
    let stranger = SigningKey::generate(bonafide_core::keys::Algorithm::EdDSA).unwrap();
    let other = dir.path().join("other.jwt");
    std::fs::write(
        &other,
        forged(&served, idx, Status::Valid, version, &stranger),
    )
    .unwrap();
    let out = run(
        &srv.url,
        None,
        &[
            "audit",
            "verify",
            "--state",
            st,
            "--status-list-file",
            other.to_str().unwrap(),
        ],
    );
    assert_exit(&out, 1);
    assert!(text(&out).contains("does not verify"), "{}", text(&out));
}

#[test]
fn revoke_by_policy_refuses_its_tokens_and_flips_their_slots() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let srv = serve(data.path(), &[]);
    let admin = srv.admin_printed.clone().unwrap();
    let out = run(
        &srv.url,
        Some(&admin),
        &["issuer", "create", "--name", "policies.example", "--json"],
    );
    assert_exit(&out, 0);
    let v = json_of(&out);
    let (issuer_key, issuer) = (
        v["api_key"].as_str().unwrap().to_owned(),
        v["issuer_id"].as_str().unwrap().to_owned(),
    );
    let out = run(
        &srv.url,
        Some(&issuer_key),
        &[
            "agent", "register", "--name", "Bot", "--scope", "read:x", "--json",
        ],
    );
    assert_exit(&out, 0);
    let agent = json_of(&out)["agent_id"].as_str().unwrap().to_owned();
    let key = dir.path().join("k.pem");
    let k = key.to_str().unwrap();
    assert_exit(
        &run(
            &srv.url,
            None,
            &["keys", "generate", "--alg", "EdDSA", "--out", k],
        ),
        0,
    );
    assert_exit(
        &run(
            &srv.url,
            Some(&issuer_key),
            &["issuer-key", "add", &format!("{k}.pub.jwk")],
        ),
        0,
    );
    let policy_file = |id: &str| {
        let file = dir.path().join(format!("{id}.json"));
        std::fs::write(
            &file,
            serde_json::json!({"version": "pol.v0.2", "id": id, "actions": ["read:x"]}).to_string(),
        )
        .unwrap();
        file
    };
    let (revoked_file, kept_file) = (policy_file("pol_cli_1"), policy_file("pol_cli_2"));
    let sign = |policy: &Path| {
        let out = run(
            &srv.url,
            Some(&issuer_key),
            &[
                "token",
                "sign",
                "--key",
                k,
                "--issuer",
                &issuer,
                "--agent",
                &agent,
                "--scope",
                "read:x",
                "--ttl",
                "1h",
                "--policy",
                policy.to_str().unwrap(),
            ],
        );
        assert_exit(&out, 0);
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let token = sign(&revoked_file);
    let kept = sign(&kept_file);
    let (uri, idx) = slot(&token).expect("a status slot");
    let (kept_uri, kept_idx) = slot(&kept).expect("a status slot");
    until_status(&uri, idx, Status::Valid);
    assert_exit(
        &run(&srv.url, None, &["verify", &token, "--action", "read:x"]),
        0,
    );

    // Refusals first: nothing is revoked by them.
    for (key, args, needle) in [
        (Some(issuer_key.as_str()), vec!["--policy", ""], "policy_id"),
        (
            Some(issuer_key.as_str()),
            vec!["--policy", &"x".repeat(129)],
            "policy_id",
        ),
        (None, vec!["--policy", "pol_cli_1"], "BONAFIDE_API_KEY"),
        (
            Some(admin.as_str()),
            vec!["--policy", "pol_cli_1"],
            "issuer key",
        ),
        (
            Some(issuer_key.as_str()),
            vec!["--policy", "pol_cli_1", "--reason", "leak"],
            "--reason",
        ),
        (
            Some(issuer_key.as_str()),
            vec!["--policy", "pol_cli_1", "--token", &token],
            "--token",
        ),
    ] {
        let mut argv = vec!["revoke"];
        argv.extend_from_slice(&args);
        let out = run(&srv.url, key, &argv);
        assert_exit(&out, 2);
        assert!(text(&out).contains(needle), "{args:?}: {}", text(&out));
    }
    assert_exit(
        &run(&srv.url, None, &["verify", &token, "--action", "read:x"]),
        0,
    );

    let out = run(
        &srv.url,
        Some(&issuer_key),
        &["revoke", "--policy", "pol_cli_1"],
    );
    assert_exit(&out, 0);
    assert!(
        text(&out).contains("revoked policy pol_cli_1 at "),
        "{}",
        text(&out)
    );
    let first = text(&out);
    let out = run(&srv.url, None, &["verify", &token, "--action", "read:x"]);
    assert_exit(&out, 1);
    assert!(text(&out).contains("TOKEN_REVOKED"), "{}", text(&out));
    assert!(text(&out).contains("POLICY_REVOKED"), "{}", text(&out));
    // `token sign` gave the slot the policy's id: it flips with the policy.
    until_status(&uri, idx, Status::Invalid);
    assert_exit(
        &run(&srv.url, None, &["verify", &kept, "--action", "read:x"]),
        0,
    );
    let kept_list = fetch(&kept_uri);
    let claims: StatusListClaims = serde_json::from_value(payload(&kept_list)).unwrap();
    assert_eq!(
        StatusList::decode(&claims.status_list)
            .unwrap()
            .get(kept_idx)
            .unwrap(),
        Status::Valid
    );
    // Again, as JSON: the first time kept.
    let out = run(
        &srv.url,
        Some(&issuer_key),
        &["revoke", "--policy", "pol_cli_1", "--json"],
    );
    assert_exit(&out, 0);
    let again = json_of(&out);
    assert_eq!(again["policy_id"], "pol_cli_1", "{again}");
    let at = again["revoked_at"].as_str().unwrap();
    assert!(first.contains(&format!(" at {at}:")), "{first} / {again}");
}

/// `token sign --bind` binds a self-signed token to the agent's key (`cnf.jkt`, its
/// thumbprint) and names that key in the token's slot. An agent with a key of its
/// own (and no `allow_bearer_tokens`) gets no slot for an unbound token: the
/// registry's 422, with the flag that fixes it. A private key or a missing file
/// given to `--bind` is refused before any request.
#[test]
fn token_sign_binds_to_the_agent_key_and_its_slot_names_it() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let srv = serve(data.path(), &[]);
    let (issuer_key, issuer, agent) = issuer_and_agent(&srv, "bind.example", "Bound");
    let generate = |name: &str| {
        let file = dir.path().join(name).to_str().unwrap().to_owned();
        let out = run(
            &srv.url,
            None,
            &[
                "keys", "generate", "--alg", "EdDSA", "--out", &file, "--json",
            ],
        );
        assert_exit(&out, 0);
        let kid = json_of(&out)["kid"].as_str().unwrap().to_owned();
        (file, kid)
    };
    let (k, _) = generate("issuer.pem");
    assert_exit(
        &run(
            &srv.url,
            Some(&issuer_key),
            &["issuer-key", "add", &format!("{k}.pub.jwk")],
        ),
        0,
    );
    let (agent_pem, agent_jkt) = generate("agent.pem");
    let agent_pub = format!("{agent_pem}.pub.jwk");
    let sign = |extra: &[&str]| {
        let mut args = vec![
            "token", "sign", "--key", &k, "--issuer", &issuer, "--agent", &agent, "--scope",
            "read:x", "--ttl", "1h",
        ];
        args.extend_from_slice(extra);
        run(&srv.url, Some(&issuer_key), &args)
    };
    // Before the agent has a key, an unbound token gets its slot.
    let out = sign(&[]);
    assert_exit(&out, 0);
    assert!(slot(String::from_utf8(out.stdout.clone()).unwrap().trim()).is_some());

    assert_exit(
        &run(
            &srv.url,
            Some(&issuer_key),
            &[
                "agent",
                "keys",
                "register",
                &agent,
                "--public-key",
                &agent_pub,
            ],
        ),
        0,
    );
    let out = sign(&[]);
    assert_exit(&out, 2);
    assert!(text(&out).contains("`jkt` is required"), "{}", text(&out));
    assert!(text(&out).contains("--bind"), "{}", text(&out));

    let out = sign(&["--bind", &agent_pub]);
    assert_exit(&out, 0);
    let token = String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(payload(&token)["cnf"]["jkt"], agent_jkt.as_str());
    let (uri, idx) = slot(&token).expect("a status slot");
    until_status(&uri, idx, Status::Valid);
    // Only with a proof by the agent's key does it verify.
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", token.as_str(), "--scope", "read:x"];
        args.extend_from_slice(extra);
        run(&srv.url, None, &args)
    };
    assert_exit(&verify(&[]), 1);
    assert_exit(
        &verify(&[
            "--dpop-key",
            &agent_pem,
            "--htm",
            "GET",
            "--htu",
            "https://api.example/x",
        ]),
        0,
    );

    // The same key as a PEM public key (SubjectPublicKeyInfo): the same binding.
    let private = std::fs::read_to_string(&agent_pem).unwrap();
    let public_pem = SigningKey::from_pkcs8_pem(&private)
        .unwrap()
        .verifying_key()
        .public_pem()
        .unwrap();
    let pem_file = dir.path().join("agent.pub.pem");
    std::fs::write(&pem_file, public_pem).unwrap();
    let out = sign(&["--bind", pem_file.to_str().unwrap()]);
    assert_exit(&out, 0);
    let by_pem = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(payload(by_pem.trim())["cnf"]["jkt"], agent_jkt.as_str());

    // The private key, a missing file, a file that is no key: refused locally.
    let not_a_key = dir.path().join("notes.txt");
    std::fs::write(&not_a_key, "hello").unwrap();
    for (file, says) in [
        (agent_pem.as_str(), "private key"),
        ("/nonexistent/agent.pub.jwk", "--bind"),
        (not_a_key.to_str().unwrap(), "not a JWK"),
    ] {
        let out = sign(&["--bind", file]);
        assert_exit(&out, 2);
        assert!(text(&out).contains(says), "{file}: {}", text(&out));
    }

    // A slot refused for another reason (a suspended agent) does not send the user
    // to `--bind`.
    let out = run(
        &srv.url,
        Some(&issuer_key),
        &["agent", "suspend", &agent, "--reason", "audit"],
    );
    assert_exit(&out, 0);
    let out = sign(&["--bind", &agent_pub]);
    assert_exit(&out, 2);
    assert!(text(&out).contains("no status-list slot"), "{}", text(&out));
    assert!(!text(&out).contains("pass --bind"), "{}", text(&out));
    let out = sign(&[]);
    assert_exit(&out, 2);
    assert!(!text(&out).contains("pass --bind"), "{}", text(&out));
}
