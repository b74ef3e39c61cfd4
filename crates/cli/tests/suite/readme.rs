//! The README's "A first session" block, run as written against a real registry:
//! the block between `<!-- first-session:start -->` and `<!-- first-session:end -->`
//! goes to `bash -euo pipefail` with `bonafide` on `PATH`, in a directory whose
//! `bonafide-data` a real `bonafide serve` uses. Every command must succeed (the
//! lines that show a refusal say `|| echo "exit $?"`), and what the README's comments
//! say they print must be printed.

use std::path::Path;
use std::process::Command;

use crate::common::{BIN, serve};

/// The first-session shell block of the README.
fn first_session() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let start = readme
        .find("<!-- first-session:start -->")
        .expect("the README marks its first session");
    let rest = &readme[start..];
    let end = rest
        .find("<!-- first-session:end -->")
        .expect("the first session's end marker");
    let block = &rest[..end];
    let open = block.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let close = block.rfind("```").expect("the block's closing fence");
    block[open..close].to_owned()
}

#[test]
fn the_readme_first_session_runs_as_written() {
    let script = first_session();
    let work = tempfile::tempdir().unwrap();
    let served = serve(&work.path().join("bonafide-data"), &[]);
    let bin_dir = work.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(BIN, bin_dir.join("bonafide")).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(work.path())
        .env_clear()
        .env("PATH", path)
        .env("HOME", work.path())
        .env("XDG_STATE_HOME", work.path().join("state"))
        .env("BONAFIDE_URL", &served.url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the first session stopped ({:?})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // What the comments promise, in order of appearance.
    let promised = [
        "PortfolioBot",
        "VALID, ALLOWED",
        "VALID, NOT ALLOWED",
        "SCOPE_NOT_GRANTED",
        "exit 1",
        "revocation checked: yes (list age",
        "AGENT_SUSPENDED",
        "TOKEN_REVOKED",
        "VALID, ALLOWED",
        "TOKEN_REVOKED",
        "VALID    pol.v0.2",
        "VALID, ALLOWED (simulated",
        "VALID, NOT ALLOWED (simulated",
        "LIMIT_PER_TXN",
    ];
    let mut from = 0;
    for p in promised {
        match stdout[from..].find(p) {
            Some(i) => from += i + p.len(),
            None => {
                panic!("`{p}` not printed (in order)\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
            }
        }
    }
    // Nothing the session printed is an error.
    assert!(!stderr.contains("error:"), "{stderr}");
    // The files it made are what it said.
    let entry = std::fs::read_to_string(work.path().join("e3.json")).unwrap();
    assert!(entry.starts_with('{'), "{entry}");
    let proof = std::fs::read_to_string(work.path().join("e3.tlog-proof")).unwrap();
    assert!(proof.starts_with("c2sp.org/tlog-proof@v1"), "{proof}");
}
