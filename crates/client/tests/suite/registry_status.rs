//! Status lists end to end against the real registry (`bonafide-server` on
//! 127.0.0.1:0, lists republished within a second of a change, ttl 1 s): a token
//! revoked online is refused offline by the Rust layer after the next list fetch,
//! and by the README's PyJWT snippet; suspension then reactivation; the bits of
//! 10,000 tokens decoded by Python's `zlib` match the registry's state.

use std::collections::BTreeMap;
use std::time::Duration;

use bonafide_client::receiver::{Config, JwksSource};
use bonafide_client::status::StatusListConfig;
use bonafide_core::token::AgentClaims;
use serde_json::{Value, json};

use crate::registry::{Registry, code, receiver, send, until};
use crate::status_lists::python_status_of;

fn claims(jws: &str) -> AgentClaims {
    let payload = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&bonafide_core::b64::decode(payload).unwrap()).unwrap()
}

async fn registry() -> Registry {
    Registry::start_with(|c| c.status_list_ttl = Duration::from_secs(1)).await
}

/// The snippet in a blocking thread (it is a child process).
async fn python(base: &str, tokens: &[&str]) -> Vec<String> {
    let base = base.to_owned();
    let tokens: Vec<String> = tokens.iter().map(|t| (*t).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let t: Vec<&str> = tokens.iter().map(String::as_str).collect();
        python_status_of(&base, &t)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn revoked_online_is_refused_offline_after_the_next_list_fetch() {
    let reg = registry().await;
    let issuer = reg.issuer().await;
    let (_, token) = reg.agent_of(&issuer).await;
    let (other_id, other) = reg.agent_of(&issuer).await;
    let base = receiver(|_| {
        Config::offline(
            JwksSource::url(format!("{}/.well-known/jwks.json", reg.base)),
            reg.base.clone(),
        )
        // As the default, with a shorter wait between fetches so the test is quick.
        .status_lists(
            StatusListConfig::for_registry(&reg.base).min_refetch(Duration::from_millis(200)),
        )
    })
    .await;
    let url = format!("{base}/orders");
    let http = reqwest::Client::new();
    let get = |t: &str| send(http.get(&url).bearer_auth(t.to_owned()));

    let (st, v) = until(|| get(&token), |st, _| st == 200).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["revocation_checked"], true, "{v}");
    assert!(v["list_age_s"].as_u64().is_some(), "{v}");
    assert_eq!(python(&reg.base, &[&token, &other]).await, ["0", "0"]);

    // Revoked online: refused offline from the next fetch on, with the registry's code.
    let jti = claims(&token).jti.to_string();
    reg.post("/v1/tokens/revoke", &issuer, json!({"jti": jti}))
        .await;
    let (st, v) = until(|| get(&token), |st, _| st != 200).await;
    assert_eq!((st, code(&v)), (401, "TOKEN_REVOKED"), "{v}");
    assert_eq!(python(&reg.base, &[&token]).await, ["1"]);
    // The other token, in the same list, still passes.
    let (st, v) = get(&other).await;
    assert_eq!((st, &v["revocation_checked"]), (200, &json!(true)), "{v}");

    // Suspended, then reactivated.
    reg.post(
        &format!("/v1/agents/{other_id}/suspend"),
        &issuer,
        json!({}),
    )
    .await;
    let (st, v) = until(|| get(&other), |st, _| st != 200).await;
    assert_eq!((st, code(&v)), (401, "AGENT_SUSPENDED"), "{v}");
    assert_eq!(python(&reg.base, &[&other]).await, ["2"]);
    reg.post(
        &format!("/v1/agents/{other_id}/reactivate"),
        &issuer,
        json!({}),
    )
    .await;
    let (st, v) = until(|| get(&other), |st, _| st == 200).await;
    assert_eq!((st, &v["revocation_checked"]), (200, &json!(true)), "{v}");
    assert_eq!(python(&reg.base, &[&other, &token]).await, ["0", "1"]);
}

/// 10,000 tokens over 10 agents; 1,000 random tokens revoked and one agent
/// suspended; every token's entry, decoded from the published lists by Python's
/// `zlib` and `base64` alone, is what the registry says of it.
#[tokio::test]
async fn ten_thousand_entries_decoded_by_python_match_the_registry() {
    const AGENTS: usize = 10;
    const PER_AGENT: usize = 1_000;
    let reg = registry().await;
    let issuer = reg.issuer().await;
    let mut agents = Vec::new();
    // (agent, token): each registration's token, then tokens issued 32 at a time.
    let mut tokens: Vec<(usize, String)> = Vec::new();
    for a in 0..AGENTS {
        let (id, token) = reg.agent_of(&issuer).await;
        agents.push(id);
        tokens.push((a, token));
    }
    let jobs: Vec<usize> = (0..AGENTS * PER_AGENT - AGENTS)
        .map(|i| i % AGENTS)
        .collect();
    for chunk in jobs.chunks(32) {
        let calls = chunk.iter().map(|&a| {
            let post = poster(&reg, &issuer);
            let path = format!("/v1/agents/{}/issue-token", agents[a]);
            async move { (a, post(path, json!({})).await) }
        });
        for (a, v) in futures_join(calls).await {
            tokens.push((a, v["token"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(tokens.len(), AGENTS * PER_AGENT);
    // Random revocations (a fixed xorshift, so a failure can be replayed).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut revoked = std::collections::BTreeSet::new();
    while revoked.len() < 1_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        revoked.insert((x % tokens.len() as u64) as usize);
    }
    let revoked: Vec<usize> = revoked.into_iter().collect();
    for chunk in revoked.chunks(32) {
        let calls = chunk.iter().map(|&i| {
            let jti = claims(&tokens[i].1).jti.to_string();
            let post = poster(&reg, &issuer);
            async move { post("/v1/tokens/revoke".into(), json!({"jti": jti})).await }
        });
        futures_join(calls).await;
    }
    let suspended = 3;
    reg.post(
        &format!("/v1/agents/{}/suspend", agents[suspended]),
        &issuer,
        json!({}),
    )
    .await;

    // The registry's state, and the slots: (uri, idx) → expected.
    let mut want: BTreeMap<(String, u64), u8> = BTreeMap::new();
    for (i, (a, t)) in tokens.iter().enumerate() {
        let r = claims(t).status.unwrap().status_list.unwrap();
        let s = if revoked.binary_search(&i).is_ok() {
            1
        } else if *a == suspended {
            2
        } else {
            0
        };
        assert!(
            want.insert((r.uri, r.idx), s).is_none(),
            "a slot given twice"
        );
    }
    let uris: std::collections::BTreeSet<&String> = want.keys().map(|(u, _)| u).collect();
    // Wait for the lists to show every change (the registry republishes within a
    // round), reading them with Python only.
    let script = r#"
import base64, json, sys, urllib.request, zlib
want = json.load(sys.stdin)
bad = 0
for uri, entries in want.items():
    jws = urllib.request.urlopen(uri, timeout=10).read().decode()
    claims = json.loads(base64.urlsafe_b64decode(jws.split(".")[1] + "=="))
    bits = claims["status_list"]["bits"]
    raw = zlib.decompress(base64.urlsafe_b64decode(claims["status_list"]["lst"] + "=="))
    for idx, s in entries:
        got = (raw[idx * bits // 8] >> (idx * bits % 8)) & ((1 << bits) - 1)
        bad += got != s
print(bad)
"#;
    let mut by_uri: BTreeMap<&String, Vec<(u64, u8)>> = BTreeMap::new();
    for ((u, i), s) in &want {
        by_uri.entry(u).or_default().push((*i, *s));
    }
    assert_eq!(by_uri.len(), uris.len());
    let input = serde_json::to_string(&by_uri).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mismatches = loop {
        let input = input.clone();
        let bad = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = std::process::Command::new(crate::middleware::interop_python())
                .args(["-c", script])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse::<usize>()
                .unwrap()
        })
        .await
        .unwrap();
        if bad == 0 || std::time::Instant::now() > deadline {
            break bad;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        mismatches, 0,
        "entries that differ from the registry's state"
    );
    // The check is not vacuous: every status is represented.
    let counts = want.values().fold([0usize; 3], |mut c, s| {
        c[*s as usize] += 1;
        c
    });
    assert!(counts.iter().all(|&n| n >= 500), "{counts:?}");
}

/// An owned `POST` with the issuer's key, for tasks: `post(path, body)` → the answer
/// (a 2xx, asserted).
fn poster(
    reg: &Registry,
    key: &str,
) -> impl Fn(String, Value) -> std::pin::Pin<Box<dyn std::future::Future<Output = Value> + Send>>
+ Send
+ 'static {
    let (http, base, key) = (reg.http.clone(), reg.base.clone(), key.to_owned());
    move |path, body| {
        let req = http
            .post(format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body);
        Box::pin(async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{path}: {}", resp.status());
            resp.json().await.unwrap()
        })
    }
}

/// Runs futures concurrently (no `futures` crate in this workspace's tests).
async fn futures_join<F>(fs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut out = Vec::new();
    let mut set = tokio::task::JoinSet::new();
    for (i, f) in fs.into_iter().enumerate() {
        set.spawn(async move { (i, f.await) });
    }
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, o)| o).collect()
}
