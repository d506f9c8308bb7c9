//! `switchyard migrate --check [--wait]`: what the workers' init containers
//! run so that they start only once the migration job has brought the schema
//! up to date (deploy/k8s). It reads only, and tells pending from current.

use std::time::Duration;

use crate::cli_support::{run, vars};
use sqlx::PgPool;
use switchyard_cli::exit::Exit;
use switchyard_tests::services;

#[sqlx::test(migrations = false)]
async fn check_reports_pending_migrations_and_waits_until_they_are_applied(pool: PgPool) {
    let env = vars(&services::database_url(&pool), None, None);

    let (exit, text) = run(&["migrate", "--check"], &env).await;
    assert_eq!(
        exit,
        Exit::Drift,
        "an empty database is not current: {text}"
    );
    assert!(text.contains("pending"), "{text}");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 0, "--check must not change the schema");

    // An init container waiting while the migration job runs.
    let waiting = tokio::spawn({
        let env = env.clone();
        async move { run(&["migrate", "--check", "--wait", "60s"], &env).await }
    });
    // An observation window, not synchronisation: nothing may end the wait
    // while migrations are pending, so it must still be running after it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "--wait must keep waiting while migrations are pending"
    );
    let (exit, text) = run(&["migrate"], &env).await;
    assert_eq!(exit, Exit::Ok, "{text}");
    let (exit, text) = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the waiting check ends once the schema is current")
        .unwrap();
    assert_eq!(exit, Exit::Ok, "{text}");
    assert!(text.contains("current"), "{text}");

    let (exit, _) = run(&["migrate", "--check"], &env).await;
    assert_eq!(exit, Exit::Ok);
}

#[tokio::test]
async fn check_against_an_unreachable_database_fails_after_its_wait() {
    let env = vars("postgres://postgres@127.0.0.1:1/none", None, None);
    let started = std::time::Instant::now();
    let (exit, _) = run(&["migrate", "--check", "--wait", "1s"], &env).await;
    assert_eq!(exit, Exit::Failure);
    assert!(started.elapsed() < Duration::from_secs(20));
}
