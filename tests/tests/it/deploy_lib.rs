//! The deploy scripts' shared shell helpers (`deploy/lib.sh`), run by bash as
//! the scripts run them.

use std::process::Command;

use crate::settings_docs::workspace_root;

/// `url_with_database URL NAME` as `deploy/up.sh` and `deploy/cluster.sh` call it.
fn url_with_database(url: &str, name: &str) -> String {
    let lib = workspace_root().join("deploy/lib.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"source "$1"; url_with_database "$2" "$3""#)
        .args(["bash", lib.to_str().unwrap(), url, name])
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// The quickstart's and the cluster's databases are made from the caller's
/// DATABASE_URL: its query (`sslmode=…`) must survive, or `sslmode=require`
/// would quietly fall back to sqlx's `prefer`.
#[test]
fn a_scripts_database_url_keeps_the_callers_user_host_and_query() {
    assert_eq!(
        url_with_database(
            "postgres://app:pw@db.example:5432/postgres?sslmode=require",
            "demo"
        ),
        "postgres://app:pw@db.example:5432/demo?sslmode=require"
    );
    assert_eq!(
        url_with_database("postgres://postgres@127.0.0.1:5432/postgres", "demo"),
        "postgres://postgres@127.0.0.1:5432/demo"
    );
    assert_eq!(
        url_with_database("postgres://u@h/db?sslmode=disable&application_name=x", "c"),
        "postgres://u@h/c?sslmode=disable&application_name=x"
    );
    // No database in the URL: the host stays (it used to be cut off).
    assert_eq!(
        url_with_database("postgres://u:p@db.example:5432", "demo"),
        "postgres://u:p@db.example:5432/demo"
    );
    assert_eq!(
        url_with_database("postgres://u@db.example?sslmode=require", "demo"),
        "postgres://u@db.example/demo?sslmode=require"
    );
}
