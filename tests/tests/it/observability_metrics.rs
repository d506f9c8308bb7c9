//! Every metric the alert rules (`deploy/prometheus/alerts.yaml`) and the
//! Grafana dashboards (`deploy/grafana/*.json`) name is one the services
//! really serve: the whole pipeline runs in-process, one message goes
//! through, and each name is looked up in what ingest, router and sender
//! answer on `/metrics`. The only exceptions are [`NOT_OURS`]: Prometheus's
//! own `up` and the nats-server gauges of the prometheus-nats-exporter.
//! (In one process the three services share one recorder, so this proves a
//! name is served by some service, which is what an expression needs.)
//! `deploy/check-manifests.sh` checks the same expressions' syntax.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    time::Duration,
};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use sqlx::PgPool;
use switchyard_bridge_sim::events::TextMessage;
use switchyard_tests::{
    pipeline::{Pipeline, TenantSpec},
    poll,
};

use crate::settings_docs::workspace_root;

const WITHIN: Duration = Duration::from_secs(30);

/// Names the rules and dashboards may use that no Switchyard service serves
/// (docs/operations.md, "Alerts").
const NOT_OURS: &[&str] = &[
    "up",
    "nats_varz_jetstream_stats_storage",
    "nats_varz_jetstream_config_max_storage",
];

/// The metric names in a PromQL expression: identifiers outside label
/// values that name one of ours, a NATS exporter gauge, or `up`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Label values are quoted: drop them before splitting.
    let mut unquoted = String::with_capacity(expr.len());
    let mut in_quote = false;
    for c in expr.chars() {
        if c == '"' {
            in_quote = !in_quote;
        } else if !in_quote {
            unquoted.push(c);
        }
    }
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| {
            token.starts_with("switchyard_") || token.starts_with("nats_") || *token == "up"
        })
        .map(str::to_owned)
        .collect()
}

/// Every expression of the alert rules and the dashboards, by where it is.
fn referenced_expressions() -> Vec<(String, String)> {
    let root = workspace_root();
    let mut found = Vec::new();
    let rules: Yaml = serde_yaml::from_str(
        &fs::read_to_string(root.join("deploy/prometheus/alerts.yaml")).expect("alerts.yaml"),
    )
    .expect("alerts.yaml is YAML");
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("an alert name");
            let expr = rule["expr"].as_str().expect("an expression");
            found.push((format!("alert {name}"), expr.to_owned()));
        }
    }
    let mut boards: Vec<_> = fs::read_dir(root.join("deploy/grafana"))
        .expect("deploy/grafana")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    boards.sort();
    assert!(
        boards.len() >= 2,
        "the fleet and tenant dashboards: {boards:?}"
    );
    for path in boards {
        let board: Json =
            serde_json::from_str(&fs::read_to_string(&path).expect("a dashboard")).expect("JSON");
        let file = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        for variable in board["templating"]["list"].as_array().expect("templating") {
            if let Some(definition) = variable["definition"].as_str() {
                found.push((format!("{file} variable"), definition.to_owned()));
            }
        }
        for panel in board["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let title = panel["title"].as_str().unwrap_or("?");
                let expr = target["expr"].as_str().expect("a query");
                found.push((format!("{file} panel {title:?}"), expr.to_owned()));
            }
        }
    }
    found
}

/// The metric names served on `/metrics` at `addr`, with every sample line.
async fn scrape(http: &reqwest::Client, addr: std::net::SocketAddr) -> String {
    http.get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a body")
}

fn served_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_name_extractor_skips_label_values_functions_and_variables() {
    let names = metric_names(
        r#"sum by (le) (rate(switchyard_tenant_reply_seconds_bucket{tenant="$tenant",job=~"switchyard_x.*"}[5m])) / on() up"#,
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "switchyard_tenant_reply_seconds_bucket".to_owned(),
            "up".to_owned()
        ])
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn every_metric_the_alerts_and_dashboards_name_is_served_by_the_services(pool: PgPool) {
    let p = Pipeline::start(&pool, &[TenantSpec::echo("alpha")]).await;
    let message = TextMessage::new("15550000001", "hello").to_json();
    assert_eq!(p.post("alpha", message).await, Some(200));
    p.sim
        .wait_for_sends(1, WITHIN)
        .await
        .expect("one reply sent");

    // The send is counted once the provider's answer is applied: poll for it.
    let served = poll::until("alpha's send and latency on /metrics", WITHIN, || async {
        let mut text = String::new();
        for service in [&p.ingest, &p.router, &p.sender] {
            text.push_str(&scrape(&p.http, service.ops_addr).await);
        }
        let labelled = [
            r#"switchyard_tenant_sends_total{tenant="alpha",outcome="sent"} 1"#,
            r#"switchyard_tenant_reply_seconds_count{tenant="alpha"} 1"#,
        ];
        labelled
            .iter()
            .all(|line| text.contains(line))
            .then(|| served_names(&text))
    })
    .await;

    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let expressions = referenced_expressions();
    for (place, expr) in &expressions {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: no metric found in {expr}");
        for name in names {
            if !served.contains(&name) && !NOT_OURS.contains(&name.as_str()) {
                missing.entry(name).or_default().push(place.clone());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named by the alerts or dashboards but served by no service: {missing:#?}"
    );
}
