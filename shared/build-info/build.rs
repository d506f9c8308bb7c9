//! Embeds the git commit the binaries are built from, as the compile-time
//! variable `SWITCHYARD_BUILD_COMMIT` of this crate (`GIT_COMMIT` in `lib.rs`).
//!
//! The commit is `git rev-parse --short HEAD`; without a repository (an image
//! built from a context without `.git`) it is `SWITCHYARD_GIT_COMMIT`; without
//! either, `unknown`. The script reruns when HEAD moves (the files git keeps it
//! in) or the variable changes. It lives in this leaf crate, not in `shared`,
//! so that a new commit rebuilds only the crates that print a version.

use std::{env, path::PathBuf, process::Command};

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// A short commit id: hex digits only, so it is safe inside a string literal.
fn valid(commit: &str) -> bool {
    !commit.is_empty() && commit.len() <= 40 && commit.chars().all(|c| c.is_ascii_hexdigit())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SWITCHYARD_GIT_COMMIT");

    let from_git = git(&["rev-parse", "--short", "HEAD"]).filter(|c| valid(c));
    if from_git.is_some() {
        // HEAD itself (a checkout or a detached HEAD), the branch it points at,
        // and packed refs (a ref that is not a file of its own). Only files that
        // exist: cargo reruns every time for a missing one.
        let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(git(&["rev-parse", "--git-path", &branch]));
        }
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
        for path in watched.into_iter().flatten().map(PathBuf::from) {
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let from_env = env::var("SWITCHYARD_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| valid(c));
    let commit = from_git
        .or(from_env)
        .unwrap_or_else(|| "unknown".to_owned());

    println!("cargo:rustc-env=SWITCHYARD_BUILD_COMMIT={commit}");
}
