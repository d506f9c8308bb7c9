//! `switchyard tenants cloud …` (issue 22 point 4): a Cloud API tenant's
//! token arrives on stdin, from a file or by an Embedded Signup exchange
//! against the Cloud simulator, is stored sealed (never in clear) and never
//! printed; a rotation after Meta refused a token lets the held tenant send
//! again; a revocation drops it; a key rotation re-seals every token and
//! leaves those under unknown keys alone; a missing key setting is named.

use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use sqlx::PgPool;
use switchyard_bridge_sim::cloud::{Batch, CloudSim, CloudSimConfig, PhoneNumberSpec};
use switchyard_cli::exit::Exit;
use switchyard_shared::{
    cloud_api::{
        CloudApiSettings, CloudClient,
        channel::{self, NewChannel, TokenState},
        token_box::TokenKeys,
    },
    tenants::BotKind,
};
use switchyard_tests::{
    pipeline::{Pipeline, TenantSpec},
    poll, services,
};

use crate::{
    cli_support::{add_tenant, run_json, run_with_stdin, t, vars},
    cloud_support::{self, TOKEN_KEYS, cloud_tenant},
    log_capture::LogBuffer,
};

const WITHIN: Duration = Duration::from_secs(30);
const TOKEN_A: &str = "EAAG-acme-business-token-0001";
const TOKEN_B: &str = "EAAG-globex-business-token-0002";
/// A second key (32 bytes of 0x09), for rotations.
const KEY_2: &str = "k2:CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

fn env_with(pool: &PgPool, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vars(&services::database_url(pool), None, None);
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

fn keys(raw: &str) -> TokenKeys {
    TokenKeys::parse(&SecretString::from(raw.to_owned())).unwrap()
}

/// The stored row's sealed bytes, key id and state.
async fn stored(pool: &PgPool, tenant: &str) -> (Option<Vec<u8>>, Option<String>, String) {
    sqlx::query_as(
        "SELECT token_sealed, token_key_id, token_state FROM cloud_channels WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The tenant's token as the sender would open it with `raw_keys`.
async fn opened(pool: &PgPool, tenant: &str, raw_keys: &str) -> String {
    let row = channel::fetch_in(pool, &t(tenant)).await.unwrap().unwrap();
    keys(raw_keys)
        .open(&t(tenant), row.token.as_ref().unwrap())
        .unwrap()
        .expose_secret()
        .to_owned()
}

fn connect_args<'a>(tenant: &'a str, number: &'a str, waba: &'a str) -> Vec<&'a str> {
    vec![
        "tenants",
        "cloud",
        "connect",
        tenant,
        "--phone-number-id",
        number,
        "--waba-id",
        waba,
    ]
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_token_from_a_file_or_stdin_is_stored_sealed_and_never_shown(pool: PgPool) {
    add_tenant(&pool, "acme", BotKind::Echo, serde_json::json!({})).await;
    add_tenant(&pool, "globex", BotKind::Echo, serde_json::json!({})).await;
    let env = env_with(&pool, &[("SWITCHYARD_CLOUD_TOKEN_KEYS", TOKEN_KEYS)]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.token");
    std::fs::write(&file, format!("{TOKEN_A}\n")).unwrap();

    let mut args = connect_args("acme", "PN1", "WABA1");
    let path = file.to_str().unwrap();
    args.extend([
        "--display-phone-number",
        "+1 555 0101",
        "--token-file",
        path,
    ]);
    let (exit, shown, err) = run_with_stdin(&args, &env, "").await;
    assert_eq!(exit, Exit::Ok, "{shown} {err:?}");
    assert!(shown.contains("wabridges -> cloud_api"), "{shown}");
    let mut json_args = vec!["--json"];
    json_args.extend(connect_args("globex", "PN2", "WABA1"));
    json_args.push("--token-stdin");
    let (exit, report, err) = run_with_stdin(&json_args, &env, &format!("{TOKEN_B}\n")).await;
    assert_eq!(exit, Exit::Ok, "{report} {err:?}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["channel"], "cloud_api");
    assert_eq!(report["token_state"], "active");
    assert_eq!(report["source"], "stdin");
    assert_eq!(report["steps"][0]["step"], "store_token");

    for (tenant, token) in [("acme", TOKEN_A), ("globex", TOKEN_B)] {
        let (sealed, key_id, state) = stored(&pool, tenant).await;
        let sealed = sealed.unwrap();
        assert!(
            !sealed.windows(token.len()).any(|w| w == token.as_bytes())
                && !sealed.windows(5).any(|w| w == b"EAAG-"),
            "{tenant}'s token is not stored in clear"
        );
        assert_eq!((key_id.as_deref(), state.as_str()), (Some("k1"), "active"));
        assert_eq!(opened(&pool, tenant, TOKEN_KEYS).await, token);
        let channel: String = sqlx::query_scalar("SELECT channel FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(channel, "cloud_api");
    }

    // show, as a table and as JSON: everything but the token.
    let (_, table, _) = run_with_stdin(&["tenants", "cloud", "show"], &env, "").await;
    let (exit, one) = run_json(&["tenants", "cloud", "show", "acme"], &env).await;
    assert_eq!(exit, Exit::Ok);
    assert_eq!(one[0]["phone_number_id"], "PN1");
    assert_eq!(one[0]["waba_id"], "WABA1");
    assert_eq!(one[0]["display_phone_number"], "+1 555 0101");
    assert_eq!(one[0]["channel"], "cloud_api");
    assert_eq!(one[0]["token_state"], "active");
    assert_eq!(one[0]["token_key_id"], "k1");
    assert_eq!(one[0]["token_key"], "sealing");
    assert!(
        table.contains("PN2") && table.contains("k1 (sealing)"),
        "{table}"
    );
    for text in [&table, &one.to_string(), &shown, &report.to_string()] {
        assert!(
            !text.contains(TOKEN_A) && !text.contains(TOKEN_B) && !text.contains("EAAG"),
            "a token is never printed: {text}"
        );
    }

    // A number is one tenant's only; nothing changes.
    let mut taken = connect_args("acme", "PN2", "WABA1");
    taken.push("--token-stdin");
    let (exit, _, err) = run_with_stdin(&taken, &env, TOKEN_A).await;
    assert_eq!(exit, Exit::Usage);
    assert!(err.unwrap().contains("already connected to tenant globex"));
    assert_eq!(
        channel::fetch_in(&pool, &t("acme"))
            .await
            .unwrap()
            .unwrap()
            .phone_number_id,
        "PN1"
    );
    // A token is one line; the refusal does not quote it.
    let mut own = connect_args("acme", "PN1", "WABA1");
    own.push("--token-stdin");
    let (exit, _, err) = run_with_stdin(&own, &env, "EAAG secret with spaces").await;
    let err = err.unwrap();
    assert_eq!(exit, Exit::Usage, "{err}");
    assert!(err.contains("one line") && !err.contains("secret"), "{err}");
    assert_eq!(opened(&pool, "acme", TOKEN_KEYS).await, TOKEN_A);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_missing_key_setting_is_named_and_nothing_changes(pool: PgPool) {
    add_tenant(&pool, "acme", BotKind::Echo, serde_json::json!({})).await;
    let env = env_with(&pool, &[]);
    let mut args = connect_args("acme", "PN1", "WABA1");
    args.push("--token-stdin");
    let (exit, out, err) = run_with_stdin(&args, &env, TOKEN_A).await;
    let err = err.expect("refused");
    assert_eq!(exit, Exit::Failure, "{out}");
    assert!(
        err.contains("SWITCHYARD_CLOUD_TOKEN_KEYS") && err.contains("keys-generate"),
        "{err}"
    );
    assert!(!err.contains(TOKEN_A));
    assert!(
        channel::fetch_in(&pool, &t("acme"))
            .await
            .unwrap()
            .is_none()
    );
    for args in [
        &["tenants", "cloud", "reseal"][..],
        &["tenants", "cloud", "rotate-token", "acme", "--token-stdin"][..],
    ] {
        let (_, _, err) = run_with_stdin(args, &env, TOKEN_A).await;
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("SWITCHYARD_CLOUD_TOKEN_KEYS")),
            "{args:?}: {err:?}"
        );
    }
    // The signup path also names our app's settings before touching the code.
    let env = env_with(&pool, &[("SWITCHYARD_CLOUD_TOKEN_KEYS", TOKEN_KEYS)]);
    let mut args = connect_args("acme", "PN1", "WABA1");
    args.push("--signup-code-stdin");
    let (_, _, err) = run_with_stdin(&args, &env, "code-1234567").await;
    assert!(err.unwrap().contains("SWITCHYARD_CLOUD_APP_ID"));
    // keys-generate prints an entry the setting accepts.
    let (exit, key) = run_json(&["tenants", "cloud", "keys-generate", "k9"], &env).await;
    assert_eq!(exit, Exit::Ok);
    assert_eq!(keys(key["entry"].as_str().unwrap()).sealing_key_id(), "k9");
}

async fn signup_sim() -> CloudSim {
    let sim = CloudSim::start(CloudSimConfig::new(
        "sim-app",
        cloud_support::APP_SECRET,
        cloud_support::VERIFY_TOKEN,
    ))
    .await
    .unwrap();
    for (waba, number) in [("WABA1", "PN1"), ("WABA2", "PN2")] {
        sim.add_waba(waba);
        sim.add_number(PhoneNumberSpec::new(waba, number, format!("1555{number}")))
            .unwrap();
    }
    sim
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_signup_code_is_exchanged_once_and_its_waba_subscribed(pool: PgPool) {
    let sim = signup_sim().await;
    for tenant in ["acme", "globex", "initech"] {
        add_tenant(&pool, tenant, BotKind::Echo, serde_json::json!({})).await;
    }
    let url = sim.base_url();
    let env = env_with(
        &pool,
        &[
            ("SWITCHYARD_CLOUD_TOKEN_KEYS", TOKEN_KEYS),
            ("SWITCHYARD_CLOUD_API_URL", &url),
            ("SWITCHYARD_CLOUD_APP_ID", "sim-app"),
            ("SWITCHYARD_CLOUD_APP_SECRET", cloud_support::APP_SECRET),
        ],
    );
    let code = sim.issue_signup_code("WABA1").unwrap();
    assert!(!sim.waba("WABA1").unwrap().subscribed);
    let logs = LogBuffer::default();
    let guard = logs.capture();

    let mut args = vec!["--json"];
    args.extend(connect_args("acme", "PN1", "WABA1"));
    args.push("--signup-code-stdin");
    let (exit, first, err) = run_with_stdin(&args, &env, &code).await;
    assert_eq!(exit, Exit::Ok, "{first} {err:?}");
    let report: serde_json::Value = serde_json::from_str(&first).unwrap();
    let steps: Vec<(&str, &str)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("exchange_code", "done"),
            ("store_token", "done"),
            ("subscribe_waba", "done")
        ]
    );
    assert!(sim.waba("WABA1").unwrap().subscribed, "webhooks will flow");
    // The stored token is the one Meta issued: it acts on WABA1.
    let token = SecretString::from(opened(&pool, "acme", TOKEN_KEYS).await);
    let client = CloudClient::new(&CloudApiSettings::new(&url)).unwrap();
    sim.subscribe("WABA1", false).unwrap();
    client.subscribe_app("WABA1", &token).await.unwrap();
    assert!(sim.waba("WABA1").unwrap().subscribed);

    // The same code a second time: refused by Meta, nothing stored, the
    // report says to run Embedded Signup again.
    let mut again = connect_args("globex", "PN2", "WABA1");
    again.push("--signup-code-stdin");
    let (exit, second, _) = run_with_stdin(&again, &env, &code).await;
    assert_eq!(exit, Exit::Failure, "{second}");
    assert!(
        second.contains("exchange_code") && second.contains("FAILED"),
        "{second}"
    );
    assert!(second.contains("run Embedded Signup again"), "{second}");
    assert!(
        channel::fetch_in(&pool, &t("globex"))
            .await
            .unwrap()
            .is_none()
    );

    // A code of another WABA: the token is stored but cannot subscribe
    // WABA1; the report names the one command to redo (exit 4).
    let other = sim.issue_signup_code("WABA2").unwrap();
    let mut wrong = connect_args("initech", "PN3", "WABA1");
    wrong.push("--signup-code-stdin");
    let (exit, partial, _) = run_with_stdin(&wrong, &env, &other).await;
    assert_eq!(exit, Exit::Partial, "{partial}");
    assert!(
        partial.contains("switchyard tenants cloud subscribe initech"),
        "{partial}"
    );
    assert_eq!(stored(&pool, "initech").await.2, "active");

    // `subscribe` redoes the step with the stored token.
    sim.subscribe("WABA1", false).unwrap();
    let (exit, done) = run_json(&["tenants", "cloud", "subscribe", "acme"], &env).await;
    assert_eq!(exit, Exit::Ok, "{done}");
    assert!(sim.waba("WABA1").unwrap().subscribed);

    drop(guard);
    let issued = token.expose_secret().to_owned();
    for text in [first, second, partial, done.to_string(), logs.text()] {
        for secret in [
            code.as_str(),
            other.as_str(),
            cloud_support::APP_SECRET,
            &issued,
        ] {
            assert!(!text.contains(secret), "a secret leaked: {text}");
        }
    }
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn revoke_token_asks_then_drops_the_token(pool: PgPool) {
    add_tenant(&pool, "acme", BotKind::Echo, serde_json::json!({})).await;
    let env = env_with(&pool, &[("SWITCHYARD_CLOUD_TOKEN_KEYS", TOKEN_KEYS)]);
    let mut args = connect_args("acme", "PN1", "WABA1");
    args.push("--token-stdin");
    assert_eq!(run_with_stdin(&args, &env, TOKEN_A).await.0, Exit::Ok);

    // Without a terminal and without --yes: refused, nothing changed.
    let (exit, _, err) =
        run_with_stdin(&["tenants", "cloud", "revoke-token", "acme"], &env, "").await;
    assert_eq!(exit, Exit::Usage, "{err:?}");
    let (exit, dry) = run_json(
        &["tenants", "cloud", "revoke-token", "acme", "--dry-run"],
        &env,
    )
    .await;
    assert_eq!(
        (exit, dry["token_state"].as_str()),
        (Exit::Ok, Some("active"))
    );
    assert_eq!(stored(&pool, "acme").await.2, "active");

    let (exit, done) = run_json(&["tenants", "cloud", "revoke-token", "acme", "--yes"], &env).await;
    assert_eq!(exit, Exit::Ok, "{done}");
    assert_eq!(done["previous_token_state"], "active");
    let (sealed, key_id, state) = stored(&pool, "acme").await;
    assert_eq!((sealed, key_id, state.as_str()), (None, None, "revoked"));
    let (_, shown) = run_json(&["tenants", "cloud", "show", "acme"], &env).await;
    assert_eq!(shown[0]["token_state"], "revoked");
    assert!(shown[0]["token_key_id"].is_null());

    // A new token makes it usable again.
    let (exit, out, _) = run_with_stdin(
        &["tenants", "cloud", "rotate-token", "acme", "--token-stdin"],
        &env,
        TOKEN_B,
    )
    .await;
    // NATS is unreachable here: the token is stored, the hold may remain,
    // and the report names the command that lifts it (exit 4).
    assert_eq!(exit, Exit::Partial, "{out}");
    assert!(
        out.contains("switchyard tenants resume-sending acme"),
        "{out}"
    );
    assert_eq!(stored(&pool, "acme").await.2, "active");
    assert_eq!(opened(&pool, "acme", TOKEN_KEYS).await, TOKEN_B);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn reseal_moves_tokens_to_the_first_key_and_leaves_unknown_keys_alone(pool: PgPool) {
    for tenant in ["acme", "globex"] {
        add_tenant(&pool, tenant, BotKind::Echo, serde_json::json!({})).await;
    }
    let before = env_with(&pool, &[("SWITCHYARD_CLOUD_TOKEN_KEYS", TOKEN_KEYS)]);
    for (tenant, number, token) in [("acme", "PN1", TOKEN_A), ("globex", "PN2", TOKEN_B)] {
        let mut args = connect_args(tenant, number, "WABA1");
        args.push("--token-stdin");
        assert_eq!(run_with_stdin(&args, &before, token).await.0, Exit::Ok);
    }
    // globex's token was refused by Meta: a re-seal keeps that.
    channel::set_token_state(&pool, &t("globex"), TokenState::Rejected)
        .await
        .unwrap();
    // initech's token is under a key nobody configured any more.
    add_tenant(&pool, "initech", BotKind::Echo, serde_json::json!({})).await;
    let lost = keys(&TokenKeys::generate_entry("lost").unwrap());
    let sealed = lost.seal(&t("initech"), &SecretString::from("EAAG-initech"));
    channel::connect(
        &pool,
        &t("initech"),
        &NewChannel {
            phone_number_id: "PN3",
            waba_id: "WABA1",
            display_phone_number: None,
            token: &sealed,
        },
    )
    .await
    .unwrap();

    // The rotation: the new key first, the old one second.
    let rotation = format!("{KEY_2},{TOKEN_KEYS}");
    let during = env_with(&pool, &[("SWITCHYARD_CLOUD_TOKEN_KEYS", &rotation)]);
    let (exit, dry) = run_json(&["tenants", "cloud", "reseal", "--dry-run"], &during).await;
    assert_eq!(exit, Exit::Partial, "{dry}");
    let outcomes = |report: &serde_json::Value| -> Vec<(String, String)> {
        report["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["tenant"].as_str().unwrap().to_owned(),
                    r["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let expect = |o: &str| {
        vec![
            ("acme".to_owned(), o.to_owned()),
            ("globex".to_owned(), o.to_owned()),
            ("initech".to_owned(), "unknown_key".to_owned()),
        ]
    };
    assert_eq!(outcomes(&dry), expect("would_reseal"));
    assert_eq!(
        stored(&pool, "acme").await.1.as_deref(),
        Some("k1"),
        "dry run"
    );

    let (exit, done) = run_json(&["tenants", "cloud", "reseal"], &during).await;
    assert_eq!(exit, Exit::Partial, "initech is left alone: {done}");
    assert_eq!(outcomes(&done), expect("resealed"));
    assert_eq!(done["sealing_key_id"], "k2");
    let (_, _, globex_state) = stored(&pool, "globex").await;
    assert_eq!(globex_state, "rejected", "a re-seal is not a rotation");
    assert_eq!(stored(&pool, "initech").await.0.unwrap(), sealed.sealed);

    // The old key dropped: the tokens still open, with the new key alone.
    assert_eq!(opened(&pool, "acme", KEY_2).await, TOKEN_A);
    assert_eq!(opened(&pool, "globex", KEY_2).await, TOKEN_B);
    let after = env_with(&pool, &[("SWITCHYARD_CLOUD_TOKEN_KEYS", KEY_2)]);
    let (_, shown) = run_json(&["tenants", "cloud", "show"], &after).await;
    let key_states: Vec<&str> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["token_key"].as_str().unwrap())
        .collect();
    assert_eq!(key_states, ["sealing", "sealing", "missing"]);
    // initech gets a new token; then every token is current.
    let (exit, _, _) = run_with_stdin(
        &[
            "tenants",
            "cloud",
            "rotate-token",
            "initech",
            "--token-stdin",
        ],
        &after,
        "EAAG-initech-new",
    )
    .await;
    assert_eq!(exit, Exit::Partial, "stored; NATS unreachable here");
    let (exit, last) = run_json(&["tenants", "cloud", "reseal"], &after).await;
    assert_eq!(exit, Exit::Ok, "{last}");
    assert!(outcomes(&last).iter().all(|(_, o)| o == "current"));
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn rotating_a_token_meta_refused_lets_the_held_tenant_send_again(pool: PgPool) {
    let cloud = CloudSim::start(CloudSimConfig::new(
        "sim-app",
        cloud_support::APP_SECRET,
        cloud_support::VERIFY_TOKEN,
    ))
    .await
    .unwrap();
    let url = cloud.base_url();
    let mut env = cloud_support::ingest_env();
    env.push(("SWITCHYARD_CLOUD_API_URL", url.as_str()));
    env.push(("SWITCHYARD_CLOUD_TOKEN_KEYS", TOKEN_KEYS));
    let p = Pipeline::start_with_env(&pool, &[TenantSpec::echo("wa-a")], &env).await;
    cloud.add_waba("WABA1");
    cloud.subscribe("WABA1", true).unwrap();
    let mut tokens = Vec::new();
    for (tenant, number) in [("cloud-a", "PN1"), ("cloud-b", "PN2")] {
        cloud
            .add_number(PhoneNumberSpec::new(
                "WABA1",
                number,
                format!("1555{number}"),
            ))
            .unwrap();
        let token = cloud.add_token("WABA1").unwrap();
        cloud_tenant(&pool, tenant, number, "WABA1", &token).await;
        tokens.push(token);
    }
    cloud.set_webhook_url(Some(&format!("http://{}/cloud", p.ingest_addr)));

    // Meta stops accepting cloud-a's token: its reply is held, cloud-b's is not.
    cloud.revoke_token(&tokens[0], false).await.unwrap();
    let report = cloud
        .post_batch(
            &Batch::new()
                .text("PN1", "17770001", "held until a new token")
                .text("PN2", "17770002", "to the neighbour"),
        )
        .await
        .unwrap();
    assert!(
        report.first.as_ref().is_some_and(|d| d.acknowledged()),
        "{report:?}"
    );
    poll::until("cloud-a's token marked rejected", WITHIN, || async {
        (stored(&pool, "cloud-a").await.2 == "rejected").then_some(())
    })
    .await;
    poll::until("cloud-b answered", WITHIN, || async {
        cloud
            .accepted_sends()
            .iter()
            .any(|s| s.phone_number_id == "PN2")
            .then_some(())
    })
    .await;
    assert!(
        !cloud
            .accepted_sends()
            .iter()
            .any(|s| s.phone_number_id == "PN1")
    );

    // The customer signs up again; the operator rotates the token.
    let fresh = cloud.add_token("WABA1").unwrap();
    let cli_env = env_with(
        &pool,
        &[
            ("NATS_URL", &p.nats.url()),
            ("SWITCHYARD_CLOUD_TOKEN_KEYS", TOKEN_KEYS),
        ],
    );
    let (exit, out, err) = run_with_stdin(
        &[
            "--json",
            "tenants",
            "cloud",
            "rotate-token",
            "cloud-a",
            "--token-stdin",
        ],
        &cli_env,
        &fresh,
    )
    .await;
    assert_eq!(exit, Exit::Ok, "{out} {err:?}");
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["previous_token_state"], "rejected");
    assert_eq!(out["token_state"], "active");
    assert_eq!(out["steps"][1]["step"], "resume_sending");
    assert_eq!(out["steps"][1]["outcome"], "done");

    let send = poll::until(
        "cloud-a's held reply sent with the new token",
        WITHIN,
        || async {
            cloud
                .accepted_sends()
                .into_iter()
                .find(|s| s.phone_number_id == "PN1")
        },
    )
    .await;
    assert_eq!(
        send.token.as_ref().map(|t| t.as_str()),
        Some(fresh.as_str())
    );
    assert!(
        send.body["text"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("held until a new token")),
        "{send:?}"
    );
    p.settled(WITHIN).await;
    let pn1 = cloud
        .accepted_sends()
        .iter()
        .filter(|s| s.phone_number_id == "PN1")
        .count();
    assert_eq!(pn1, 1, "the held reply goes out once");
}
