//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds the SQL files
//! at compile time, and stable Rust cannot track them from inside the macro.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
