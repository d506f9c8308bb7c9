//! `switchyard tenants cloud templates …` against the Cloud simulator
//! (issue 22 point 5): a template is checked here, submitted to Meta with
//! the tenant's own token and stored with Meta's id and status; `sync`
//! brings statuses up to date from Meta's listing; a fallback must be a
//! stored template with at most one body parameter; hostile input is
//! refused with a specific reason before anything reaches Meta; the token
//! is never printed.

use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_bridge_sim::cloud::{CloudSim, CloudSimConfig, PhoneNumberSpec};
use switchyard_cli::exit::Exit;
use switchyard_shared::cloud_api::template_store;
use switchyard_tests::services;

use crate::{
    cli_support::{run_json, run_with_stdin, t, vars},
    cloud_support::{self, TOKEN_KEYS, cloud_tenant},
};

struct World {
    sim: CloudSim,
    env: Vec<(String, String)>,
    token: String,
}

async fn world(pool: &PgPool) -> World {
    let sim = CloudSim::start(CloudSimConfig::new(
        "sim-app",
        cloud_support::APP_SECRET,
        cloud_support::VERIFY_TOKEN,
    ))
    .await
    .unwrap();
    sim.add_waba("WABA1");
    sim.add_number(PhoneNumberSpec::new("WABA1", "PN1", "1555PN1"))
        .unwrap();
    let token = sim.add_token("WABA1").unwrap();
    cloud_tenant(pool, "acme", "PN1", "WABA1", &token).await;
    let mut env = vars(&services::database_url(pool), None, None);
    env.push((
        "SWITCHYARD_CLOUD_TOKEN_KEYS".to_owned(),
        TOKEN_KEYS.to_owned(),
    ));
    env.push(("SWITCHYARD_CLOUD_API_URL".to_owned(), sim.base_url()));
    World { sim, env, token }
}

fn templates(args: &[&str]) -> Vec<String> {
    ["tenants", "cloud", "templates"]
        .iter()
        .chain(args)
        .map(|s| (*s).to_owned())
        .collect()
}

async fn cli(w: &World, args: &[&str]) -> (Exit, String, Option<String>) {
    let args = templates(args);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_with_stdin(&args, &w.env, "").await
}

async fn cli_json(w: &World, args: &[&str]) -> (Exit, Value) {
    let args = templates(args);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_json(&args, &w.env).await
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn templates_are_submitted_listed_synced_and_one_becomes_the_fallback(pool: PgPool) {
    let w = world(&pool).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("order_update.json");
    std::fs::write(
        &file,
        json!([{"type": "BODY", "text": "Order {{order_id}} ships {{day}}.",
                "example": {"body_text_named_params": [
                    {"param_name": "order_id", "example": "A-1"},
                    {"param_name": "day", "example": "Monday"}]}}])
        .to_string(),
    )
    .unwrap();
    w.sim
        .seed_template("WABA1", "made_elsewhere", "en_US", "UTILITY", "APPROVED")
        .unwrap();

    let (exit, added) = cli_json(
        &w,
        &[
            "add",
            "acme",
            "--name",
            "reengage",
            "--language",
            "en_US",
            "--category",
            "utility",
            "--body",
            "Sorry for the wait: {{1}}",
            "--example",
            "your order",
            "--footer",
            "Acme",
        ],
    )
    .await;
    assert_eq!(exit, Exit::Ok, "{added}");
    let (exit, shown, err) = cli(
        &w,
        &[
            "add",
            "acme",
            "--name",
            "order_update",
            "--language",
            "en_US",
            "--category",
            "UTILITY",
            "--components",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(exit, Exit::Ok, "{shown} {err:?}");
    assert!(
        shown.contains("submitted to Meta") && shown.contains("PENDING"),
        "{shown}"
    );

    // Meta holds them as submitted; we hold Meta's id and status.
    let at_meta = w.sim.templates("WABA1");
    let reengage = at_meta
        .iter()
        .find(|t| t.name == "reengage")
        .expect("at Meta");
    assert_eq!(reengage.category, "UTILITY");
    assert_eq!(
        reengage.components[0]["example"]["body_text"],
        json!([["your order"]])
    );
    assert_eq!(reengage.components[1]["text"], "Acme");
    assert_eq!(added["meta_id"], reengage.id.as_str());
    assert_eq!(added["status"], "PENDING");
    assert_eq!(added["body_params"], 1);
    let (exit, listed) = cli_json(&w, &["list", "acme"]).await;
    assert_eq!(exit, Exit::Ok);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["order_update", "reengage"]);
    assert_eq!(listed[0]["body_params"], 2);

    // A fallback fills one parameter at most, and must be stored here.
    let (exit, _, err) = cli(
        &w,
        &[
            "fallback",
            "acme",
            "--name",
            "order_update",
            "--language",
            "en_US",
        ],
    )
    .await;
    assert_eq!(exit, Exit::Usage);
    assert!(err.unwrap().contains("takes 2 body parameters"));
    let (exit, _, err) = cli(
        &w,
        &[
            "fallback",
            "acme",
            "--name",
            "made_elsewhere",
            "--language",
            "en_US",
        ],
    )
    .await;
    assert_eq!(exit, Exit::Usage);
    assert!(
        err.unwrap()
            .contains("has no template made_elsewhere (en_US)")
    );
    let (exit, shown, err) = cli(
        &w,
        &[
            "fallback",
            "acme",
            "--name",
            "reengage",
            "--language",
            "en_US",
        ],
    )
    .await;
    assert_eq!(exit, Exit::Ok, "{err:?}");
    assert!(shown.contains("until Meta approves it"), "{shown}");

    // Meta's review happened while no webhook reached us: sync catches up.
    w.sim
        .set_template_status("WABA1", "reengage", "en_US", "APPROVED", false)
        .await
        .unwrap();
    w.sim
        .set_template_status("WABA1", "order_update", "en_US", "REJECTED", false)
        .await
        .unwrap();
    // One template a page: sync follows Meta's cursors through all three.
    w.sim.set_template_page_max(Some(1));
    let (exit, synced) = cli_json(&w, &["sync", "acme"]).await;
    assert_eq!(exit, Exit::Ok, "{synced}");
    assert_eq!(synced["listed_at_meta"], 3);
    assert_eq!(synced["changed"].as_array().unwrap().len(), 2, "{synced}");
    assert_eq!(synced["only_at_meta"], json!(["made_elsewhere (en_US)"]));
    let (_, listed) = cli_json(&w, &["list", "acme"]).await;
    assert_eq!(
        (listed[0]["name"].as_str(), listed[0]["status"].as_str()),
        (Some("order_update"), Some("REJECTED"))
    );
    assert_eq!(
        (
            listed[1]["status"].as_str(),
            listed[1]["fallback"].as_bool()
        ),
        (Some("APPROVED"), Some(true))
    );
    let (_, again) = cli_json(&w, &["sync", "acme"]).await;
    assert_eq!(
        (
            again["changed"].as_array().unwrap().len(),
            again["unchanged"].as_u64()
        ),
        (0, Some(2))
    );

    // Removing the fallback's template clears the fallback; Meta keeps it.
    let (exit, removed) = cli_json(
        &w,
        &[
            "remove",
            "acme",
            "--name",
            "reengage",
            "--language",
            "en_US",
        ],
    )
    .await;
    assert_eq!(exit, Exit::Ok);
    assert_eq!(removed["was_fallback"], true);
    assert!(
        removed["at_meta"]
            .as_str()
            .unwrap()
            .contains("message_templates?name=reengage")
    );
    assert_eq!(
        template_store::fallback_in(&pool, &t("acme"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(w.sim.templates("WABA1").len(), 3);
    let (exit, _, _) = cli(&w, &["fallback", "acme", "--none"]).await;
    assert_eq!(exit, Exit::Ok);

    for text in [
        added.to_string(),
        listed.to_string(),
        synced.to_string(),
        shown,
    ] {
        assert!(!text.contains(&w.token), "a token is never printed: {text}");
    }
}

/// `add acme --name NAME --language en_US --category UTILITY` and `more`.
fn add_args<'a>(name: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "add",
        "acme",
        "--name",
        name,
        "--language",
        "en_US",
        "--category",
        "UTILITY",
    ];
    args.extend_from_slice(more);
    args
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn hostile_or_broken_templates_are_refused_with_the_reason_before_meta_sees_them(
    pool: PgPool,
) {
    let w = world(&pool).await;
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.json");
    std::fs::write(
        &huge,
        format!(
            "[{{\"type\":\"BODY\",\"text\":\"{}\"}}]",
            "x".repeat(70_000)
        ),
    )
    .unwrap();
    let not_json = dir.path().join("not.json");
    std::fs::write(&not_json, "{\"type\": BODY").unwrap();
    let no_body = dir.path().join("no_body.json");
    std::fs::write(&no_body, r#"[{"type": "FOOTER", "text": "x"}]"#).unwrap();
    let long_name = "a".repeat(513);
    let long_body = "x".repeat(1025);
    let (huge, not_json, no_body) = (
        huge.to_str().unwrap(),
        not_json.to_str().unwrap(),
        no_body.to_str().unwrap(),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            add_args("Bad-Name", &["--body", "hi"]),
            "must be 1-512 of a-z 0-9 _",
        ),
        (
            add_args(&long_name, &["--body", "hi"]),
            "must be 1-512 of a-z 0-9 _",
        ),
        (
            vec![
                "add",
                "acme",
                "--name",
                "ok",
                "--language",
                "en-US",
                "--category",
                "UTILITY",
                "--body",
                "hi",
            ],
            "must be a code such as en or en_US",
        ),
        (
            vec![
                "add",
                "acme",
                "--name",
                "ok",
                "--language",
                "en",
                "--category",
                "PROMO",
                "--body",
                "hi",
            ],
            "must be MARKETING, UTILITY or AUTHENTICATION",
        ),
        (
            add_args("ok", &["--components", huge]),
            "larger than 65536 bytes",
        ),
        (add_args("ok", &["--components", not_json]), "is not JSON"),
        (
            add_args("ok", &["--components", no_body]),
            "a BODY component is required",
        ),
        (
            add_args(
                "ok",
                &[
                    "--body",
                    "Hi {{1}} and {{3}}",
                    "--example",
                    "a",
                    "--example",
                    "b",
                ],
            ),
            "without a gap",
        ),
        (
            add_args("ok", &["--body", "Hi {{1}}"]),
            "give one --example for each",
        ),
        (
            add_args("ok", &["--body", &long_body]),
            "BODY text must be 1-1024 characters",
        ),
        (
            add_args("ok", &["--body", "hi", "--header", "{{1}} {{2}}"]),
            "at most one placeholder",
        ),
        (
            add_args("ok", &["--body", "hi", "--footer", "Call {{1}}"]),
            "FOOTER takes no placeholder",
        ),
    ];
    for (args, reason) in &cases {
        let (exit, out, err) = cli(&w, args).await;
        let err = err.unwrap_or_default();
        assert_eq!(exit, Exit::Usage, "{args:?}: {out} {err}");
        assert!(err.contains(reason), "{args:?}: {err}");
    }
    let (exit, _, err) = cli(
        &w,
        &[
            "add",
            "nobody",
            "--name",
            "x",
            "--language",
            "en",
            "--category",
            "UTILITY",
            "--body",
            "hi",
        ],
    )
    .await;
    assert_eq!(exit, Exit::Usage);
    assert!(err.unwrap().contains("unknown tenant nobody"));
    assert!(w.sim.templates("WABA1").is_empty(), "nothing reached Meta");

    // Meta's own refusal (a duplicate name and language there) is shown
    // without the token, and nothing is stored.
    w.sim
        .seed_template("WABA1", "dup_tpl", "en_US", "UTILITY", "APPROVED")
        .unwrap();
    let (exit, _, err) = cli(&w, &add_args("dup_tpl", &["--body", "hi"])).await;
    let err = err.unwrap();
    assert_eq!(exit, Exit::Failure, "{err}");
    assert!(
        err.contains("Meta refused template dup_tpl (en_US)") && err.contains("100"),
        "{err}"
    );
    assert!(!err.contains(&w.token));
    assert!(
        template_store::list_in(&pool, &t("acme"))
            .await
            .unwrap()
            .is_empty()
    );
}
