//! Printing that a closed or failing stdout cannot turn into a panic.
//!
//! `println!` panics when stdout fails, and Rust ignores SIGPIPE, so
//! `bonafide agent list --json | head -1` would end in a panic and exit 101. Every
//! `println!`/`print!` of this crate goes through [`write`] instead (the macros in
//! `main.rs` shadow std's): a reader that went away (broken pipe) silences the rest of
//! the output and the command ends with its own exit code; any other write error (a
//! full disk behind `> file`) is remembered and turns the exit code into 2.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write found nobody reading: later output is dropped.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// The first write error other than a broken pipe.
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Writes formatted output to stdout; never panics.
pub fn write(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        note(&e);
    }
}

/// Writes bytes to stdout (generated completions and man pages); never panics.
pub fn write_bytes(bytes: &[u8]) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        note(&e);
    }
}

/// Writes formatted output to stderr; its errors are dropped, there is nowhere left
/// to report them.
pub fn write_err(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

fn note(e: &std::io::Error) {
    CLOSED.store(true, Ordering::Relaxed);
    if e.kind() != std::io::ErrorKind::BrokenPipe
        && let Ok(mut failed) = FAILED.lock()
    {
        failed.get_or_insert_with(|| e.to_string());
    }
}

/// Flushes stdout and returns the write error that should fail the command, if any
/// (a broken pipe is not one: the reader had what it wanted).
pub fn finish() -> Option<String> {
    if !CLOSED.load(Ordering::Relaxed)
        && let Err(e) = std::io::stdout().lock().flush()
    {
        note(&e);
    }
    FAILED.lock().ok().and_then(|mut f| f.take())
}
