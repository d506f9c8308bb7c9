//! The deployment artefacts give the services only settings they read, with
//! values they accept: every environment variable that `deploy/compose/compose.yaml`
//! and the rendered Kubernetes overlays (`kubectl kustomize deploy/k8s/…`)
//! set for a Switchyard container is a name that binary's code reads (the
//! scan of `settings_docs`, over `shared` plus the binary's own crate), and
//! the whole set passes the binary's own settings parsers
//! (`CommonSettings::from_env`, `Settings::from_env` of ingest, router and
//! sender), so a typo, a bad duration or an out-of-range number fails here
//! rather than at start-up in a cluster. Secrets are referenced, never
//! inlined: their values are placeholders here. Also: the autoscalers' maximum
//! is the partition count, and compose's healthchecks are `--probe`.
//!
//! Needs `kubectl` (it renders kustomize without other tools), as
//! `deploy/check-manifests.sh` does.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use serde_yaml::Value;
use switchyard_shared::config::{CommonSettings, DatabaseSettings, Env, NatsSettings};

use crate::settings_docs::{settings_read_in, workspace_root};

/// The environment one container of one artefact gets.
#[derive(Debug)]
struct Container {
    /// Where it was found, for messages (`compose router`, `prod Deployment/switchyard-router`).
    origin: String,
    /// The binary it runs (the command's first word).
    binary: String,
    vars: BTreeMap<String, String>,
}

/// The workspace members whose sources hold a binary's settings.
fn members_of(binary: &str) -> &'static [&'static str] {
    match binary {
        "switchyard-ingest" => &["shared", "ingest"],
        "switchyard-router" => &["shared", "router"],
        "switchyard-sender" => &["shared", "sender"],
        "switchyard" => &["shared", "cli"],
        "wabridges-sim" => &["shared", "bridge-sim"],
        other => panic!("a container runs {other:?}, which is not a Switchyard binary"),
    }
}

/// Runs the binary's own settings parsers over `vars`.
fn check_values(binary: &str, vars: &BTreeMap<String, String>) -> Result<(), String> {
    let env = Env::from_map(vars.clone());
    let err = |e: &dyn std::fmt::Display| format!("{e:#}");
    match binary {
        "switchyard-ingest" => {
            CommonSettings::from_env(&env, 9101).map_err(|e| err(&e))?;
            switchyard_ingest::Settings::from_env(&env).map_err(|e| err(&e))?;
        }
        "switchyard-router" => {
            CommonSettings::from_env(&env, 9102).map_err(|e| err(&e))?;
            switchyard_router::Settings::from_env(&env).map_err(|e| err(&e))?;
        }
        "switchyard-sender" => {
            CommonSettings::from_env(&env, 9103).map_err(|e| err(&e))?;
            switchyard_sender::Settings::from_env(&env).map_err(|e| err(&e))?;
        }
        "switchyard" => {
            DatabaseSettings::from_env(&env).map_err(|e| err(&e))?;
            NatsSettings::from_env(&env).map_err(|e| err(&e))?;
        }
        // Its settings are clap's (in its main.rs): check what is cheap.
        "wabridges-sim" => {
            if let Some(addr) = vars.get("WABRIDGES_SIM_ADDR") {
                addr.parse::<std::net::SocketAddr>()
                    .map_err(|e| format!("WABRIDGES_SIM_ADDR {addr:?}: {e}"))?;
            }
        }
        other => return Err(format!("unknown binary {other}")),
    }
    Ok(())
}

/// Every problem of `containers`, one line each.
fn problems(containers: &[Container], root: &Path) -> Vec<String> {
    let mut read: BTreeMap<&[&str], BTreeSet<String>> = BTreeMap::new();
    let mut found = Vec::new();
    for c in containers {
        let settings = read
            .entry(members_of(&c.binary))
            .or_insert_with(|| settings_read_in(root, members_of(&c.binary)));
        for name in c.vars.keys() {
            if !settings.contains(name) {
                found.push(format!(
                    "{}: {name} is not a setting {} reads",
                    c.origin, c.binary
                ));
            }
        }
        if let Err(e) = check_values(&c.binary, &c.vars) {
            found.push(format!(
                "{}: {} refuses its settings: {e}",
                c.origin, c.binary
            ));
        }
    }
    found
}

/// A YAML scalar as the string a container would see.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A value the secret would supply: something each parser accepts.
fn placeholder_secret(variable: &str) -> String {
    match variable {
        "DATABASE_URL" => "postgres://placeholder@127.0.0.1:5432/placeholder".to_owned(),
        // 24 bytes: ingest refuses a shorter key.
        "SWITCHYARD_SIGNING_SECRET" => "whsec_cGxhY2Vob2xkZXItcGxhY2Vob2xkZXIh".to_owned(),
        _ => format!("placeholder-for-{}", variable.to_ascii_lowercase()),
    }
}

/// Compose interpolation with the defaults: `${X:-d}` and `${X-d}` become
/// `d`; a bare `${X}` has no value without the caller's environment.
fn interpolate(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {raw:?}"))?;
        let expr = &after[..end];
        let default = expr
            .split_once(":-")
            .or_else(|| expr.split_once('-'))
            .map(|(_, d)| d)
            .ok_or_else(|| format!("{raw:?}: ${{{expr}}} has no default"))?;
        out.push_str(default);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn first_word(command: &Value) -> Option<String> {
    command.as_sequence()?.first().and_then(scalar)
}

/// The compose file's Switchyard services (those running our image).
fn compose_containers(root: &Path) -> (Vec<Container>, Vec<String>) {
    let path = root.join("deploy/compose/compose.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut doc: Value = serde_yaml::from_str(&text).expect("compose.yaml parses");
    doc.apply_merge().expect("merge keys");
    let mut containers = Vec::new();
    let mut problems = Vec::new();
    let services = doc["services"].as_mapping().expect("services");
    let mut partitions: Option<u64> = None;
    for (name, service) in services {
        let name = scalar(name).unwrap_or_default();
        let image = service["image"].as_str().unwrap_or("");
        if !image.starts_with("${SWITCHYARD_IMAGE") {
            continue;
        }
        let binary =
            first_word(&service["command"]).unwrap_or_else(|| panic!("compose {name}: no command"));
        let mut vars = BTreeMap::new();
        if let Some(env) = service["environment"].as_mapping() {
            for (key, value) in env {
                let key = scalar(key).unwrap_or_default();
                let raw = scalar(value).unwrap_or_default();
                match interpolate(&raw) {
                    Ok(v) => {
                        vars.insert(key, v);
                    }
                    Err(e) => problems.push(format!("compose {name}: {key}: {e}")),
                }
            }
        }
        if let Some(p) = vars.get("SWITCHYARD_PARTITIONS") {
            partitions = p.parse().ok();
        }
        if matches!(
            binary.as_str(),
            "switchyard-ingest" | "switchyard-router" | "switchyard-sender"
        ) {
            let probe = service["healthcheck"]["test"]
                .as_sequence()
                .map(|t| t.iter().filter_map(scalar).collect::<Vec<_>>());
            if probe != Some(vec!["CMD".to_owned(), binary.clone(), "--probe".to_owned()]) {
                problems.push(format!(
                    "compose {name}: the healthcheck must be [CMD, {binary}, --probe], is {probe:?}"
                ));
            }
        }
        containers.push(Container {
            origin: format!("compose {name}"),
            binary,
            vars,
        });
    }
    // More replicas than partitions would only stand by.
    for name in ["router", "sender"] {
        let replicas = services
            .get(name)
            .and_then(|s| s["deploy"]["replicas"].as_u64());
        if let (Some(r), Some(p)) = (replicas, partitions)
            && r > p
        {
            problems.push(format!("compose {name}: {r} replicas for {p} partitions"));
        }
    }
    (containers, problems)
}

/// `kubectl kustomize deploy/k8s/<dir>`, one Value per document.
fn render(root: &Path, dir: &str) -> Vec<Value> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(root.join("deploy/k8s").join(dir))
        .output()
        .unwrap_or_else(|e| panic!("kubectl is needed to render the overlays: {e}"));
    assert!(
        output.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

use serde::Deserialize as _;

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("")
}

/// Every container (init containers too) of an overlay's Deployments and Jobs.
fn k8s_containers(overlay: &str, docs: &[Value]) -> (Vec<Container>, Vec<String>) {
    let config_maps: BTreeMap<&str, &Value> = docs
        .iter()
        .filter(|d| kind(d) == "ConfigMap")
        .map(|d| (name(d), &d["data"]))
        .collect();
    let mut containers = Vec::new();
    let mut problems = Vec::new();
    for doc in docs
        .iter()
        .filter(|d| matches!(kind(d), "Deployment" | "Job"))
    {
        let pod = &doc["spec"]["template"]["spec"];
        let all = [&pod["initContainers"], &pod["containers"]];
        for container in all.into_iter().filter_map(Value::as_sequence).flatten() {
            let origin = format!(
                "{overlay} {}/{} container {}",
                kind(doc),
                name(doc),
                container["name"].as_str().unwrap_or("?")
            );
            let Some(binary) = first_word(&container["command"]) else {
                problems.push(format!("{origin}: no command"));
                continue;
            };
            let mut vars = BTreeMap::new();
            for from in container["envFrom"].as_sequence().into_iter().flatten() {
                let Some(map) = from["configMapRef"]["name"].as_str() else {
                    problems.push(format!(
                        "{origin}: envFrom other than a ConfigMap: {from:?}"
                    ));
                    continue;
                };
                let Some(data) = config_maps.get(map).and_then(|d| d.as_mapping()) else {
                    problems.push(format!("{origin}: ConfigMap {map} is not in the overlay"));
                    continue;
                };
                for (k, v) in data {
                    vars.insert(scalar(k).unwrap_or_default(), scalar(v).unwrap_or_default());
                }
            }
            for var in container["env"].as_sequence().into_iter().flatten() {
                let key = var["name"].as_str().unwrap_or_default().to_owned();
                let value = if let Some(v) = scalar(&var["value"]) {
                    v
                } else if var["valueFrom"]["secretKeyRef"].is_mapping() {
                    placeholder_secret(&key)
                } else if var["valueFrom"]["fieldRef"].is_mapping() {
                    "pod-name-placeholder".to_owned()
                } else {
                    problems.push(format!("{origin}: {key} has neither a value nor a secret"));
                    continue;
                };
                vars.insert(key, value);
            }
            containers.push(Container {
                origin,
                binary,
                vars,
            });
        }
    }
    // A secret is referenced, never inlined: no secret-bearing variable has a
    // literal value or sits in a ConfigMap.
    for c in &containers {
        for secret in [
            "DATABASE_URL",
            "WA_API_KEY",
            "SWITCHYARD_WEBHOOK_SECRET",
            "SWITCHYARD_WEBHOOK_SECRET_PREVIOUS",
            "SWITCHYARD_SIGNING_SECRET",
        ] {
            if c.vars
                .get(secret)
                .is_some_and(|v| *v != placeholder_secret(secret))
            {
                problems.push(format!("{}: {secret} must come from a Secret", c.origin));
            }
        }
    }
    // The autoscalers stop at the partition count.
    for scaled in docs.iter().filter(|d| kind(d) == "ScaledObject") {
        let target = scaled["spec"]["scaleTargetRef"]["name"]
            .as_str()
            .unwrap_or("");
        let max = scaled["spec"]["maxReplicaCount"].as_u64();
        let partitions = containers
            .iter()
            .find(|c| {
                c.origin.contains(&format!("Deployment/{target} "))
                    && !c.origin.ends_with("wait-for-schema")
            })
            .and_then(|c| c.vars.get("SWITCHYARD_PARTITIONS"))
            .and_then(|p| p.parse::<u64>().ok());
        if max.is_none() || max != partitions {
            problems.push(format!(
                "{overlay} ScaledObject/{}: maxReplicaCount {max:?} must equal SWITCHYARD_PARTITIONS {partitions:?} of {target}",
                name(scaled)
            ));
        }
    }
    (containers, problems)
}

#[test]
fn compose_and_the_kubernetes_overlays_set_only_settings_the_services_read_with_valid_values() {
    let root = workspace_root();
    let (mut containers, mut found) = compose_containers(&root);
    let compose_count = containers.len();
    for overlay in ["base", "overlays/dev", "overlays/prod"] {
        let docs = render(&root, overlay);
        let (c, p) = k8s_containers(overlay, &docs);
        containers.extend(c);
        found.extend(p);
    }
    found.extend(problems(&containers, &root));
    assert!(
        found.is_empty(),
        "deployment artefacts:\n{}",
        found.join("\n")
    );

    // Not vacuous: each artefact runs every service, and the migration.
    assert!(
        compose_count >= 5,
        "compose: {compose_count} Switchyard services"
    );
    for overlay in ["overlays/dev", "overlays/prod"] {
        for binary in [
            "switchyard-ingest",
            "switchyard-router",
            "switchyard-sender",
            "switchyard",
        ] {
            assert!(
                containers
                    .iter()
                    .any(|c| c.origin.starts_with(overlay) && c.binary == binary),
                "{overlay} runs no {binary}"
            );
        }
    }
    assert!(
        containers
            .iter()
            .any(|c| c.origin.starts_with("compose") && c.binary == "switchyard-sender"),
        "compose runs no sender"
    );
}

#[test]
fn a_misspelt_name_or_a_value_a_service_refuses_is_reported() {
    let root = workspace_root();
    let container = |vars: &[(&str, &str)]| Container {
        origin: "test".to_owned(),
        binary: "switchyard-router".to_owned(),
        vars: vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    assert!(problems(&[container(&[("SWITCHYARD_ACK_WAIT", "5s")])], &root).is_empty());
    let typo = problems(&[container(&[("SWITCHYARD_ACKWAIT", "5s")])], &root);
    assert!(
        typo.iter().any(|p| p.contains("SWITCHYARD_ACKWAIT")),
        "{typo:?}"
    );
    let bad = problems(&[container(&[("SWITCHYARD_ACK_WAIT", "soon")])], &root);
    assert!(bad.iter().any(|p| p.contains("refuses")), "{bad:?}");
    let range = problems(&[container(&[("SWITCHYARD_PARTITIONS", "0")])], &root);
    assert!(
        range.iter().any(|p| p.contains("SWITCHYARD_PARTITIONS")),
        "{range:?}"
    );
    // An ingest-only setting on the router is not one the router reads.
    let foreign = problems(
        &[container(&[("SWITCHYARD_HTTP_ADDR", "0.0.0.0:8080")])],
        &root,
    );
    assert!(
        foreign.iter().any(|p| p.contains("SWITCHYARD_HTTP_ADDR")),
        "{foreign:?}"
    );

    assert_eq!(interpolate("a${X:-b}c${Y-d}").unwrap(), "abcd");
    assert!(interpolate("${X}").is_err());
}
