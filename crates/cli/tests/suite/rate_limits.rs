//! Rate limits through the real binary (issue 18 items 4 and 7): `serve`'s flags and
//! their refusals (exit 2, before anything starts), `bonafide rate-limit`, and two
//! replicas on one PostgreSQL database taking leases from one shared bucket.

use std::process::{Command, Output};
use std::time::Instant;

use reqwest::StatusCode;

use crate::common::{self, BIN, json_of, run, serve_with_args, text};

/// `serve` with `args` on a fresh data dir; it must refuse to start.
fn serve_refused(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(args)
        .env_remove("BONAFIDE_ADMIN_KEY")
        .env_remove("BONAFIDE_RATE_LIMITS")
        .env_remove("BONAFIDE_RATE_LIMIT")
        .env_remove("BONAFIDE_TRUSTED_PROXIES")
        .env_remove("BONAFIDE_SIGNING_KEY_LIFETIME")
        .output()
        .unwrap()
}

#[test]
fn bad_limit_proxy_and_lifetime_flags_exit_2_saying_why() {
    for (args, says) in [
        (
            &["--rate-limit", "ip=0/min"][..],
            "the count must be from 1",
        ),
        (&["--rate-limit", "ip=100/week"][..], "is not a rate limit"),
        (&["--rate-limit", "ip"][..], "POLICY=LIMIT"),
        (
            &["--rate-limit", "robots=1/s"][..],
            "not a rate-limit policy",
        ),
        (&["--rate-limits", "maybe"][..], "maybe"),
        (
            &["--trusted-proxy", "10.0.0.1/8"][..],
            "bits set past the prefix",
        ),
        (
            &["--trusted-proxy", "proxy.example"][..],
            "not an IP address",
        ),
        (&["--trusted-proxy", "10.0.0.0/40"][..], "prefix length"),
        (&["--signing-key-lifetime", "10m"][..], "from 1h to 3650d"),
        (
            &["--signing-key-lifetime", "90x"][..],
            "invalid duration unit",
        ),
    ] {
        let out = serve_refused(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    // The variables are checked the same way.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("BONAFIDE_RATE_LIMIT", "ip=10/min,iss=0/min")
        .env_remove("BONAFIDE_ADMIN_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("iss=0/min"), "{}", text(&out));
}

/// `serve` with rate limits on (the default) and `flags`.
fn limited(dir: &std::path::Path, flags: &[&str]) -> common::Served {
    let mut args = vec!["--rate-limits", "on"];
    args.extend_from_slice(flags);
    serve_with_args(dir, "127.0.0.1:0", &args, &[])
}

#[tokio::test]
async fn serve_limits_calls_and_rate_limit_sets_a_keys_own_limit() {
    let dir = tempfile::tempdir().unwrap();
    let served = limited(
        dir.path(),
        &["--rate-limit", "ip=3/min", "--rate-limit", "issuer=2/min"],
    );
    let admin = served.admin_printed.clone().unwrap();
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let r = http
            .get(format!("{}/v1/scopes", served.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["ratelimit-policy"], "\"ip\";q=3;w=60");
    }
    let r = http
        .get(format!("{}/v1/scopes", served.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&wait), "{wait}");

    // An issuer key, limited by its kind, then by its own limit set by key.
    let out = run(
        &served.url,
        Some(&admin),
        &["issuer", "create", "--name", "limited.example", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let issuer_key = json_of(&out)["api_key"].as_str().unwrap().to_owned();
    let out = run(
        &served.url,
        Some(&admin),
        &["rate-limit", "set", &issuer_key, "7/min", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let set = json_of(&out);
    assert_eq!(set["limit"], "7/60s");
    let id = set["key_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sha256:"), "{id}");
    assert!(
        !text(&out).contains(&issuer_key),
        "the key is never shown or sent"
    );
    let r = http
        .get(format!("{}/v1/issuer", served.url))
        .bearer_auth(&issuer_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["ratelimit-policy"], "\"issuer\";q=7;w=60");
    let out = run(&served.url, Some(&admin), &["rate-limit", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed = text(&out);
    for want in [
        "ip         3/60s",
        "issuer     2/60s",
        &id,
        "7/60s",
        "trusted proxies: none",
    ] {
        assert!(listed.contains(want), "{want}: {listed}");
    }
    let out = run(&served.url, Some(&admin), &["rate-limit", "clear", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("cleared"), "{}", text(&out));
    // Cleared twice: the registry's 404, said as such.
    let out = run(&served.url, Some(&admin), &["rate-limit", "clear", &id]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("NOT_FOUND"), "{}", text(&out));

    // Refused before any request: not a key or id, not a limit, a malformed key.
    for args in [
        &["rate-limit", "set", "nonsense", "1/min"][..],
        &["rate-limit", "set", &id, "0/min"][..],
        &["rate-limit", "set", &id, "1/fortnight"][..],
        &["rate-limit", "clear", "bfk_iss_broken"][..],
    ] {
        let out = run("http://127.0.0.1:9", Some(&admin), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
    // An issuer key may not set limits.
    let out = run(
        &served.url,
        Some(&issuer_key),
        &["rate-limit", "set", &id, "1000/min"],
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test]
async fn a_trusted_proxys_forwarded_address_is_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let served = limited(
        dir.path(),
        &["--rate-limit", "ip=1/min", "--trusted-proxy", "127.0.0.1"],
    );
    let http = reqwest::Client::new();
    let call = |xff: &'static str| {
        http.get(format!("{}/v1/scopes", served.url))
            .header("x-forwarded-for", xff)
            .send()
    };
    assert_eq!(call("198.51.100.1").await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        call("198.51.100.1").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(call("198.51.100.2").await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn replicas_on_one_database_share_each_bucket_within_a_lease() {
    let admin_url = crate::replicas::admin_url();
    let db = crate::replicas::fresh_database(&admin_url, "ratelimits").await;
    let admin = bonafide_core::apikey::ApiKey::from_random(
        bonafide_core::apikey::KeyKind::Admin,
        [7u8; 20],
    );
    let spawn = || {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--signing-alg", "EdDSA"])
            .args(["--public-url", "http://registry.test"])
            .args(["--database-url", &db])
            .arg("--key-encryption-key-file")
            .arg(crate::replicas::shared_kek())
            .args(["--rate-limits", "on", "--rate-limit", "ip=40/min"])
            .env_remove("BONAFIDE_DATA_DIR")
            .env("BONAFIDE_ADMIN_KEY", admin.expose_secret());
        common::spawn_served(cmd)
    };
    let replicas = [spawn(), spawn()];
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut allowed = [0u32; 2];
    let mut refused_in_a_row = 0;
    for i in 0..400 {
        let r = &replicas[i % 2];
        let st = http
            .get(format!("{}/v1/scopes", r.url))
            .send()
            .await
            .unwrap()
            .status();
        if st == StatusCode::OK {
            allowed[i % 2] += 1;
            refused_in_a_row = 0;
        } else {
            assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
            refused_in_a_row += 1;
            if refused_in_a_row == 6 {
                break;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let total = f64::from(allowed[0] + allowed[1]);
    // The shared bucket: 40, plus what refilled meanwhile (40 a minute); a replica
    // holds at most one lease (2 requests at this quota) beyond it, or unused.
    let refilled = (secs * 40.0 / 60.0).ceil();
    println!("{allowed:?} allowed in {secs:.2} s (bucket 40, refilled {refilled})");
    assert!(
        total <= 40.0 + refilled + 4.0 && total >= 40.0 - 4.0,
        "{allowed:?} allowed in {secs:.2} s"
    );
    assert!(allowed[0] >= 10 && allowed[1] >= 10, "{allowed:?}");
}
