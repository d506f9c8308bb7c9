//! The workers' step functions reach their rows by index even when their
//! plans were made while the tables were empty.
//!
//! PL/pgSQL caches each statement's plan for the session, and after a few
//! calls may keep a generic one; a plan made on a new deployment's (or a
//! benchmark's) empty tables can be a sequential scan that then stays while
//! the table grows (ingest's key claim did exactly that: issue 20,
//! `ingest_exactly_once::the_claim_statement_reads_known_keys_by_index_even_when_planned_on_an_empty_table`).
//! Here each function is called on one session until its plans are cached,
//! the tables then grow by thousands of rows (no `ANALYZE`), and the same
//! session's calls must scan none of the big tables sequentially
//! (`pg_stat_xact_user_tables`, which counts the transaction's own scans).

use sqlx::{PgConnection, PgPool};

/// The tables a turn or a send touches that grow without bound.
const BIG_TABLES: [&str; 3] = ["deliveries", "conversations", "contacts"];

/// One turn's and one send's worth of step calls for `tenant`, as the
/// workers make them: the read, the record, a claim and its mark.
async fn steps(connection: &mut PgConnection, tenant: &str, n: usize) {
    let chat = format!("chat-{n}");
    let reply = format!("reply-{n}");
    sqlx::query("SELECT * FROM switchyard_turn_context_batch($1, $2, $3)")
        .bind(vec![tenant])
        .bind(vec![chat.as_str()])
        .bind(vec![Some("15550000042")])
        .fetch_all(&mut *connection)
        .await
        .unwrap();
    sqlx::query("SELECT * FROM switchyard_record_turn_batch($1, $2, $3)")
        .bind(vec![tenant])
        .bind(vec![chat.as_str()])
        .bind(vec![None::<serde_json::Value>])
        .fetch_all(&mut *connection)
        .await
        .unwrap();
    for mark in [false, true] {
        let done: Vec<bool> = sqlx::query_scalar(
            "SELECT done FROM switchyard_ledger_batch($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(vec![mark])
        .bind(vec![tenant])
        .bind(vec![reply.as_str()])
        .bind(vec![(!mark).then_some(chat.as_str())])
        .bind(vec![(!mark).then_some("owner")])
        .bind(vec![(!mark).then_some(30.0_f64)])
        .bind(vec![mark.then(|| format!("wamid.{n}"))])
        .fetch_all(&mut *connection)
        .await
        .unwrap();
        assert_eq!(done, vec![true], "the claim creates, the mark finds");
    }
}

/// Sequential scans of `tables` in the transaction so far.
async fn seq_scans(connection: &mut PgConnection, tables: &[&str]) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT relname::text, seq_scan FROM pg_stat_xact_user_tables \
         WHERE relname = ANY($1) ORDER BY relname",
    )
    .bind(tables)
    .fetch_all(connection)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_step_functions_read_by_index_after_their_plans_were_made_on_empty_tables(
    owner: PgPool,
) {
    sqlx::query("INSERT INTO tenants (id) VALUES ('alpha')")
        .execute(&owner)
        .await
        .unwrap();
    // The workers' login: row-level security applies as in the services.
    let mut worker = owner.acquire().await.unwrap().detach();
    sqlx::query("SET ROLE switchyard_app")
        .execute(&mut worker)
        .await
        .unwrap();
    for n in 0..12 {
        steps(&mut worker, "alpha", n).await;
    }
    sqlx::query_scalar::<_, bool>("SELECT true FROM switchyard_tenant_rows(ARRAY['alpha'])")
        .fetch_all(&mut worker)
        .await
        .unwrap();
    // The tables grow under the cached plans: 5,000 tenants, and 20,000
    // rows of each big table spread over them.
    sqlx::raw_sql(
        "INSERT INTO tenants (id) SELECT 't' || i FROM generate_series(1, 5000) i;
         INSERT INTO conversations (tenant_id, chat_id)
           SELECT 't' || (i % 5000 + 1), 'c' || i FROM generate_series(1, 20000) i;
         INSERT INTO deliveries (tenant_id, reply_id, chat_id)
           SELECT 't' || (i % 5000 + 1), 'r' || i, 'c' || i FROM generate_series(1, 20000) i;
         INSERT INTO contacts (tenant_id, role, phone)
           SELECT 't' || (i % 5000 + 1), 'customer', (15550000000 + i)::text
           FROM generate_series(1, 20000) i;",
    )
    .execute(&owner)
    .await
    .unwrap();

    sqlx::query("BEGIN").execute(&mut worker).await.unwrap();
    for n in 12..20 {
        steps(&mut worker, "alpha", n).await;
    }
    let after_steps = seq_scans(&mut worker, &BIG_TABLES).await;
    sqlx::query_scalar::<_, bool>(
        "SELECT true FROM switchyard_tenant_rows(ARRAY['alpha', 't1', 't4999'])",
    )
    .fetch_all(&mut worker)
    .await
    .unwrap();
    let after_tenant_rows = seq_scans(&mut worker, &["tenants"]).await;
    sqlx::query("COMMIT").execute(&mut worker).await.unwrap();

    let none = |tables: &[&str]| -> Vec<(String, i64)> {
        let mut v: Vec<_> = tables.iter().map(|t| ((*t).to_owned(), 0)).collect();
        v.sort();
        v
    };
    assert_eq!(
        after_steps,
        none(&BIG_TABLES),
        "the read, the record and the ledger reach their rows by key"
    );
    // Over the whole transaction: the tenant cache's read, and the claims'
    // and records' foreign-key checks, which read `tenants` too.
    assert_eq!(
        after_tenant_rows,
        none(&["tenants"]),
        "the tenant rows by key"
    );
}
