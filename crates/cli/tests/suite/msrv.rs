//! The workspace's `rust-version` is the one its locked dependencies need: no package
//! in Cargo.lock declares a newer `rust-version` than the workspace does, and the
//! README states the same version. The declarations are read from the registry
//! sources Cargo unpacked for this build (`$CARGO_HOME/registry/src/*/NAME-VERSION`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// "1.94" or "1.94.0" as comparable numbers.
fn version(text: &str) -> Vec<u64> {
    let mut parts: Vec<u64> = text
        .split('.')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("not a Rust version: {text:?}"))
        })
        .collect();
    parts.resize(3, 0);
    parts
}

/// The quoted value of `key = "…"` in a `[package]` table, the layout of Cargo.toml
/// files as Cargo publishes them (normalised: no `workspace = true` left).
fn package_value(manifest: &str, key: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(rest) = line.strip_prefix(key) {
            let rest = rest.trim_start();
            if let Some(value) = rest.strip_prefix('=') {
                return Some(value.trim().trim_matches('"').to_owned());
            }
        }
    }
    None
}

/// (name, version) of every crates.io package in Cargo.lock.
fn locked_registry_packages() -> Vec<(String, String)> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let mut out = Vec::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |k: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(k)
                    .and_then(|r| r.trim_start().strip_prefix('='))
                    .map(|v| v.trim().trim_matches('"').to_owned())
            })
        };
        if field("source").is_some_and(|s| s.starts_with("registry+")) {
            out.push((field("name").unwrap(), field("version").unwrap()));
        }
    }
    out
}

fn registry_src_dirs() -> Vec<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let Ok(entries) = std::fs::read_dir(cargo_home.join("registry/src")) else {
        return Vec::new();
    };
    entries.filter_map(|e| e.ok().map(|e| e.path())).collect()
}

#[test]
fn no_locked_dependency_needs_a_newer_rust_than_rust_version() {
    let workspace = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let ours = workspace
        .lines()
        .find_map(|l| {
            l.strip_prefix("rust-version")
                .and_then(|r| r.trim_start().strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_owned())
        })
        .expect("rust-version in [workspace.package]");

    let srcs = registry_src_dirs();
    let mut checked = 0;
    let mut too_new = Vec::new();
    for (name, ver) in locked_registry_packages() {
        // Packages for other platforms are never unpacked; those are not built here.
        let Some(manifest) = srcs
            .iter()
            .map(|d| d.join(format!("{name}-{ver}/Cargo.toml")))
            .find_map(|p| std::fs::read_to_string(p).ok())
        else {
            continue;
        };
        checked += 1;
        if let Some(needs) = package_value(&manifest, "rust-version")
            && version(&needs) > version(&ours)
        {
            too_new.push(format!("{name} {ver} needs Rust {needs}"));
        }
    }
    // Nothing found means nothing was checked, which must not pass as a success.
    assert!(
        checked > 0,
        "no registry sources found under {srcs:?}: build the workspace first"
    );
    assert!(
        too_new.is_empty(),
        "the workspace declares rust-version {ours}, but: {}",
        too_new.join("; ")
    );

    // The README's set-up names the same version.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("{ours} or newer")),
        "README set-up does not say Rust {ours} or newer"
    );
}

#[test]
fn versions_compare_numerically() {
    assert!(version("1.94") > version("1.88.0"));
    assert!(version("1.100") > version("1.94"));
    assert_eq!(version("1.94"), version("1.94.0"));
    assert_eq!(
        package_value(
            "[package]\nname = \"a\"\nrust-version = \"1.94\"\n[dependencies]\nrust-version = \"9\"\n",
            "rust-version"
        ),
        Some("1.94".to_owned())
    );
    assert_eq!(
        package_value("[lib]\nrust-version = \"9\"\n", "rust-version"),
        None
    );
}
