//! The OpenAPI document against the real server, by an outside property-based fuzzer:
//! Schemathesis reads `/openapi.json`, generates requests for every operation (valid
//! ones, and the edge and invalid ones its coverage phase derives from the schema),
//! and checks every answer: never a 5xx, a status the document lists for the
//! operation, the content type it names, a body its schema accepts. Once per kind of
//! caller: admin, issuer, receiver (each with its key in `Authorization: Bearer …`)
//! and anonymous (no key; Schemathesis then also makes up keys of its own).
//!
//! Schemathesis is pinned in `interop/python/requirements.txt` and installed into
//! `.interop/venv` by `scripts/interop-setup.sh` (the README's test command runs it).
//! Without it this test fails and says how to install it.
//!
//! `BONAFIDE_FUZZ_SEED` picks the seed (a fixed one by default, so a run repeats),
//! `BONAFIDE_FUZZ_EXAMPLES` the number of examples per operation (default 20);
//! `BONAFIDE_FUZZ_PHASES` the phases (default `examples,coverage,fuzzing`; see
//! below for `stateful`);
//! `BONAFIDE_FUZZ_VERBOSE=1` prints every report (with `--nocapture`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use reqwest::StatusCode;
use serde_json::json;

use crate::common;

/// The checks, all of which must pass.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

fn schemathesis() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let program = std::env::var_os("BONAFIDE_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".interop/venv/bin/schemathesis"));
    assert!(
        program.exists(),
        "the schema fuzzer (Schemathesis) is not installed at {}: run `bash scripts/interop-setup.sh` \
         (it installs the pinned interop/python/requirements.txt into .interop/venv; the README's \
         test command runs it), or point BONAFIDE_SCHEMATHESIS at a `schemathesis` executable",
        program.display()
    );
    program
}

/// Real values the fuzzer sends half of the time for the parameters and members that
/// name something (ids, tokens), so requests get past "not found" to the checks
/// behind it; the other half it makes up.
struct Known {
    ids: Vec<String>,
    tokens: Vec<String>,
}

impl Known {
    /// `schemathesis.toml` binding the known values to the parameters they fit.
    fn config(&self) -> String {
        let list = |v: &[String]| serde_json::to_string(v).unwrap();
        let mut toml = format!(
            "[dictionaries.ids]\nvalues = {}\n\n[dictionaries.tokens]\nvalues = {}\n\n[parameters]\n",
            list(&self.ids),
            list(&self.tokens)
        );
        for (key, dictionary) in [
            ("path.id", "ids"),
            ("body.agent_id", "ids"),
            ("body.jti", "ids"),
            ("path.token", "tokens"),
            ("body.token", "tokens"),
            ("body.subject_token", "tokens"),
            ("body.actor_token", "tokens"),
        ] {
            toml.push_str(&format!(
                "\"{key}\" = {{ dictionary = \"{dictionary}\", probability = 0.5 }}\n"
            ));
        }
        toml
    }
}

/// One Schemathesis run as `role`: its report, and whether every check passed.
async fn fuzz(
    program: &Path,
    base: &str,
    known: &Known,
    role: &str,
    key: Option<&str>,
) -> (bool, String) {
    let seed = std::env::var("BONAFIDE_FUZZ_SEED").unwrap_or_else(|_| "20260101".to_owned());
    let examples = std::env::var("BONAFIDE_FUZZ_EXAMPLES").unwrap_or_else(|_| "20".to_owned());
    let dir = tempfile::tempdir().unwrap();
    // Read from the working directory.
    std::fs::write(dir.path().join("schemathesis.toml"), known.config()).unwrap();
    let mut cmd = tokio::process::Command::new(program);
    cmd.current_dir(dir.path())
        .env("NO_COLOR", "1")
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--checks", CHECKS])
        // Each operation on its own. Not the stateful phase by default: after the
        // others, Schemathesis 4.32.5 infers a link from the discovery document to
        // `POST /v1/issuer/keys/{kid}/revoke` with a parameter `id` that operation
        // does not have, and refuses its own link as invalid. Alone
        // (BONAFIDE_FUZZ_PHASES=stateful) it runs and passes.
        .args([
            "--phases",
            &std::env::var("BONAFIDE_FUZZ_PHASES")
                .unwrap_or_else(|_| "examples,coverage,fuzzing".to_owned()),
        ])
        .args(["--max-examples", &examples])
        .args(["--seed", &seed])
        // One worker: with several, CPython 3.11's parser (Hypothesis describes its
        // strategies with `ast.parse`) fails now and then across threads.
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .args(["--generation-database", "none"])
        .args(["--no-color", "--output-truncate", "false"]);
    if let Some(key) = key {
        // The key under test, not keys Schemathesis makes up (`X-API-Key` is read
        // before `Authorization`, so a made-up one would hide it).
        cmd.args(["-H", &format!("Authorization: Bearer {key}")])
            .args(["--generation-with-security-parameters", "false"]);
    }
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let report = format!(
        "== schemathesis as {role} (exit {:?})\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_its_openapi_contract_under_a_schema_fuzzer() {
    let program = schemathesis();
    // The status-list publisher on (as served): the fuzzer reads the lists too.
    let h = common::start_with_config(bonafide_server::Config::default()).await;
    let issuer = h.issuer("fuzz.example").await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "api.fuzz.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let receiver = v["api_key"].as_str().unwrap().to_owned();
    // Something to find: agents with tokens, so lists and the audit log are not
    // empty, and known ids and tokens for the fuzzer to use.
    let mut known = Known {
        ids: vec![v["receiver_id"].as_str().unwrap().to_owned()],
        tokens: Vec::new(),
    };
    for body in [
        json!({"name": "FuzzBot", "scopes": ["read:portfolio"], "audience": "api.fuzz.example"}),
        json!({"name": "OpenBot", "scopes": ["read:email", "browse:web"]}),
    ] {
        let reg = h.register(&issuer, body).await;
        let text = |member: &str| reg[member].as_str().unwrap().to_owned();
        known.ids.extend([text("agent_id"), text("jti")]);
        known.tokens.push(text("token"));
    }

    // The tokens' list is published within a round; until then it is a 503 the
    // fuzzer would take for a server error.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while h
        .http
        .get(format!("{}/v1/status-lists/1", h.base))
        .send()
        .await
        .unwrap()
        .status()
        != StatusCode::OK
    {
        assert!(
            Instant::now() < deadline,
            "the status list was never published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let started = Instant::now();
    let mut failed = Vec::new();
    let mut reports = String::new();
    for (role, key) in [
        ("anonymous", None),
        ("receiver", Some(receiver.as_str())),
        ("issuer", Some(issuer.as_str())),
        ("admin", Some(h.admin.as_str())),
    ] {
        let (ok, report) = fuzz(&program, &h.base, &known, role, key).await;
        if !ok {
            failed.push(role);
        }
        // Shown with `--nocapture`: the whole report with BONAFIDE_FUZZ_VERBOSE=1, else
        // what was run.
        if std::env::var_os("BONAFIDE_FUZZ_VERBOSE").is_some() {
            eprintln!("{report}");
        } else if let Some(summary) = report.find("SUMMARY") {
            eprintln!("== schemathesis as {role}: {}", &report[summary..]);
        }
        reports.push_str(&report);
    }
    let took = started.elapsed();
    assert!(
        failed.is_empty(),
        "the schema fuzzer found answers that break the OpenAPI contract as {failed:?} \
         (in {took:?}):\n{reports}"
    );
    eprintln!("schema fuzz: every role passed in {took:?}");
}
