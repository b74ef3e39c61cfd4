//! AIM's Python SDK (aim-sdk 2.0.3 from PyPI, unchanged, pinned in
//! `interop/python/requirements.txt` and installed by `scripts/interop-setup.sh`)
//! against the real `bonafide serve`: `bonafide aim-credentials` makes the agent and
//! writes the SDK's credentials file, then `interop/python/aim_sdk_agent.py` calls
//! `secure(name)` and two `@perform_action` functions: the granted one runs, the
//! other raises without running; once the agent is revoked the granted one is
//! refused too; every decision is in the audit log (read through the audit API).
//! And `aim-credentials`' refusals: no key, a key of the wrong kind, an existing
//! file, an unreachable registry (no file left behind by any).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bonafide_core::audit::{AuditEntry, Decision, EventType};
use common::{BIN, json_of, run, serve, text};
use serde_json::Value;

/// Nothing listens here.
const CLOSED: &str = "http://127.0.0.1:1";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    let python = std::env::var_os("BONAFIDE_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".interop/venv/bin/python"));
    assert!(
        python.exists(),
        "no interop virtualenv at {}: run `bash scripts/interop-setup.sh` first",
        python.display()
    );
    python
}

fn create(url: &str, admin: &str, what: &str, name: &str) -> String {
    let out = run(
        url,
        Some(admin),
        &[what, "create", "--name", name, "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    json_of(&out)["api_key"].as_str().unwrap().to_owned()
}

/// `bonafide aim-credentials --name NAME --scope orders:read` with `HOME` = `home`.
fn aim_credentials(url: &str, key: Option<&str>, home: &Path, name: &str) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--url")
        .arg(url)
        .args([
            "aim-credentials",
            "--name",
            name,
            "--scope",
            "orders:read",
            "--json",
        ])
        .env_remove("BONAFIDE_URL")
        .env("HOME", home);
    match key {
        Some(k) => cmd.env("BONAFIDE_API_KEY", k),
        None => cmd.env_remove("BONAFIDE_API_KEY"),
    };
    cmd.output().expect("run bonafide")
}

/// The SDK agent script, with `HOME` (where the SDK reads its credentials) and its
/// working directory in `home`: its `RESULT` line.
fn sdk_agent(home: &Path, name: &str, phase: &str) -> Value {
    let out = Command::new(python())
        .arg(repo().join("interop/python/aim_sdk_agent.py"))
        .args([name, phase])
        .env("HOME", home)
        .env_remove("AIM_STRICT_MODE")
        .current_dir(home)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line: {all}"));
    serde_json::from_str(line).unwrap()
}

/// The first 100 audit entries the issuer may read in full, with their indexes.
fn audit_entries(url: &str, issuer: &str) -> Vec<(u64, AuditEntry)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body: Value = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{url}/v1/audit/entries?start=0"))
            .header("X-API-Key", issuer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    body["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .filter_map(|e| {
            let text = e["entry"].as_str()?;
            Some((
                e["index"].as_u64().unwrap(),
                AuditEntry::from_canonical(text.as_bytes()).unwrap(),
            ))
        })
        .collect()
}

#[test]
fn aim_sdk_agents_run_only_what_their_issuer_granted_and_every_decision_is_audited() {
    let data = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &[]);
    let admin = s.admin_printed.clone().unwrap();
    let issuer = create(&s.url, &admin, "issuer", "shop.example");

    let out = aim_credentials(&s.url, Some(&issuer), home.path(), "order-bot");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let agent_id = json_of(&out)["agent_id"].as_str().unwrap().to_owned();
    let file = home.path().join(".aim/agents/order-bot.json");
    let creds: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(creds["agent_id"], agent_id.as_str());
    assert_eq!(creds["aim_url"], s.url.trim_end_matches('/'));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let before = sdk_agent(home.path(), "order-bot", "before");
    assert_eq!(before["agent_id"], agent_id.as_str(), "{before}");
    assert_eq!(before["read"]["returned"], "3 orders", "{before}");
    assert_eq!(before["refund"]["raised"], "ActionDeniedError", "{before}");
    // The denied body never ran.
    assert_eq!(
        before["ran"],
        serde_json::json!(["orders:read"]),
        "{before}"
    );
    // The SDK's reports after each call were taken (200), not 404s it swallows.
    let reports = before["reports"].as_array().unwrap();
    assert!(reports.iter().any(|r| r[0] == "result"), "{before}");
    assert!(reports.iter().all(|r| r[1] == 200), "{before}");

    let out = run(&s.url, Some(&issuer), &["revoke", "--agent", &agent_id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = sdk_agent(home.path(), "order-bot", "after");
    assert_eq!(after["read"]["raised"], "ActionDeniedError", "{after}");
    assert!(
        after["read"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{after}"
    );
    assert_eq!(after["ran"], serde_json::json!([]), "{after}");

    // Each of the three decisions is one `verify` entry of this agent, in order.
    let decisions: Vec<(Option<Decision>, Option<String>, Vec<String>)> =
        audit_entries(&s.url, &issuer)
            .into_iter()
            .filter(|(_, e)| {
                e.event == EventType::Verify && e.agent.as_deref() == Some(agent_id.as_str())
            })
            .map(|(_, e)| (e.decision, e.target, e.reasons))
            .collect();
    let entry = |d: Decision, target: &str, reasons: &[&str]| {
        (
            Some(d),
            Some(target.to_owned()),
            reasons.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        decisions,
        vec![
            entry(Decision::Allow, "orders:read", &[]),
            entry(Decision::Deny, "orders:refund", &["SCOPE_NOT_GRANTED"]),
            entry(Decision::Deny, "orders:read", &["AGENT_REVOKED"]),
        ]
    );
}

#[test]
fn aim_credentials_refusals_leave_no_file() {
    let data = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &[]);
    let admin = s.admin_printed.clone().unwrap();
    let issuer = create(&s.url, &admin, "issuer", "shop.example");
    let file = home.path().join(".aim/agents/bot.json");

    let refused = |out: &Output, says: &str| {
        assert_eq!(out.status.code(), Some(2), "{}", text(out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "expected `{says}` in: {err}");
    };
    // No key, a key of the wrong kind, a registry that does not answer.
    refused(
        &aim_credentials(&s.url, None, home.path(), "bot"),
        "BONAFIDE_API_KEY",
    );
    refused(
        &aim_credentials(&s.url, Some(&admin), home.path(), "bot"),
        "needs an issuer key",
    );
    refused(
        &aim_credentials(CLOSED, Some(&issuer), home.path(), "bot"),
        "reach",
    );
    assert!(!file.exists());

    // A file already there is never overwritten, and nothing is registered for it.
    let first = aim_credentials(&s.url, Some(&issuer), home.path(), "bot");
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let written = std::fs::read(&file).unwrap();
    refused(
        &aim_credentials(&s.url, Some(&issuer), home.path(), "bot"),
        "already exists",
    );
    assert_eq!(std::fs::read(&file).unwrap(), written);
    let agents = json_of(&run(&s.url, Some(&issuer), &["agent", "list", "--json"]));
    let count = agents
        .as_array()
        .or_else(|| agents["agents"].as_array())
        .map_or(0, Vec::len);
    assert_eq!(count, 1, "{agents}");
}
