//! What a user expects next to a CLI, as a process: shell completions, the man page,
//! a closed stdout that ends quietly, logs without colour codes off a terminal, and
//! progress lines only on a terminal.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common;

use common::{BIN, json_of, run, serve};

fn bonafide(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("BONAFIDE_URL")
        .env_remove("BONAFIDE_API_KEY")
        .output()
        .expect("run bonafide")
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn completions_for_each_shell_name_the_real_subcommands() {
    for (shell, marker) in [
        ("bash", "_bonafide()"),
        ("zsh", "#compdef bonafide"),
        ("fish", "complete -c bonafide"),
    ] {
        let out = bonafide(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr_of(&out));
        let script = stdout_of(&out);
        assert!(script.contains(marker), "{shell} script lacks `{marker}`");
        for sub in ["serve", "agent", "register", "issuer-key", "audit", "man"] {
            assert!(script.contains(sub), "{shell} script does not know `{sub}`");
        }
        // Options of a nested subcommand, not only the top level.
        assert!(
            script.contains("allow-bearer-tokens"),
            "{shell}: nested flags"
        );
    }
}

#[test]
fn the_bash_completion_script_is_valid_bash() {
    let out = bonafide(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bonafide.bash");
    std::fs::write(&file, &out.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash");
    assert!(check.status.success(), "{}", stderr_of(&check));
}

#[test]
fn an_unknown_or_missing_shell_exits_2_and_names_the_shells() {
    let out = bonafide(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = stderr_of(&out);
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
    for shell in ["bash", "zsh", "fish"] {
        assert!(err.contains(shell), "the message lists {shell}: {err}");
    }
    let out = bonafide(&["completions"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("<SHELL>"), "{}", stderr_of(&out));
}

#[test]
fn the_man_page_is_roff_naming_the_commands() {
    let out = bonafide(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let page = stdout_of(&out);
    assert!(page.contains("\n.TH bonafide 1"), "{page}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "no `{section}`");
    }
    // roff escapes `-` in names; each subcommand has its own entry.
    for sub in [
        "serve",
        "agent",
        "issuer\\-key",
        "audit",
        "completions",
        "man",
    ] {
        assert!(
            page.contains(&format!("bonafide\\-{sub}(1)")),
            "the page does not name `{sub}`"
        );
    }
    assert!(
        page.contains("\\fB\\-\\-url\\fR"),
        "global options are documented"
    );
    // Every line is text or a roff request/macro: nothing else slipped in.
    for line in page.lines() {
        assert!(
            !line.contains('\u{1b}'),
            "a terminal escape in the roff: {line}"
        );
    }
    // Where groff is installed, it reads the page without a warning.
    if let Ok(mut groff) = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        groff
            .stdin
            .take()
            .unwrap()
            .write_all(page.as_bytes())
            .unwrap();
        let checked = groff.wait_with_output().unwrap();
        assert!(checked.status.success());
        assert_eq!(stderr_of(&checked), "", "groff warns about the page");
    }
}

#[test]
fn man_out_writes_one_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let out = bonafide(&["man", "--out", pages.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(
        stdout_of(&out).trim(),
        pages.join("bonafide.1").to_str().unwrap()
    );
    for page in [
        "bonafide.1",
        "bonafide-serve.1",
        "bonafide-agent-register.1",
        "bonafide-audit-verify.1",
        "bonafide-completions.1",
    ] {
        let text =
            std::fs::read_to_string(pages.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH "), "{page} is not a man page");
    }
    let register = std::fs::read_to_string(pages.join("bonafide-agent-register.1")).unwrap();
    assert!(register.contains("allow\\-bearer\\-tokens"), "{register}");
}

#[test]
fn man_out_into_a_file_exits_2_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = bonafide(&["man", "--out", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.contains("cannot create") && err.contains("not-a-dir"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Runs `bonafide ARGS` with a stdout nobody reads: the reading end of its pipe is
/// closed before the process starts, so its first write fails with EPIPE.
fn with_closed_stdout(url: Option<&str>, key: Option<&str>, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut cmd = Command::new(BIN);
    if let Some(url) = url {
        cmd.args(["--url", url]);
    }
    cmd.args(args)
        .env_remove("BONAFIDE_URL")
        .stdout(writer)
        .stderr(Stdio::piped());
    match key {
        Some(k) => cmd.env("BONAFIDE_API_KEY", k),
        None => cmd.env_remove("BONAFIDE_API_KEY"),
    };
    cmd.output().expect("run bonafide")
}

fn assert_quiet(out: &Output, code: i32, what: &str) {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what} panicked: {err}");
    assert!(!err.contains("Broken pipe"), "{what} complained: {err}");
}

#[test]
fn a_closed_stdout_ends_quietly_with_the_commands_own_code() {
    for args in [
        &["completions", "bash"][..],
        &["man"],
        &["keys", "new-admin-key"],
        &["--help"],
        &["agent", "register", "--help"],
    ] {
        let out = with_closed_stdout(None, None, args);
        assert_quiet(&out, 0, &args.join(" "));
    }
}

#[test]
fn a_reader_that_stops_after_the_first_line_ends_the_command_quietly() {
    let mut child = Command::new(BIN)
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert!(!first.is_empty());
    drop(lines);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn agent_list_json_into_a_closed_pipe_ends_quietly_and_verify_keeps_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]);
    let admin = server.admin_printed.clone().expect("admin key");
    let issuer = json_of(&run(
        &server.url,
        Some(&admin),
        &["issuer", "create", "--name", "pipe.example", "--json"],
    ));
    let key = issuer["api_key"].as_str().expect("issuer key").to_owned();
    for n in 0..3 {
        let out = run(
            &server.url,
            Some(&key),
            &[
                "agent",
                "register",
                "--name",
                &format!("bot{n}"),
                "--scope",
                "read:x",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    }
    // What `bonafide agent list --json | head -1` would see once head has exited.
    let out = with_closed_stdout(Some(&server.url), Some(&key), &["agent", "list", "--json"]);
    assert_quiet(&out, 0, "agent list --json");
    let out = with_closed_stdout(Some(&server.url), Some(&key), &["agent", "list"]);
    assert_quiet(&out, 0, "agent list");
    // The exit code is the command's own: a token that is not valid stays 1.
    let out = with_closed_stdout(Some(&server.url), None, &["verify", "not-a-token"]);
    assert_quiet(&out, 1, "verify");
}

/// Other write errors are errors: a full disk behind `> file` exits 2 and says so.
#[cfg(target_os = "linux")]
#[test]
fn a_stdout_that_cannot_be_written_exits_2() {
    for args in [&["completions", "bash"][..], &["keys", "new-admin-key"]] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let out = Command::new(BIN).args(args).stdout(full).output().unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("cannot write the output"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn text_logs_have_no_colour_codes_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "text"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--signing-alg", "EdDSA"])
        .env_remove("BONAFIDE_ADMIN_KEY")
        .env_remove("BONAFIDE_PUBLIC_URL")
        // Colour must be off because stderr is a pipe, not because of NO_COLOR.
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("bonafide listening on") {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        log.push_str(&line);
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    log.push_str(&rest);
    // The text format, not JSON: a level word at the start of an event line.
    assert!(
        log.lines()
            .any(|l| l.contains(" INFO ") && l.contains("bonafide listening")),
        "{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );
}

/// A registry that answers each request after `delay`, with a 404 HTML page.
fn slow_registry(delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                std::thread::sleep(delay);
                let body = "<html>not here</html>";
                let _ = write!(
                    stream,
                    "HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn no_progress_output_when_stderr_is_not_a_terminal() {
    let url = slow_registry(Duration::from_millis(2500));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let out = Command::new(BIN)
        .args(["--url", &url, "audit", "verify", "--state"])
        .arg(&state)
        .env_remove("BONAFIDE_API_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(err.starts_with("error: "), "{err:?}");
    assert!(!err.contains("asking the registry"), "{err:?}");
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
}

/// The same slow step on a terminal (a pty made by util-linux `script`) shows what it
/// is waiting for.
#[cfg(target_os = "linux")]
#[test]
fn a_slow_step_shows_progress_on_a_terminal() {
    let url = slow_registry(Duration::from_millis(2500));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let command = format!(
        "'{BIN}' --url {url} audit verify --state '{}'",
        state.display()
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env_remove("BONAFIDE_API_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("util-linux `script` runs the command on a pseudo-terminal");
    let seen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{seen}");
    assert!(
        seen.contains("asking the registry for its log key ("),
        "no progress line on a terminal: {seen:?}"
    );
    // Erased before the error is printed.
    assert!(seen.contains("\r\u{1b}[2Kerror: "), "{seen:?}");
}
