//! `switchyard contacts`: records added one by one or from a CSV land in the
//! tenant's own rows with their phones normalised; a re-import adds nothing;
//! a bad line refuses the whole file (exit 2, nothing stored); removal is by
//! id within the tenant only.

use crate::cli_support::{add_tenant, run, run_json, t, vars};
use sqlx::PgPool;
use switchyard_cli::exit::Exit;
use switchyard_shared::{contacts, tenants::BotKind};
use switchyard_tests::services;

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn contacts_are_added_imported_listed_and_removed_within_their_tenant(pool: PgPool) {
    add_tenant(&pool, "acme", BotKind::Rules, serde_json::json!({})).await;
    add_tenant(&pool, "other", BotKind::Rules, serde_json::json!({})).await;
    let env = vars(&services::database_url(&pool), None, None);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("contacts.csv");
    std::fs::write(
        &file,
        "role,phone,resource,name\n\
         customer,+1 555-000 1234,A-1,Ann\n\
         customer,15550001234@s.whatsapp.net,A-2,Ann\n\
         staff,+44 20 7946 0000,,Bob\n",
    )
    .unwrap();
    let csv = file.to_str().unwrap();

    let (exit, added) = run_json(
        &[
            "contacts",
            "add",
            "acme",
            "--role",
            "staff",
            "--phone",
            "+1 (555) 000-9999",
            "--resource",
            "P-1",
        ],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Ok, "{added}");
    let (exit, imported) = run_json(&["contacts", "import", "acme", csv], &env).await;
    assert_eq!(exit, Exit::Ok, "{imported}");
    let (_, again) = run_json(&["contacts", "import", "acme", csv], &env).await;
    let (_, listed) = run_json(&["contacts", "list", "acme"], &env).await;
    let (_, table) = run(&["contacts", "list", "acme"], &env).await;
    let (_, other) = run_json(&["contacts", "list", "other"], &env).await;

    assert_eq!(
        (added["added"].as_u64(), imported["added"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(
        (again["added"].as_u64(), again["already_stored"].as_u64()),
        (Some(0), Some(3))
    );
    let phones: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["phone"].as_str().unwrap())
        .collect();
    assert_eq!(
        phones,
        ["15550001234", "15550001234", "15550009999", "442079460000"]
    );
    assert_eq!(listed[0]["role"], "customer");
    assert_eq!(listed[0]["resource"], "A-1");
    assert!(
        table.contains("A-2") && table.contains("Bob") && table.contains("4 record(s)"),
        "{table}"
    );
    assert_eq!(other, serde_json::json!([]));

    // Removal is by id, and only within the tenant named.
    let id = listed[0]["id"].as_i64().unwrap().to_string();
    let (exit, _) = run_json(&["contacts", "remove", "other", &id], &env).await;
    assert_eq!(exit, Exit::Usage);
    let (exit, _) = run_json(&["contacts", "remove", "acme", &id], &env).await;
    assert_eq!(exit, Exit::Ok);
    assert_eq!(contacts::list(&pool, &t("acme")).await.unwrap().len(), 3);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_file_with_one_bad_line_stores_nothing_and_names_the_line(pool: PgPool) {
    add_tenant(&pool, "acme", BotKind::Rules, serde_json::json!({})).await;
    let env = vars(&services::database_url(&pool), None, None);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("contacts.csv");
    std::fs::write(
        &file,
        "role,phone,resource\ncustomer,15550001234,A-1\ncustomer,15550001234@lid,A-2\n",
    )
    .unwrap();

    let (exit, text) = run(
        &["contacts", "import", "acme", file.to_str().unwrap()],
        &env,
    )
    .await;
    let (unknown, _) = run(&["contacts", "list", "nobody"], &env).await;

    assert_eq!(exit, Exit::Usage, "{text}");
    assert!(contacts::list(&pool, &t("acme")).await.unwrap().is_empty());
    assert_eq!(unknown, Exit::Usage, "an unknown tenant is bad input");
}
