//! Least-privilege database logins (docs/architecture.md invariant 4): the
//! services log in as roles that are not superusers, have no `BYPASSRLS` and
//! own nothing, members of `switchyard_app` (router, sender) or
//! `switchyard_ingest`. Each test creates such a LOGIN role the way
//! `deploy/README.md` says a deployment does, logs in as it and checks that
//! a query forgetting its tenant filter still sees only its tenant on every
//! tenant table, even after `RESET ROLE`, and that it cannot read what it
//! must not.

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use std::time::Duration;

use switchyard_shared::{
    config::{DatabaseSettings, Env},
    db, db_login, notifications, tenants,
};
use switchyard_tests::{fixtures, services};

use crate::ingest_support::{Harness, message};

const PASSWORD: &str = "least-privilege-test";

/// Creates a LOGIN role, member of `group`, named after this test's database
/// (roles are cluster-wide; tests run at once); returns its connect options.
async fn login_in(owner: &PgPool, group: &str) -> PgConnectOptions {
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(owner)
        .await
        .unwrap();
    let digest: String = sqlx::query_scalar("SELECT left(md5($1 || $2), 16)")
        .bind(&database)
        .bind(group)
        .fetch_one(owner)
        .await
        .unwrap();
    let login = format!("sy_login_{digest}");
    sqlx::query(&format!("DROP ROLE IF EXISTS {login}"))
        .execute(owner)
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE ROLE {login} LOGIN PASSWORD '{PASSWORD}' NOSUPERUSER NOBYPASSRLS IN ROLE {group}"
    ))
    .execute(owner)
    .await
    .unwrap();
    owner
        .connect_options()
        .as_ref()
        .clone()
        .username(&login)
        .password(PASSWORD)
}

fn url_of(options: &PgConnectOptions, owner: &PgPool) -> String {
    // The owner's URL with the login's name and password.
    let base = services::database_url(owner);
    let rest = base.split_once('@').map(|(_, rest)| rest).unwrap_or(&base);
    format!("postgres://{}:{PASSWORD}@{rest}", options.get_username())
}

/// The workers' pool as the router and the sender build theirs (the app
/// role set on every connection), logged in as `options`.
fn worker_pool(options: &PgConnectOptions, owner: &PgPool) -> PgPool {
    let settings =
        DatabaseSettings::from_env(&Env::from_map([("DATABASE_URL", url_of(options, owner))]))
            .unwrap();
    db::pool_with_role(&settings, db::APP_ROLE, "switchyard-test-app").unwrap()
}

/// What a transaction scoped to `alpha` must see on the three tenant tables.
fn alpha_view() -> (Vec<String>, Vec<String>, Vec<String>) {
    (
        vec!["alpha".to_owned()],
        vec!["a1".to_owned()],
        vec!["ra".to_owned()],
    )
}

fn is_denied(result: Result<impl Sized, sqlx::Error>) -> bool {
    match result {
        Err(sqlx::Error::Database(e)) => e.code().as_deref() == Some("42501"),
        _ => false,
    }
}

async fn seed(owner: &PgPool) {
    for id in ["alpha", "bravo"] {
        fixtures::add_tenant(owner, id, |_| {}).await;
    }
    sqlx::query(
        "INSERT INTO conversations (tenant_id, chat_id) VALUES ('alpha', 'a1'), ('bravo', 'b1'), ('bravo', 'b2')",
    )
    .execute(owner)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO deliveries (tenant_id, reply_id, chat_id) VALUES ('alpha', 'ra', 'a1'), ('bravo', 'rb1', 'b1'), ('bravo', 'rb2', 'b2')",
    )
    .execute(owner)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO contacts (tenant_id, role, phone, resource) VALUES ('alpha', 'customer', '15550000001', 'a-order'), ('bravo', 'staff', '15550000001', 'b-order'), ('bravo', 'customer', '15550000002', NULL)",
    )
    .execute(owner)
    .await
    .unwrap();
}

/// The phones and resources a transaction sees on the contacts table.
async fn contacts_seen(conn: &mut sqlx::PgConnection) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT phone, resource FROM contacts ORDER BY phone, resource")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
}

/// What a transaction scoped to `alpha` sees on the three tenant tables.
async fn seen(conn: &mut sqlx::PgConnection) -> (Vec<String>, Vec<String>, Vec<String>) {
    let tenants = sqlx::query_scalar("SELECT id FROM tenants ORDER BY id")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let chats = sqlx::query_scalar("SELECT chat_id FROM conversations ORDER BY chat_id")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let replies = sqlx::query_scalar("SELECT reply_id FROM deliveries ORDER BY reply_id")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    (tenants, chats, replies)
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_worker_login_sees_only_its_tenant_on_every_tenant_table_even_after_reset_role(
    owner: PgPool,
) {
    seed(&owner).await;
    let options = login_in(&owner, db::APP_ROLE).await;
    let app = worker_pool(&options, &owner);
    let plain = PgPoolOptions::new().connect_with(options).await.unwrap();
    let alpha = alpha_view();

    let mut tx = db::begin_for_tenant(&app, &fixtures::tenant("alpha"))
        .await
        .unwrap();
    let scoped = seen(&mut tx).await;
    let scoped_contacts = contacts_seen(&mut tx).await;
    sqlx::query("RESET ROLE").execute(&mut *tx).await.unwrap();
    let after_reset = seen(&mut tx).await;
    let contacts_after_reset = contacts_seen(&mut tx).await;
    let foreign_delivery = sqlx::query(
        "INSERT INTO deliveries (tenant_id, reply_id, chat_id) VALUES ('bravo', 'forged', 'b1')",
    )
    .execute(&mut *tx)
    .await;
    drop(tx);
    // The workers only read contacts: writing one (even the tenant's own) is refused.
    let mut tx = db::begin_for_tenant(&app, &fixtures::tenant("alpha"))
        .await
        .unwrap();
    let contact_written = sqlx::query(
        "INSERT INTO contacts (tenant_id, role, phone) VALUES ('alpha', 'staff', '15550000009')",
    )
    .execute(&mut *tx)
    .await;
    drop(tx);
    let mut tx = plain.begin().await.unwrap();
    let become_owner = sqlx::query("SET ROLE postgres").execute(&mut *tx).await;
    drop(tx);
    let mut unscoped = plain.acquire().await.unwrap();
    let unscoped_contacts = contacts_seen(&mut unscoped).await;
    let unscoped = seen(&mut unscoped).await;
    let mut ingest_only = Vec::new();
    for table in [
        "inbound_event_keys",
        "inbound_outbox",
        "inbound_outbox_leases",
        "signed_webhook_ids",
    ] {
        let read = sqlx::query(&format!("SELECT 1 FROM {table} LIMIT 1"))
            .fetch_optional(&plain)
            .await;
        ingest_only.push((table, is_denied(read)));
    }
    // What `switchyard migrate --check` reads before a worker starts.
    let pending = db::pending_migrations(&plain).await;
    let login_rights = db_login::rights(&plain).await.unwrap();
    let owner_rights = db_login::rights(&owner).await.unwrap();

    assert_eq!(scoped, alpha);
    let alpha_contacts = vec![("15550000001".to_owned(), Some("a-order".to_owned()))];
    assert_eq!(scoped_contacts, alpha_contacts);
    assert_eq!(contacts_after_reset, alpha_contacts);
    assert!(
        is_denied(contact_written),
        "contacts are the CLI's to write"
    );
    assert!(unscoped_contacts.is_empty(), "no tenant, no contacts");
    assert_eq!(
        after_reset, alpha,
        "the login itself is bound, not only its role"
    );
    assert!(
        foreign_delivery.is_err(),
        "another tenant's ledger row refused"
    );
    assert!(become_owner.is_err(), "the login cannot become the owner");
    assert_eq!(unscoped, (vec![], vec![], vec![]), "no tenant, no rows");
    assert!(
        ingest_only.iter().all(|(_, denied)| *denied),
        "{ingest_only:?}"
    );
    assert!(pending.is_ok_and(|p| p.is_empty()), "the schema check runs");
    assert_eq!(login_rights, db_login::LoginRights::default());
    assert!(owner_rights.superuser && owner_rights.escapes_row_security());
}

/// The scope a transaction is in, as its next statement sees it.
async fn scope_of(conn: &mut sqlx::PgConnection) -> Option<String> {
    sqlx::query_scalar("SELECT current_setting('switchyard.tenant_id', true)")
        .fetch_one(&mut *conn)
        .await
        .unwrap()
}

/// What a one-statement step answers (whether it found or made its row).
async fn step(conn: &mut sqlx::PgConnection, statement: &str) -> bool {
    sqlx::query_scalar(statement)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
}

/// A `deliveries` row as the tests read it: tenant, reply, status, provider id.
type DeliveryRow = (String, String, String, Option<String>);

fn delivery_row(tenant: &str, reply: &str, status: &str, provider: Option<&str>) -> DeliveryRow {
    (
        tenant.to_owned(),
        reply.to_owned(),
        status.to_owned(),
        provider.map(str::to_owned),
    )
}

/// The one-statement steps of migration 0017 set their tenant's scope
/// themselves: each acts in the tenant it is given only, puts back the scope
/// of a transaction it is called in (so a step never leaks its tenant into
/// the caller's later statements), and is the workers' alone.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_one_statement_steps_act_in_their_tenant_only_and_leave_the_callers_scope_as_it_was(
    owner: PgPool,
) {
    let (app, ingest) = seeded_with_logins(&owner).await;
    let alpha = alpha_view();

    let mut tx = db::begin_for_tenant(&app, &fixtures::tenant("alpha"))
        .await
        .unwrap();
    // Bravo's context for alpha's chat and a phone both tenants know: no
    // conversation (a1 is alpha's), bravo's record only.
    let context: Vec<(bool, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT conversation_exists, role, resource FROM switchyard_turn_context('bravo', 'a1', '15550000001')",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let after_context = (scope_of(&mut tx).await, seen(&mut tx).await);
    let claimed = step(
        &mut tx,
        "SELECT switchyard_claim_new('bravo', 'rb-new', 'b1', 'owner-1', 30)",
    )
    .await;
    let claimed_again = step(
        &mut tx,
        "SELECT switchyard_claim_new('bravo', 'rb-new', 'b1', 'owner-2', 30)",
    )
    .await;
    // Alpha has no row `rb1` (bravo's): nothing to mark.
    let marked_foreign = step(
        &mut tx,
        "SELECT switchyard_mark_wired('alpha', 'rb1', 'wamid.x')",
    )
    .await;
    let marked_own = step(
        &mut tx,
        "SELECT switchyard_mark_wired('alpha', 'ra', 'wamid.a')",
    )
    .await;
    let after_steps = (scope_of(&mut tx).await, seen(&mut tx).await);
    tx.commit().await.unwrap();
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT tenant_id, reply_id, status, provider_message_id FROM deliveries ORDER BY tenant_id, reply_id",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    let by_ingest = sqlx::query("SELECT switchyard_claim_new('alpha', 'r-ingest', 'a1', 'i', 30)")
        .fetch_one(&ingest)
        .await;

    assert_eq!(
        context,
        vec![(false, Some("staff".to_owned()), Some("b-order".to_owned()))]
    );
    assert_eq!(after_context, (Some("alpha".to_owned()), alpha.clone()));
    assert!(claimed && !claimed_again, "a second claim finds the row");
    assert!(!marked_foreign && marked_own);
    assert_eq!(after_steps, (Some("alpha".to_owned()), alpha));
    assert_eq!(
        rows,
        vec![
            delivery_row("alpha", "ra", "wired", Some("wamid.a")),
            delivery_row("bravo", "rb-new", "sending", None),
            delivery_row("bravo", "rb1", "sending", None),
            delivery_row("bravo", "rb2", "sending", None),
        ]
    );
    assert!(is_denied(by_ingest), "the steps are the workers'");
}

/// [`seed`]s the database and opens a pool on a worker login and one on
/// ingest's.
async fn seeded_with_logins(owner: &PgPool) -> (PgPool, PgPool) {
    seed(owner).await;
    let app = worker_pool(&login_in(owner, db::APP_ROLE).await, owner);
    let ingest = PgPoolOptions::new()
        .connect_with(login_in(owner, "switchyard_ingest").await)
        .await
        .unwrap();
    (app, ingest)
}

/// The batched steps of migration 0018 act in each item's own tenant: a
/// batch mixing tenants reads, claims and marks every item in its tenant
/// only (an item naming another tenant's reply finds nothing), answers every
/// item by its position, and puts back the caller's scope.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_batched_steps_act_in_each_items_tenant_only_and_leave_the_callers_scope_as_it_was(
    owner: PgPool,
) {
    let (app, ingest) = seeded_with_logins(&owner).await;
    let mut tx = db::begin_for_tenant(&app, &fixtures::tenant("alpha"))
        .await
        .unwrap();
    // Item 1: bravo's context for alpha's chat (none) and the shared phone
    // (bravo's record only); item 2: alpha's own chat and record.
    let context: Vec<(i32, bool, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT item, conversation_exists, role, resource FROM switchyard_turn_context_batch(\
           ARRAY['bravo', 'alpha'], ARRAY['a1', 'a1'], ARRAY['15550000001', '15550000001']) \
         ORDER BY item",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let claimed: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT item, created FROM switchyard_claim_new_batch(\
           ARRAY['bravo', 'alpha', 'bravo'], ARRAY['rb-new', 'rb1', 'rb1'], \
           ARRAY['b1', 'a1', 'b1'], ARRAY['o', 'o', 'o'], ARRAY[30, 30, 30]::float8[]) \
         ORDER BY item",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    // Alpha has no row `rb2` (bravo's): nothing to mark there.
    let marked: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT item, marked FROM switchyard_mark_wired_batch(\
           ARRAY['alpha', 'alpha'], ARRAY['rb2', 'ra'], ARRAY['wamid.x', NULL]) ORDER BY item",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let recorded: Vec<i32> = sqlx::query_scalar(
        "SELECT item FROM switchyard_record_turn_batch(\
           ARRAY['bravo', 'alpha'], ARRAY['b9', 'a9'], ARRAY['[\"x\"]'::jsonb, NULL]) ORDER BY item",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let after_steps = (scope_of(&mut tx).await, seen(&mut tx).await);
    tx.commit().await.unwrap();
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT tenant_id, reply_id, status, provider_message_id FROM deliveries ORDER BY tenant_id, reply_id",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    let conversations: Vec<(String, String, Option<serde_json::Value>)> = sqlx::query_as(
        "SELECT tenant_id, chat_id, last_menu FROM conversations WHERE chat_id LIKE '_9' ORDER BY tenant_id",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    let by_ingest = sqlx::query(
        "SELECT * FROM switchyard_claim_new_batch(ARRAY['alpha'], ARRAY['r'], ARRAY['a1'], ARRAY['i'], ARRAY[30]::float8[])",
    )
    .fetch_all(&ingest)
    .await;

    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        context,
        vec![
            (1, false, s("staff"), s("b-order")),
            (2, true, s("customer"), s("a-order"))
        ]
    );
    assert_eq!(claimed, vec![(1, true), (2, true), (3, false)]);
    assert_eq!(marked, vec![(1, false), (2, true)]);
    assert_eq!(recorded, vec![1, 2]);
    let v = |items: &[&str]| items.iter().map(|i| (*i).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        after_steps,
        (
            Some("alpha".to_owned()),
            (v(&["alpha"]), v(&["a1", "a9"]), v(&["ra", "rb1"]))
        ),
        "the caller's scope, which sees alpha's new rows only"
    );
    assert_eq!(
        rows,
        vec![
            delivery_row("alpha", "ra", "wired", Some("unconfirmed:ra")),
            delivery_row("alpha", "rb1", "sending", None),
            delivery_row("bravo", "rb-new", "sending", None),
            delivery_row("bravo", "rb1", "sending", None),
            delivery_row("bravo", "rb2", "sending", None),
        ]
    );
    assert_eq!(
        conversations,
        vec![
            ("alpha".to_owned(), "a9".to_owned(), None),
            (
                "bravo".to_owned(),
                "b9".to_owned(),
                Some(serde_json::json!(["x"]))
            ),
        ]
    );
    assert!(is_denied(by_ingest), "the steps are the workers'");
}

/// The sender's one ledger statement (migration 0021) mixes claims and
/// marks and still acts in each item's own tenant: alpha's mark of bravo's
/// reply finds nothing and leaves it as it was, a claim of a reply another
/// item of the batch claims first finds the row, every item is answered by
/// its position, the caller's scope is put back, and ingest may not call it.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_ledger_batch_claims_and_marks_in_each_items_tenant_only(owner: PgPool) {
    let (app, ingest) = seeded_with_logins(&owner).await;
    let mut tx = db::begin_for_tenant(&app, &fixtures::tenant("alpha"))
        .await
        .unwrap();
    // 1: alpha marks bravo's rb2 (not alpha's); 2: bravo claims rb-new;
    // 3: alpha marks its ra with a provider id; 4: bravo claims rb-new again;
    // 5: bravo marks rb1 without one; 6: alpha claims rb1 (alpha has none).
    let answers: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT item, done FROM switchyard_ledger_batch(\
           ARRAY[true, false, true, false, true, false], \
           ARRAY['alpha', 'bravo', 'alpha', 'bravo', 'bravo', 'alpha'], \
           ARRAY['rb2', 'rb-new', 'ra', 'rb-new', 'rb1', 'rb1'], \
           ARRAY[NULL, 'b1', NULL, 'b1', NULL, 'a1'], ARRAY[NULL, 'o', NULL, 'o', NULL, 'o'], \
           ARRAY[NULL, 30, NULL, 30, NULL, 30]::float8[], \
           ARRAY[NULL, NULL, 'wamid.a', NULL, NULL, NULL]) ORDER BY item",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let scope = scope_of(&mut tx).await;
    tx.commit().await.unwrap();
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT tenant_id, reply_id, status, provider_message_id FROM deliveries ORDER BY tenant_id, reply_id",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    let leased: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT tenant_id, reply_id, lease_owner FROM deliveries WHERE lease_until IS NOT NULL ORDER BY tenant_id, reply_id",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    let by_ingest = sqlx::query(
        "SELECT * FROM switchyard_ledger_batch(ARRAY[false], ARRAY['alpha'], ARRAY['r'], \
           ARRAY['a1'], ARRAY['i'], ARRAY[30]::float8[], ARRAY[NULL]::text[])",
    )
    .fetch_all(&ingest)
    .await;

    assert_eq!(
        answers,
        vec![
            (1, false),
            (2, true),
            (3, true),
            (4, false),
            (5, true),
            (6, true)
        ]
    );
    assert_eq!(
        scope.as_deref(),
        Some("alpha"),
        "the caller's scope is back"
    );
    assert_eq!(
        rows,
        vec![
            delivery_row("alpha", "ra", "wired", Some("wamid.a")),
            delivery_row("alpha", "rb1", "sending", None),
            delivery_row("bravo", "rb-new", "sending", None),
            delivery_row("bravo", "rb1", "wired", Some("unconfirmed:rb1")),
            delivery_row("bravo", "rb2", "sending", None),
        ]
    );
    let o = |t: &str, r: &str| (t.to_owned(), r.to_owned(), Some("o".to_owned()));
    assert_eq!(
        leased,
        vec![o("alpha", "rb1"), o("bravo", "rb-new")],
        "the claims hold their lease, the marks released theirs"
    );
    assert!(is_denied(by_ingest), "the ledger is the sender's");
}

/// The batched tenant read (`switchyard_tenant_rows`, what the tenant cache
/// reads, in ingest too) returns each row it names under that tenant's own
/// scope and no other, with the services' logins, and puts back the
/// caller's scope.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_batched_tenant_read_returns_the_tenants_it_names_only_and_leaves_the_callers_scope(
    owner: PgPool,
) {
    seed(&owner).await;
    let ids = ["bravo", "nobody", "alpha"].map(fixtures::tenant);
    let app = worker_pool(&login_in(&owner, db::APP_ROLE).await, &owner);
    let rows = tenants::fetch_scoped_many(&app, &ids).await.unwrap();
    let names: Vec<Option<&str>> = rows
        .iter()
        .map(|row| row.as_ref().unwrap().as_ref().map(|t| t.id.as_str()))
        .collect();
    assert_eq!(
        names,
        [Some("bravo"), None, Some("alpha")],
        "one answer per id, in order; none for an unknown tenant"
    );
    // Ingest's login reads webhook credentials the same way.
    let ingest = PgPoolOptions::new()
        .connect_with(login_in(&owner, "switchyard_ingest").await)
        .await
        .unwrap();
    let rows = tenants::fetch_scoped_many(&ingest, &ids[2..])
        .await
        .unwrap();
    assert_eq!(
        rows[0].as_ref().unwrap().as_ref().map(|t| t.id.as_str()),
        Some("alpha"),
        "alpha's row, read by ingest"
    );
    // Inside alpha's transaction: bravo's row is read under bravo's scope,
    // then alpha's scope (and what it sees) is as before.
    let mut tx = db::begin_for_tenant(&app, &fixtures::tenant("alpha"))
        .await
        .unwrap();
    let read: Vec<String> =
        sqlx::query_scalar("SELECT id FROM switchyard_tenant_rows(ARRAY['bravo', 'nobody'])")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    assert_eq!(read, ["bravo"], "exactly the rows asked for");
    assert_eq!(scope_of(&mut tx).await.as_deref(), Some("alpha"));
    assert_eq!(seen(&mut tx).await, alpha_view());
    tx.rollback().await.unwrap();
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn ingest_logged_in_as_its_own_role_takes_webhooks_and_cannot_read_the_workers_tables(
    owner: PgPool,
) {
    seed(&owner).await;
    let options = login_in(&owner, "switchyard_ingest").await;
    let login = PgPoolOptions::new().connect_with(options).await.unwrap();
    let signing = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let h = Harness::start_with(login.clone(), &[("SWITCHYARD_SIGNING_SECRET", signing)]).await;
    let secret =
        switchyard_shared::standard_webhooks::SigningSecret::parse(&signing.into()).unwrap();
    let at = time::OffsetDateTime::now_utc().unix_timestamp();
    let body = message("LEAST-1");

    let answer = h
        .http
        .post(h.hook_url("alpha"))
        .header("webhook-id", "msg_least")
        .header("webhook-timestamp", at.to_string())
        .header(
            "webhook-signature",
            secret.sign("msg_least", at, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let text = answer.text().await.unwrap();
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM inbound_event_keys")
        .fetch_one(&owner)
        .await
        .unwrap();
    let bound: i64 = sqlx::query_scalar("SELECT count(*) FROM signed_webhook_ids")
        .fetch_one(&owner)
        .await
        .unwrap();
    // The outbox's statements, which run only while JetStream is down.
    let outbox = sqlx::query(
        "WITH kept AS (INSERT INTO inbound_outbox (tenant_id, event_id, received_at_ms, traceparent, payload) \
         VALUES ('alpha', 'e1', 1, 't', '\\x00') RETURNING tenant_id, event_id) \
         DELETE FROM inbound_outbox o USING kept WHERE o.tenant_id = kept.tenant_id AND o.event_id = kept.event_id",
    )
    .execute(&login)
    .await;
    let conversations = sqlx::query("SELECT 1 FROM conversations LIMIT 1")
        .fetch_optional(&login)
        .await;
    let deliveries = sqlx::query("SELECT 1 FROM deliveries LIMIT 1")
        .fetch_optional(&login)
        .await;
    let tenants_unscoped: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&login)
        .await
        .unwrap();
    let rights = db_login::rights(&login).await.unwrap();

    assert_eq!(
        (status.as_u16(), text.as_str()),
        (200, r#"{"status":"accepted"}"#)
    );
    assert_eq!((keys, bound), (1, 1));
    assert!(outbox.is_ok(), "{outbox:?}");
    assert!(is_denied(conversations) && is_denied(deliveries));
    assert_eq!(
        tenants_unscoped, 0,
        "tenant rows only inside a tenant's scope"
    );
    assert_eq!(rights, db_login::LoginRights::default());
}

/// The `right` sample of the login gauge in this process.
fn privileged(right: &str) -> Option<f64> {
    let text = switchyard_shared::ops_server::metrics_handle().render();
    let prefix = format!("{}{{right=\"{right}\"}} ", db_login::LOGIN_PRIVILEGED);
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_service_warns_once_and_sets_the_gauge_when_its_login_can_skip_row_security(
    owner: PgPool,
) {
    let login = PgPoolOptions::new()
        .connect_with(login_in(&owner, db::APP_ROLE).await)
        .await
        .unwrap();
    // The recorder a service installs at start-up.
    switchyard_shared::ops_server::metrics_handle();
    let logs = crate::log_capture::LogBuffer::default();
    let guard = logs.capture();
    let check = |pool: PgPool| {
        db_login::check_once_reachable(
            "switchyard-test",
            pool,
            std::time::Duration::from_millis(50),
            tokio_util::sync::CancellationToken::new(),
        )
    };

    check(login).await;
    let quiet = logs.text();
    let as_login = (privileged("superuser"), privileged("owner"));
    check(owner).await;
    let as_owner = (privileged("superuser"), privileged("owner"));
    drop(guard);

    assert!(!quiet.contains("skip row-level security"), "{quiet}");
    assert_eq!(as_login, (Some(0.0), Some(0.0)));
    assert_eq!(as_owner, (Some(1.0), Some(1.0)));
    assert_eq!(
        logs.text().matches("can skip row-level security").count(),
        1,
        "{}",
        logs.text()
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn notification_secrets_are_read_by_the_workers_within_their_tenant_only_and_never_by_ingest(
    owner: PgPool,
) {
    seed(&owner).await;
    for id in ["alpha", "bravo"] {
        let url = format!("https://hooks.{id}.example/n");
        let secret = notifications::target::generate_secret();
        let stored = notifications::target::set_url(&owner, &fixtures::tenant(id), &url, &secret)
            .await
            .unwrap();
        assert_eq!(stored, Some(true));
    }
    let app = worker_pool(&login_in(&owner, db::APP_ROLE).await, &owner);
    let ingest = PgPoolOptions::new()
        .connect_with(login_in(&owner, "switchyard_ingest").await)
        .await
        .unwrap();

    // The notifier's reads: its tenant's row only, whatever the query says.
    let target = notifications::target::fetch(&app, &fixtures::tenant("alpha"))
        .await
        .unwrap()
        .unwrap();
    let mut tx = db::begin_for_tenant(&app, &fixtures::tenant("alpha"))
        .await
        .unwrap();
    let visible: Vec<String> =
        sqlx::query_scalar("SELECT tenant_id FROM tenant_notifications ORDER BY tenant_id")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    let url_changed = sqlx::query("UPDATE tenant_notifications SET url = 'https://evil.example/'")
        .execute(&mut *tx)
        .await;
    drop(tx);
    // The stuck check: the function answers across tenants (ids, states and
    // ages only), and the episode's marker is the workers' to write.
    sqlx::query(
        "UPDATE tenants SET bridge_id = 7, bridge_state = 'running', \
         bridge_state_at = now() - interval '2 days' WHERE id = 'bravo'",
    )
    .execute(&owner)
    .await
    .unwrap();
    let stuck = notifications::target::stuck_unnotified(&app, Duration::from_secs(3600))
        .await
        .unwrap();
    let marked = notifications::target::mark_stuck_notified(&app, &stuck[0]).await;
    let stuck_after = notifications::target::stuck_unnotified(&app, Duration::from_secs(3600))
        .await
        .unwrap();
    let unscoped: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM tenant_notifications")
        .fetch_all(&app)
        .await
        .unwrap();
    // Ingest: nothing of it.
    let ingest_reads = sqlx::query("SELECT 1 FROM tenant_notifications LIMIT 1")
        .fetch_optional(&ingest)
        .await;
    let ingest_calls =
        sqlx::query("SELECT * FROM switchyard_stuck_unnotified(interval '1 minute')")
            .fetch_all(&ingest)
            .await;

    assert_eq!(target.url, "https://hooks.alpha.example/n");
    assert_eq!(visible, vec!["alpha".to_owned()]);
    assert!(is_denied(url_changed), "the URL is the CLI's to write");
    let stuck_ids: Vec<String> = stuck.iter().map(|s| s.tenant.to_string()).collect();
    assert_eq!(stuck_ids, vec!["bravo".to_owned()], "{stuck:?}");
    assert!(marked.is_ok(), "{marked:?}");
    assert!(
        stuck_after.is_empty(),
        "an episode told is not listed again"
    );
    assert!(unscoped.is_empty(), "no tenant, no rows");
    assert!(
        is_denied(ingest_reads),
        "ingest never sees a signing secret"
    );
    assert!(is_denied(ingest_calls));
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_worker_login_moves_only_its_tenants_templates_and_cannot_create_one(owner: PgPool) {
    use switchyard_shared::cloud_api::{
        template_store::{self, Recorded, TemplateKey},
        templates::TemplateStatus,
    };
    seed(&owner).await;
    sqlx::query(
        "INSERT INTO cloud_templates (tenant_id, name, language, category, components, body_params, header_params, status) \
         VALUES ('alpha', 'a_t', 'en', 'UTILITY', '[]', 0, 0, 'PENDING'), ('bravo', 'b_t', 'en', 'UTILITY', '[]', 0, 0, 'PENDING')",
    )
    .execute(&owner)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO cloud_fallback_sends (tenant_id, chat_id, reply_id) VALUES ('alpha', 'a1', 'ra'), ('bravo', 'b1', 'rb1')",
    )
    .execute(&owner)
    .await
    .unwrap();
    let app = worker_pool(&login_in(&owner, db::APP_ROLE).await, &owner);
    let alpha = fixtures::tenant("alpha");
    let key = |name: &str| TemplateKey::NameLanguage {
        name: name.to_owned(),
        language: "en".to_owned(),
    };

    let mut tx = db::begin_for_tenant(&app, &alpha).await.unwrap();
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM cloud_templates ORDER BY name")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let chats: Vec<String> = sqlx::query_scalar("SELECT chat_id FROM cloud_fallback_sends")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    drop(tx);
    let mut tx = db::begin_for_tenant(&app, &alpha).await.unwrap();
    let created = sqlx::query(
        "INSERT INTO cloud_templates (tenant_id, name, language, category, components, body_params, header_params, status) \
         VALUES ('alpha', 'new_t', 'en', 'UTILITY', '[]', 0, 0, 'APPROVED')",
    )
    .execute(&mut *tx)
    .await;
    drop(tx);
    // The router's statement, as the router's login.
    let own = template_store::record_status(
        &app,
        &alpha,
        &key("a_t"),
        &TemplateStatus::Approved,
        Some("42"),
        None,
    )
    .await
    .unwrap();
    let foreign = template_store::record_status(
        &app,
        &alpha,
        &key("b_t"),
        &TemplateStatus::Approved,
        None,
        None,
    )
    .await
    .unwrap();
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT tenant_id, status FROM cloud_templates ORDER BY tenant_id")
            .fetch_all(&owner)
            .await
            .unwrap();

    assert_eq!(names, ["a_t"]);
    assert_eq!(chats, ["a1"]);
    assert!(is_denied(created), "templates are the CLI's to create");
    assert!(
        matches!(own, Recorded::Updated { ref was, fallback: false, .. } if *was == TemplateStatus::Pending),
        "{own:?}"
    );
    assert_eq!(
        foreign,
        Recorded::Unknown,
        "another tenant's template is not seen"
    );
    assert_eq!(
        statuses,
        [
            ("alpha".to_owned(), "APPROVED".to_owned()),
            ("bravo".to_owned(), "PENDING".to_owned())
        ]
    );
}
