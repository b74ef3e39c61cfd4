//! `bonafide agent suspend` and `bonafide agent reactivate` against the real server:
//! output, what verify then says, and the exit codes of refusals.

use crate::common;

use common::{json_of, run, serve, text};

#[test]
fn suspend_and_reactivate_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let admin = s.admin_printed.clone().unwrap();
    let out = run(
        &s.url,
        Some(&admin),
        &["issuer", "create", "--name", "hold.example", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let key = json_of(&out)["api_key"].as_str().unwrap().to_owned();
    let out = run(
        &s.url,
        Some(&key),
        &[
            "agent", "register", "--name", "HoldBot", "--scope", "read:x", "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let reg = json_of(&out);
    let agent = reg["agent_id"].as_str().unwrap().to_owned();
    let token = reg["token"].as_str().unwrap().to_owned();

    // Suspend, human output: the agent, the time, the reason.
    let out = run(
        &s.url,
        Some(&key),
        &["agent", "suspend", &agent, "--reason", "odd trades"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!("suspended agent {agent} at 20")),
        "{said}"
    );
    assert!(said.contains("reason: odd trades"), "{said}");
    let out = run(&s.url, None, &["verify", &token]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("AGENT_SUSPENDED"), "{}", text(&out));
    let out = run(&s.url, Some(&key), &["agent", "list"]);
    assert!(text(&out).contains("suspended"), "{}", text(&out));

    // Again, with --json: the agent as the API shows it, the first suspension kept.
    let out = run(&s.url, Some(&key), &["agent", "suspend", &agent, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["status"], "suspended");
    assert_eq!(v["suspend_reason"], "odd trades");

    let out = run(&s.url, Some(&key), &["agent", "reactivate", &agent]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("reactivated agent {agent}")),
        "{}",
        text(&out)
    );
    let out = run(&s.url, None, &["verify", &token]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(
        &s.url,
        Some(&key),
        &["agent", "reactivate", &agent, "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_of(&out)["status"], "active");

    // Refusals exit 2 and say why. A revoked agent stays revoked.
    let out = run(&s.url, Some(&key), &["revoke", "--agent", &agent]);
    assert!(out.status.success(), "{}", text(&out));
    for args in [
        vec!["agent", "reactivate", agent.as_str()],
        vec!["agent", "suspend", agent.as_str()],
    ] {
        let out = run(&s.url, Some(&key), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("AGENT_REVOKED"), "{}", text(&out));
    }
    let out = run(&s.url, None, &["verify", &token]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("TOKEN_REVOKED"), "{}", text(&out));

    let unknown = "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa";
    for cmd in ["suspend", "reactivate"] {
        // Unknown agent: 404 from the registry.
        let out = run(&s.url, Some(&key), &["agent", cmd, unknown]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("not found"), "{}", text(&out));
        // Not an agent id: refused before any request.
        let out = run(&s.url, Some(&key), &["agent", cmd, "../../etc"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains("not a valid agent id"),
            "{}",
            text(&out)
        );
        // No key, or the wrong kind of key.
        let out = run(&s.url, None, &["agent", cmd, unknown]);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out).contains("BONAFIDE_API_KEY"), "{}", text(&out));
        let out = run(&s.url, Some(&admin), &["agent", cmd, unknown]);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out).contains("issuer key"), "{}", text(&out));
        // No agent id at all.
        let out = run(&s.url, Some(&key), &["agent", cmd]);
        assert_eq!(out.status.code(), Some(2));
    }
}
