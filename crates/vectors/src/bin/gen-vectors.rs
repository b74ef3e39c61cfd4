//! `cargo run -p bonafide-vectors --bin gen-vectors`: writes the conformance vectors
//! under `conformance/` (`--check`: writes nothing, fails if any file differs).

use std::process::ExitCode;

fn main() -> anyhow::Result<ExitCode> {
    let check = std::env::args().any(|a| a == "--check");
    let dir = bonafide_vectors::repo_root().join("conformance");
    let mut stale = Vec::new();
    for file in bonafide_vectors::generate()? {
        let path = dir.join(&file.path);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(file.text.as_str()) {
            continue;
        }
        if check {
            stale.push(file.path);
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &file.text)?;
        println!("wrote conformance/{}", file.path);
    }
    if !stale.is_empty() {
        eprintln!(
            "stale vectors (run `cargo run -p bonafide-vectors --bin gen-vectors`): {}",
            stale.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
