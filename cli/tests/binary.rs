//! The `switchyard` binary itself: help that reads well, and exit codes a
//! script can rely on for refusals that happen before any store is touched.

// A test crate: a helper that cannot run the binary stops the test loudly
// (clippy's `allow-expect-in-tests` covers only the `#[test]` functions).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};

fn switchyard(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the switchyard binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_top_level_help_lists_every_group_and_the_exit_codes() {
    let out = switchyard(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in [
        "migrate",
        "tenants",
        "fleet",
        "dlq",
        "recover",
        "--json",
        "Exit codes:",
        "130",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
}

#[test]
fn every_group_has_help_naming_its_commands() {
    for (group, commands) in [
        (
            "tenants",
            &[
                "add",
                "list",
                "show",
                "suspend",
                "resume",
                "set-limits",
                "set-bot",
            ][..],
        ),
        ("fleet", &["provision", "reconcile", "summary", "delete"]),
        ("dlq", &["list", "show", "replay", "purge"]),
    ] {
        let out = switchyard(&[group, "--help"], &[]);
        assert!(out.status.success(), "{group}");
        let help = text(&out.stdout);
        for c in commands {
            assert!(help.contains(c), "{group} help lacks {c}:\n{help}");
        }
    }
}

#[test]
fn an_invalid_tenant_id_exits_2_with_a_message_naming_the_problem() {
    let out = switchyard(&["tenants", "suspend", "acme.*"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("'.'") && err.contains("tenant id"), "{err}");
}

#[test]
fn fleet_delete_without_a_terminal_or_yes_is_refused_before_anything_is_called() {
    // No DATABASE_URL or WA_API_KEY needed: the refusal comes first.
    let out = switchyard(&["fleet", "delete", "acme"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--yes"), "{}", text(&out.stderr));
}

#[test]
fn a_database_password_never_appears_in_an_error() {
    let out = switchyard(
        &["tenants", "list"],
        &[
            (
                "DATABASE_URL",
                "postgres://ops:hunter2secret@127.0.0.1:1/switchyard",
            ),
            ("SWITCHYARD_DB_ACQUIRE_TIMEOUT", "1s"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let all = text(&out.stderr) + &text(&out.stdout);
    assert!(!all.is_empty());
    assert!(!all.contains("hunter2secret"), "{all}");
}

#[test]
fn a_missing_api_key_is_named_without_any_secret() {
    let out = switchyard(
        &["fleet", "summary"],
        &[("DATABASE_URL", "postgres://ops:hunter2secret@127.0.0.1:1/x")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("WA_API_KEY") && !err.contains("hunter2secret"),
        "{err}"
    );
}

#[test]
fn version_prints_the_crate_version_and_the_git_commit() {
    let out = switchyard(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!(
            "switchyard {} (commit {})",
            env!("CARGO_PKG_VERSION"),
            switchyard_build_info::GIT_COMMIT
        )
    );
}
