//! Rebuilds the crate when a migration is added or changed.
//!
//! `db::MIGRATOR` embeds `migrations/` at compile time (`sqlx::migrate!`), and
//! on stable Rust Cargo reruns the macro only when a source file it knows of
//! changes: a new migration file alone left every binary and test migrating
//! to the schema of the previous build. This is the build script sqlx's
//! documentation prescribes for it (`sqlx migrate build-script`).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
