//! `bonafide org|login|sessions|logout` against the real server: the whole flow from
//! `org create` to `logout`, and each failure's exit code and words.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::common::{BIN, json_of, serve, text};

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Runs `bonafide` with `env` set (and BONAFIDE_PASSWORD, BONAFIDE_API_KEY,
/// BONAFIDE_SESSION_FILE removed unless given), `stdin` piped in.
fn run_with(url: &str, env: &[(&str, &str)], stdin: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--url").arg(url).args(args);
    for var in [
        "BONAFIDE_URL",
        "BONAFIDE_PASSWORD",
        "BONAFIDE_API_KEY",
        "BONAFIDE_SESSION_FILE",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run bonafide");
    // Dropping stdin closes it: the command reads what was given, then EOF.
    if let (Some(mut input), Some(s)) = (child.stdin.take(), stdin) {
        input.write_all(s.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

const PASSWORD: &str = "correct horse battery staple";

#[test]
fn org_login_sessions_and_logout_as_processes() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &[]);
    let admin = s.admin_printed.clone().unwrap();
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("session.json");
    let file_s = file.to_str().unwrap();

    // Without the admin key: a usage error, nothing sent.
    let out = run_with(
        &s.url,
        &[],
        None,
        &[
            "org",
            "create",
            "--name",
            "Acme",
            "--owner-email",
            "o@example.com",
        ],
    );
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("BONAFIDE_API_KEY"), "{}", text(&out));

    let out = run_with(
        &s.url,
        &[("BONAFIDE_API_KEY", &admin)],
        None,
        &[
            "org",
            "create",
            "--name",
            "Acme",
            "--owner-email",
            "o@example.com",
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let created = json_of(&out);
    let org = created["org_id"].as_str().unwrap().to_owned();
    let token = created["invitation"]["token"].as_str().unwrap().to_owned();
    // The same name again: the registry's 409, exit 2.
    let out = run_with(
        &s.url,
        &[("BONAFIDE_API_KEY", &admin)],
        None,
        &[
            "org",
            "create",
            "--name",
            "Acme",
            "--owner-email",
            "x@example.com",
        ],
    );
    assert_eq!(code(&out), 2);
    assert!(text(&out).contains("409"), "{}", text(&out));

    // Accept: not a token; no password; a short one (the registry's 422); then right,
    // the password on stdin.
    let out = run_with(&s.url, &[], Some(PASSWORD), &["org", "accept", "nonsense"]);
    assert_eq!(code(&out), 2);
    assert!(text(&out).contains("bfi_"), "{}", text(&out));
    let out = run_with(&s.url, &[], Some(""), &["org", "accept", &token]);
    assert_eq!(code(&out), 2);
    assert!(text(&out).contains("BONAFIDE_PASSWORD"), "{}", text(&out));
    let out = run_with(
        &s.url,
        &[("BONAFIDE_PASSWORD", "too short")],
        None,
        &["org", "accept", &token, "--json"],
    );
    assert_eq!(code(&out), 2);
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["http_status"], 422, "{err}");
    let out = run_with(
        &s.url,
        &[],
        Some(&format!("{PASSWORD}\n")),
        &["org", "accept", &token],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        text(&out).contains("joined") && text(&out).contains("owner"),
        "{}",
        text(&out)
    );

    // Login: a wrong password is the registry's generic 401.
    let out = run_with(
        &s.url,
        &[("BONAFIDE_PASSWORD", "wrong wrong wrong")],
        None,
        &[
            "login",
            "--email",
            "o@example.com",
            "--session-file",
            file_s,
            "--json",
        ],
    );
    assert_eq!(code(&out), 2);
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["code"], "INVALID_CREDENTIALS", "{err}");
    assert!(!file.exists());
    let out = run_with(
        &s.url,
        &[("BONAFIDE_PASSWORD", PASSWORD)],
        None,
        &[
            "login",
            "--email",
            "o@example.com",
            "--session-file",
            file_s,
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        !text(&out).contains("bfr_"),
        "tokens stay in the file: {}",
        text(&out)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let env = [("BONAFIDE_SESSION_FILE", file_s)];
    let out = run_with(
        &s.url,
        &env,
        None,
        &[
            "org",
            "invite",
            &org,
            "--email",
            "m@example.com",
            "--role",
            "member",
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(json_of(&out)["token"].as_str().unwrap().starts_with("bfi_"));
    let out = run_with(
        &s.url,
        &env,
        None,
        &[
            "org",
            "invite",
            &org,
            "--email",
            "m@example.com",
            "--role",
            "boss",
        ],
    );
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("422"), "{}", text(&out));
    let out = run_with(&s.url, &env, None, &["org", "members", &org]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        text(&out).contains("o@example.com") && text(&out).contains("owner"),
        "{}",
        text(&out)
    );
    let out = run_with(&s.url, &env, None, &["org", "members", "org_nope"]);
    assert_eq!(code(&out), 2);

    // Sessions: a second login, listed and revoked from the first.
    let other = state.path().join("other.json");
    let out = run_with(
        &s.url,
        &[("BONAFIDE_PASSWORD", PASSWORD)],
        None,
        &[
            "login",
            "--email",
            "o@example.com",
            "--session-file",
            other.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let other_sid = json_of(&out)["session_id"].as_str().unwrap().to_owned();
    let out = run_with(&s.url, &env, None, &["sessions", "list", "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(json_of(&out)["sessions"].as_array().unwrap().len(), 2);
    let out = run_with(&s.url, &env, None, &["sessions", "revoke", &other_sid]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = run_with(
        &s.url,
        &[("BONAFIDE_SESSION_FILE", other.to_str().unwrap())],
        None,
        &["sessions", "list"],
    );
    assert_eq!(
        code(&out),
        2,
        "a revoked session's token is refused: {}",
        text(&out)
    );
    assert!(text(&out).contains("401"), "{}", text(&out));
    let out = run_with(&s.url, &env, None, &["sessions", "revoke", "not-a-session"]);
    assert_eq!(code(&out), 2);

    // A login for another registry is not sent there.
    let out = run_with("http://127.0.0.1:1", &env, None, &["sessions", "list"]);
    assert_eq!(code(&out), 2);
    assert!(text(&out).contains("is for"), "{}", text(&out));

    // Logout: the session ends and the file goes; then "not logged in".
    let out = run_with(&s.url, &env, None, &["logout"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(!file.exists());
    let out = run_with(&s.url, &env, None, &["sessions", "list", "--json"]);
    assert_eq!(code(&out), 2);
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["code"], "USAGE", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not logged in"),
        "{err}"
    );
}

#[test]
fn keys_scan_finds_keys_by_checksum_and_revokes_this_registrys() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &[]);
    let admin = s.admin_printed.clone().unwrap();
    let out = run_with(
        &s.url,
        &[("BONAFIDE_API_KEY", &admin)],
        None,
        &["issuer", "create", "--name", "leaky.example", "--quiet"],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let real = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    // A key of no registry (valid checksum), and a look-alike (one character off).
    let out = run_with(&s.url, &[], None, &["keys", "new-admin-key"]);
    let stranger = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut fake = real.clone();
    let last = fake.pop().unwrap();
    fake.push(if last == 'a' { 'b' } else { 'a' });

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("src/config.py"),
        format!("# settings\nAPI_KEY = \"{real}\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("notes.md"),
        format!("example: {fake}\nold: {stranger}\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("clean.txt"), "nothing here bfk_ at all\n").unwrap();
    let root = dir.path().to_str().unwrap();

    // Offline: both real-checksum keys found (exit 1), the look-alike ignored, and
    // no key printed whole.
    let out = run_with(&s.url, &[], None, &["keys", "scan", root]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("config.py:2: issuer key"), "{t}");
    assert!(t.contains("notes.md:2: admin key"), "{t}");
    assert!(t.contains("1 look-alike"), "{t}");
    assert!(!t.contains(&real) && !t.contains(&stranger), "{t}");
    let out = run_with(
        &s.url,
        &[],
        None,
        &["keys", "scan", &format!("{root}/clean.txt")],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = run_with(
        &s.url,
        &[],
        None,
        &["keys", "scan", &format!("{root}/missing")],
    );
    assert_eq!(code(&out), 2, "{}", text(&out));
    // --revoke needs the admin key, before reading anything.
    let out = run_with(&s.url, &[], None, &["keys", "scan", "--revoke", root]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("BONAFIDE_API_KEY"), "{}", text(&out));

    let out = run_with(
        &s.url,
        &[("BONAFIDE_API_KEY", &admin)],
        None,
        &["keys", "scan", "--revoke", root, "--json"],
    );
    assert_eq!(code(&out), 1, "{}", text(&out));
    let v = json_of(&out);
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{v}");
    let by_kind = |k: &str| keys.iter().find(|r| r["kind"] == k).unwrap().clone();
    assert_eq!(by_kind("issuer")["revoke"]["revoked"], true, "{v}");
    assert_eq!(by_kind("admin")["revoke"]["revoked"], false, "{v}");
    assert_eq!(v["look_alikes"], 1);
    // The leaked key is dead at once.
    let out = run_with(
        &s.url,
        &[("BONAFIDE_API_KEY", &real)],
        None,
        &["issuer-key", "list"],
    );
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("401"), "{}", text(&out));
}

/// The code an authenticator app shows at `time_s` for the base32 `secret`.
fn app_code(secret: &str, time_s: i64) -> String {
    use bonafide_core::totp;
    let secret = totp::base32_decode(secret).unwrap();
    totp::format_code(
        totp::totp_at(&secret, time_s, 30, 6, totp::TotpAlg::Sha1),
        6,
    )
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn totp_enrolment_two_factor_login_and_security_events_as_processes() {
    let data = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &[]);
    let admin = s.admin_printed.clone().unwrap();
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("session.json");
    let env = [
        ("BONAFIDE_SESSION_FILE", file.to_str().unwrap()),
        ("BONAFIDE_PASSWORD", PASSWORD),
    ];

    let out = run_with(
        &s.url,
        &[("BONAFIDE_API_KEY", &admin)],
        None,
        &[
            "org",
            "create",
            "--name",
            "Tfa",
            "--owner-email",
            "t@example.com",
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let created = json_of(&out);
    let org = created["org_id"].as_str().unwrap().to_owned();
    let token = created["invitation"]["token"].as_str().unwrap().to_owned();
    assert_eq!(
        code(&run_with(&s.url, &env, None, &["org", "accept", &token])),
        0
    );
    assert_eq!(
        code(&run_with(
            &s.url,
            &env,
            None,
            &["login", "--email", "t@example.com"]
        )),
        0
    );

    let out = run_with(&s.url, &env, None, &["totp", "enroll", "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let secret = json_of(&out)["secret"].as_str().unwrap().to_owned();
    // A malformed code is refused locally; a wrong one by the registry (422).
    let out = run_with(&s.url, &env, None, &["totp", "confirm", "12ab56"]);
    assert_eq!(code(&out), 2);
    assert!(text(&out).contains("6 digits"), "{}", text(&out));
    let out = run_with(&s.url, &env, None, &["totp", "confirm", "000000"]);
    assert_eq!(code(&out), 2);
    assert!(text(&out).contains("422"), "{}", text(&out));
    let now = now_s();
    let out = run_with(
        &s.url,
        &env,
        None,
        &["totp", "confirm", &app_code(&secret, now)],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("Recovery codes"), "{}", text(&out));

    // Login now needs the code; the next step's code logs in with two factors.
    let out = run_with(
        &s.url,
        &env,
        None,
        &["login", "--email", "t@example.com", "--json"],
    );
    assert_eq!(code(&out), 2);
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["code"], "TWO_FACTOR_REQUIRED", "{err}");
    let out = run_with(
        &s.url,
        &env,
        None,
        &[
            "login",
            "--email",
            "t@example.com",
            "--totp",
            &app_code(&secret, now + 30),
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(json_of(&out)["two_factor"], true);

    // The owner requires it of everyone, and reads the failed login above.
    let out = run_with(&s.url, &env, None, &["org", "require-2fa", &org, "on"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        text(&out).contains("required of every member"),
        "{}",
        text(&out)
    );
    let out = run_with(
        &s.url,
        &env,
        None,
        &["org", "security-events", &org, "--json"],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    // TWO_FACTOR_REQUIRED is not a failure; the wrong confirm code is not a login.
    assert_eq!(
        json_of(&out)["events"].as_array().unwrap().len(),
        0,
        "{}",
        text(&out)
    );
    let out = run_with(
        &s.url,
        &[("BONAFIDE_PASSWORD", "wrong wrong wrong")],
        None,
        &[
            "login",
            "--email",
            "t@example.com",
            "--session-file",
            state.path().join("x.json").to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 2);
    let out = run_with(&s.url, &env, None, &["org", "security-events", &org]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains("login_failed"), "{}", text(&out));

    // Disable needs a code (refused locally without one) and the password.
    let out = run_with(&s.url, &env, None, &["totp", "disable"]);
    assert_eq!(code(&out), 2);
    let out = run_with(&s.url, &env, None, &["org", "require-2fa", &org, "off"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
}
