//! The version line of every Switchyard binary: the crate's version and the
//! git commit it was built from, e.g. `0.1.0 (commit 1a2b3c4)`.
//!
//! A binary calls [`version!`] in its own crate, so the version is that
//! crate's (`CARGO_PKG_VERSION` of the caller); the commit comes from this
//! crate's build script (see `build.rs`). The result is a `&'static str`,
//! usable as clap's `#[command(version = …)]`.

use std::sync::OnceLock;

/// The git commit of this build (`unknown` when it could not be found).
pub const GIT_COMMIT: &str = env!("SWITCHYARD_BUILD_COMMIT");

/// `"<crate version> (commit <sha>)"` for the crate that calls it.
#[macro_export]
macro_rules! version {
    () => {
        $crate::version_line(env!("CARGO_PKG_VERSION"))
    };
}

/// The version line for `crate_version`; use [`version!`]. Built once per
/// process (a process is one binary, with one version).
pub fn version_line(crate_version: &'static str) -> &'static str {
    static LINE: OnceLock<String> = OnceLock::new();
    LINE.get_or_init(|| format!("{crate_version} (commit {GIT_COMMIT})"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_line_names_the_version_and_a_commit() {
        let line = crate::version!();
        assert!(
            line.starts_with(concat!(env!("CARGO_PKG_VERSION"), " (commit ")),
            "{line}"
        );
        let commit = crate::GIT_COMMIT;
        assert!(
            commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{commit}"
        );
        assert!(line.ends_with(&format!("{commit})")), "{line}");
    }
}
