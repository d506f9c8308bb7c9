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
    let mut vars = vars.clone();
    // The mounted secret is not on this machine: the parsers read a stand-in
    // (where the path points is checked by the artefact's NATS checks).
    if let Some(file) = vars.get_mut("NATS_PASSWORD_FILE") {
        *file = placeholder_password_file();
    }
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
    let users = permissions_conf(root);
    let mut containers = Vec::new();
    let mut problems = compose_nats_server_problems(root, &doc);
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
        problems.extend(compose_nats_problems(
            &name, &binary, service, &doc, &vars, &users,
        ));
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
fn k8s_containers(
    overlay: &str,
    docs: &[Value],
    users: &BTreeMap<String, NatsUser>,
) -> (Vec<Container>, Vec<String>) {
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
        let all = [(true, &pod["initContainers"]), (false, &pod["containers"])];
        for (is_init, container) in all
            .into_iter()
            .filter_map(|(init, list)| list.as_sequence().map(|l| (init, l)))
            .flat_map(|(init, l)| l.iter().map(move |c| (init, c)))
        {
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
            problems.extend(k8s_nats_problems(
                &origin, &binary, is_init, pod, container, &vars, users,
            ));
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
    let users = permissions_conf(&root);
    for overlay in ["base", "overlays/dev", "overlays/prod"] {
        let docs = render(&root, overlay);
        let (c, p) = k8s_containers(overlay, &docs, &users);
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

// ---------------------------------------------------------------------------
// NATS users: permissions.conf is the source; compose mounts it, the Helm
// values carry a copy that must say the same, and every service connects as
// its own user with its own password file.

/// One NATS user's permissions: the publish and subscribe allow lists, and
/// what its `password` says (a `$VARIABLE`, never a literal).
#[derive(Debug, Default, PartialEq, Eq)]
struct NatsUser {
    password: String,
    publish: BTreeSet<String>,
    subscribe: BTreeSet<String>,
}

/// The users of a nats-server `authorization { users: [...] }` block as
/// `deploy/nats/permissions.conf` writes it: `user: NAME`, `password: $VAR`,
/// `publish`/`subscribe` each with an `allow: [ "subject" ... ]` list. Any
/// other permission key (`deny`, `allow_responses`) is refused, so a form
/// this reader does not understand fails rather than compares as empty.
fn parse_permissions_conf(text: &str) -> Result<BTreeMap<String, NatsUser>, String> {
    // Tokens: quoted strings, words, punctuation; `#` comments outside quotes.
    let mut tokens: Vec<String> = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                let mut s = String::from('"');
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    s.push(c);
                }
                tokens.push(s);
            }
            '{' | '}' | '[' | ']' | ':' | ',' | '=' => tokens.push(c.to_string()),
            c if c.is_whitespace() => {}
            c => {
                let mut s = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || "{}[]:,=#\"".contains(n) {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                tokens.push(s);
            }
        }
    }
    let unquote = |t: &str| t.strip_prefix('"').unwrap_or(t).to_owned();
    let mut users = BTreeMap::new();
    let mut current: Option<(String, NatsUser)> = None;
    let mut section: Option<&str> = None;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let value = tokens.get(i + 2).map(|v| unquote(v));
        let is_key = tokens.get(i + 1).is_some_and(|n| n == ":" || n == "=");
        match t {
            "user" if is_key => {
                if let Some((name, user)) = current.take() {
                    users.insert(name, user);
                }
                current = Some((value.ok_or("user: without a name")?, NatsUser::default()));
                i += 3;
                continue;
            }
            "password" if is_key => {
                let (_, user) = current.as_mut().ok_or("password outside a user")?;
                user.password = value.ok_or("password: without a value")?;
                i += 3;
                continue;
            }
            "publish" | "subscribe" if is_key => {
                section = Some(if t == "publish" {
                    "publish"
                } else {
                    "subscribe"
                })
            }
            "deny" | "allow_responses" | "nkey" | "accounts" | "default_permissions" => {
                return Err(format!(
                    "{t}: this reader only understands users with allow lists"
                ));
            }
            "allow" if is_key => {
                let (name, user) = current.as_mut().ok_or("allow outside a user")?;
                let list = match section {
                    Some("publish") => &mut user.publish,
                    Some("subscribe") => &mut user.subscribe,
                    _ => return Err(format!("{name}: allow outside publish/subscribe")),
                };
                if tokens.get(i + 2).map(String::as_str) != Some("[") {
                    return Err(format!("{name}: allow is not a list"));
                }
                i += 3;
                while i < tokens.len() && tokens[i] != "]" {
                    if tokens[i] != "," {
                        list.insert(unquote(&tokens[i]));
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if let Some((name, user)) = current {
        users.insert(name, user);
    }
    Ok(users)
}

fn permissions_conf(root: &Path) -> BTreeMap<String, NatsUser> {
    let path = root.join("deploy/nats/permissions.conf");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let users = parse_permissions_conf(&text).unwrap_or_else(|e| panic!("permissions.conf: {e}"));
    assert!(
        ["ingest", "router", "sender", "cli"]
            .iter()
            .all(|u| users.contains_key(*u)),
        "permissions.conf: users {:?}",
        users.keys().collect::<Vec<_>>()
    );
    users
}

/// The users of the nats chart's `config.merge.authorization.users`, with
/// the chart's `<< $VAR >>` (an unquoted value) read as `$VAR`.
fn helm_users(values: &Value) -> Result<BTreeMap<String, NatsUser>, String> {
    let users = values["config"]["merge"]["authorization"]["users"]
        .as_sequence()
        .ok_or("no config.merge.authorization.users")?;
    let list = |v: &Value| -> Result<BTreeSet<String>, String> {
        v.as_sequence()
            .ok_or_else(|| format!("not a list: {v:?}"))?
            .iter()
            .map(|s| scalar(s).ok_or_else(|| format!("not a subject: {s:?}")))
            .collect()
    };
    let mut out = BTreeMap::new();
    for u in users {
        let name = scalar(&u["user"]).ok_or("a user without a name")?;
        let raw = scalar(&u["password"]).unwrap_or_default();
        let password = raw
            .strip_prefix("<<")
            .and_then(|p| p.strip_suffix(">>"))
            .map(|p| p.trim().to_owned())
            .unwrap_or(raw);
        let permissions = &u["permissions"];
        for (key, _) in permissions.as_mapping().into_iter().flatten() {
            if !matches!(key.as_str(), Some("publish" | "subscribe")) {
                return Err(format!("{name}: permission key {key:?} is not compared"));
            }
        }
        for side in ["publish", "subscribe"] {
            for (key, _) in permissions[side].as_mapping().into_iter().flatten() {
                if key.as_str() != Some("allow") {
                    return Err(format!("{name}: {side}.{key:?} is not compared"));
                }
            }
        }
        let user = NatsUser {
            password,
            publish: list(&permissions["publish"]["allow"])?,
            subscribe: list(&permissions["subscribe"]["allow"])?,
        };
        if out.insert(name.clone(), user).is_some() {
            return Err(format!("user {name} twice"));
        }
    }
    Ok(out)
}

/// How `helm` differs from `source`, one line per difference.
fn nats_user_differences(
    source: &BTreeMap<String, NatsUser>,
    helm: &BTreeMap<String, NatsUser>,
) -> Vec<String> {
    let mut found = Vec::new();
    for name in source.keys().chain(helm.keys()).collect::<BTreeSet<_>>() {
        let (Some(s), Some(h)) = (source.get(name), helm.get(name)) else {
            found.push(format!(
                "user {name} is only in {}",
                if source.contains_key(name) {
                    "permissions.conf"
                } else {
                    "nats-values.yaml"
                }
            ));
            continue;
        };
        if s.password != h.password {
            found.push(format!(
                "{name}: password {:?} in permissions.conf, {:?} in the Helm values",
                s.password, h.password
            ));
        }
        for (side, a, b) in [
            ("publish", &s.publish, &h.publish),
            ("subscribe", &s.subscribe, &h.subscribe),
        ] {
            for missing in a.difference(b) {
                found.push(format!(
                    "{name}: {side} {missing:?} is missing from the Helm values"
                ));
            }
            for extra in b.difference(a) {
                found.push(format!(
                    "{name}: {side} {extra:?} is in the Helm values, not in permissions.conf"
                ));
            }
        }
    }
    found
}

/// The Helm values' users against permissions.conf, and their passwords
/// against the chart's container environment (each a secretKeyRef).
fn helm_nats_problems(values: &Value, source: &BTreeMap<String, NatsUser>) -> Vec<String> {
    let helm = match helm_users(values) {
        Ok(h) => h,
        Err(e) => return vec![format!("nats-values.yaml: {e}")],
    };
    let mut found = nats_user_differences(source, &helm);
    for (name, user) in &helm {
        let Some(var) = user.password.strip_prefix('$') else {
            found.push(format!(
                "nats-values.yaml: {name}'s password is not a variable (a literal secret?)"
            ));
            continue;
        };
        let env = &values["container"]["env"][var];
        if !env["valueFrom"]["secretKeyRef"]["name"].is_string() || !env["value"].is_null() {
            found.push(format!(
                "nats-values.yaml: container.env.{var} must be a secretKeyRef"
            ));
        }
    }
    if values["natsBox"]["enabled"].as_bool() != Some(false) {
        found.push(
            "nats-values.yaml: nats-box has no credentials: natsBox.enabled must be false"
                .to_owned(),
        );
    }
    found
}

/// The NATS user a binary connects as, when the artefact runs it as a service.
fn expected_nats_user(binary: &str) -> Option<&'static str> {
    match binary {
        "switchyard-ingest" => Some("ingest"),
        "switchyard-router" => Some("router"),
        "switchyard-sender" => Some("sender"),
        "switchyard" => Some("cli"),
        _ => None,
    }
}

/// A file standing in for a mounted password, for the settings parsers.
fn placeholder_password_file() -> String {
    use std::sync::OnceLock;
    static FILE: OnceLock<tempfile::TempPath> = OnceLock::new();
    let path = FILE.get_or_init(|| {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut file, b"placeholder-nats-password\n").unwrap();
        file.into_temp_path()
    });
    path.display().to_string()
}

/// Compose: the service's NATS_USER is a user of permissions.conf (its own,
/// for a service) and NATS_PASSWORD_FILE is that user's compose secret,
/// mounted into it and read from a file, never a literal in compose.yaml.
fn compose_nats_problems(
    name: &str,
    binary: &str,
    service: &Value,
    doc: &Value,
    vars: &BTreeMap<String, String>,
    users: &BTreeMap<String, NatsUser>,
) -> Vec<String> {
    let mut found = Vec::new();
    if vars.contains_key("NATS_PASSWORD") {
        found.push(format!(
            "compose {name}: NATS_PASSWORD inline; use NATS_PASSWORD_FILE and a secret"
        ));
    }
    let Some(user) = vars.get("NATS_USER") else {
        if expected_nats_user(binary).is_some() {
            found.push(format!(
                "compose {name}: no NATS_USER (anonymous clients are refused)"
            ));
        }
        return found;
    };
    if !users.contains_key(user) {
        found.push(format!(
            "compose {name}: NATS_USER {user} is not a user of permissions.conf"
        ));
    }
    if let Some(own) = expected_nats_user(binary)
        && binary != "switchyard"
        && own != user
    {
        found.push(format!(
            "compose {name}: {binary} connects as {user}, not as {own}"
        ));
    }
    let secret = format!("nats-{user}-password");
    if vars.get("NATS_PASSWORD_FILE") != Some(&format!("/run/secrets/{secret}")) {
        found.push(format!(
            "compose {name}: NATS_PASSWORD_FILE must be /run/secrets/{secret}"
        ));
    }
    let mounted = service["secrets"]
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|s| s.as_str() == Some(&secret) || s["source"].as_str() == Some(&secret));
    if !mounted {
        found.push(format!(
            "compose {name}: the secret {secret} is not mounted"
        ));
    }
    if !doc["secrets"][secret.as_str()]["file"].is_string() {
        found.push(format!("compose: the secret {secret} is not a file secret"));
    }
    found
}

/// Compose's NATS servers: nats.conf includes permissions.conf, each node
/// mounts it beside nats.conf and gets the passwords from an env file.
fn compose_nats_server_problems(root: &Path, doc: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let conf = std::fs::read_to_string(root.join("deploy/compose/nats.conf")).unwrap_or_default();
    if !conf
        .lines()
        .any(|l| l.trim() == "include ./permissions.conf")
    {
        found.push("compose nats.conf: no `include ./permissions.conf`".to_owned());
    }
    let mut nodes = 0;
    for (name, service) in doc["services"].as_mapping().into_iter().flatten() {
        let name = scalar(name).unwrap_or_default();
        if !service["image"].as_str().unwrap_or("").starts_with("nats:") {
            continue;
        }
        nodes += 1;
        let volumes: Vec<&str> = service["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !volumes.contains(&"../nats/permissions.conf:/etc/nats/permissions.conf:ro") {
            found.push(format!(
                "compose {name}: permissions.conf is not mounted beside nats.conf"
            ));
        }
        let env_files: Vec<String> = match &service["env_file"] {
            Value::String(s) => vec![s.clone()],
            Value::Sequence(s) => s
                .iter()
                .filter_map(|e| scalar(e).or_else(|| scalar(&e["path"])))
                .collect(),
            _ => vec![],
        };
        if !env_files.iter().any(|f| f == "./secrets/nats.env") {
            found.push(format!(
                "compose {name}: the passwords' env file ./secrets/nats.env is not loaded"
            ));
        }
        if let Some(env) = service["environment"].as_mapping()
            && env
                .keys()
                .any(|k| k.as_str().is_some_and(|k| k.starts_with("SY_NATS_")))
        {
            found.push(format!(
                "compose {name}: a NATS password inline in compose.yaml"
            ));
        }
    }
    if nodes != 3 {
        found.push(format!("compose: {nodes} NATS servers, expected 3"));
    }
    found
}

/// Kubernetes: a container with NATS_USER reads its password from a file of
/// a Secret volume mounted into it, that Secret's key `<user>-password`.
fn k8s_nats_problems(
    origin: &str,
    binary: &str,
    is_init: bool,
    pod: &Value,
    container: &Value,
    vars: &BTreeMap<String, String>,
    users: &BTreeMap<String, NatsUser>,
) -> Vec<String> {
    let mut found = Vec::new();
    if vars.contains_key("NATS_PASSWORD") {
        found.push(format!(
            "{origin}: NATS_PASSWORD; use NATS_PASSWORD_FILE from a Secret volume"
        ));
    }
    let Some(user) = vars.get("NATS_USER") else {
        // The migration and the init containers reach only PostgreSQL.
        if binary != "switchyard" && !is_init && expected_nats_user(binary).is_some() {
            found.push(format!(
                "{origin}: no NATS_USER (anonymous clients are refused)"
            ));
        }
        return found;
    };
    if !users.contains_key(user) {
        found.push(format!(
            "{origin}: NATS_USER {user} is not a user of permissions.conf"
        ));
    }
    if let Some(own) = expected_nats_user(binary)
        && binary != "switchyard"
        && own != user
    {
        found.push(format!(
            "{origin}: {binary} connects as {user}, not as {own}"
        ));
    }
    let Some(file) = vars.get("NATS_PASSWORD_FILE") else {
        found.push(format!("{origin}: NATS_USER without NATS_PASSWORD_FILE"));
        return found;
    };
    let key = format!("{user}-password");
    let from_secret = container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|mount| {
            let (Some(dir), Some(volume)) = (mount["mountPath"].as_str(), mount["name"].as_str())
            else {
                return false;
            };
            let Some(rel) = file.strip_prefix(&format!("{}/", dir.trim_end_matches('/'))) else {
                return false;
            };
            pod["volumes"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter(|v| v["name"].as_str() == Some(volume))
                .any(|v| {
                    let items = v["secret"]["items"].as_sequence();
                    match items {
                        Some(items) => items.iter().any(|i| {
                            i["key"].as_str() == Some(&key) && i["path"].as_str() == Some(rel)
                        }),
                        None => v["secret"].is_mapping() && rel == key,
                    }
                })
        });
    if !from_secret {
        found.push(format!(
            "{origin}: NATS_PASSWORD_FILE {file} is not the key {key} of a mounted Secret"
        ));
    }
    found
}

#[test]
fn the_helm_values_give_each_nats_user_the_subjects_of_permissions_conf() {
    let root = workspace_root();
    let source = permissions_conf(&root);
    let path = root.join("deploy/k8s/nats-values.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let values: Value = serde_yaml::from_str(&text).expect("nats-values.yaml parses");
    let found = helm_nats_problems(&values, &source);
    assert!(
        found.is_empty(),
        "the NATS users of the Helm values:\n{}",
        found.join("\n")
    );

    // Not vacuous: the copy has every user and subject of the source.
    let helm = helm_users(&values).unwrap();
    assert_eq!(helm.len(), source.len());
    let subjects: usize = helm
        .values()
        .map(|u| u.publish.len() + u.subscribe.len())
        .sum();
    assert!(subjects > 100, "{subjects} subjects");
    assert_eq!(helm["ingest"].password, "$SY_NATS_INGEST_PASSWORD");
    assert!(helm["ingest"].publish.contains("inbound.*"));
    assert!(!helm["ingest"].publish.contains("outbound.*"));
}

fn users(v: &mut Value) -> &mut Vec<Value> {
    v["config"]["merge"]["authorization"]["users"]
        .as_sequence_mut()
        .unwrap()
}

#[test]
fn a_nats_permission_the_copies_do_not_share_is_reported() {
    let root = workspace_root();
    let source = permissions_conf(&root);
    let text = std::fs::read_to_string(root.join("deploy/k8s/nats-values.yaml")).unwrap();
    let values: Value = serde_yaml::from_str(&text).unwrap();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = values.clone();
        f(&mut v);
        helm_nats_problems(&v, &source)
    };
    // ingest may also publish on outbound.*: a subject the source does not give.
    let wider = edit(&|v| {
        users(v)[0]["permissions"]["publish"]["allow"]
            .as_sequence_mut()
            .unwrap()
            .push(Value::from("outbound.*"))
    });
    assert!(
        wider
            .iter()
            .any(|p| p.contains("ingest: publish \"outbound.*\"")),
        "{wider:?}"
    );
    // the router lost its acks on INBOUND.
    let narrower = edit(&|v| {
        users(v)[1]["permissions"]["publish"]["allow"]
            .as_sequence_mut()
            .unwrap()
            .retain(|s| s.as_str() != Some("$JS.ACK.INBOUND.>"))
    });
    assert!(
        narrower
            .iter()
            .any(|p| p.contains("router: publish \"$JS.ACK.INBOUND.>\" is missing")),
        "{narrower:?}"
    );
    let literal = edit(&|v| users(v)[2]["password"] = Value::from("hunter2"));
    assert!(literal.iter().any(|p| p.contains("sender")), "{literal:?}");
    let dropped = edit(&|v| {
        users(v).pop();
    });
    assert!(
        dropped
            .iter()
            .any(|p| p.contains("user cli is only in permissions.conf")),
        "{dropped:?}"
    );
    let denied = edit(&|v| {
        users(v)[0]["permissions"]["publish"]["deny"] = Value::from(vec!["x"]);
    });
    assert!(
        denied.iter().any(|p| p.contains("not compared")),
        "{denied:?}"
    );

    // The reader of permissions.conf refuses what it would not compare.
    assert!(
        parse_permissions_conf(
            "authorization { users: [ { user: a, permissions: { publish: { deny: [\"x\"] } } } ] }"
        )
        .is_err()
    );
    let one = parse_permissions_conf(
        "authorization { users: [ # c\n { user: a\n password: $P\n permissions: { publish: { allow: [\"x.*\", \"y\" # z\n \"w.>\"] } subscribe: { allow: [\"_INBOX.>\"] } } } ] }",
    )
    .unwrap();
    assert_eq!(one["a"].password, "$P");
    assert_eq!(
        one["a"].publish,
        ["w.>", "x.*", "y"].map(String::from).into()
    );
    assert_eq!(one["a"].subscribe, ["_INBOX.>"].map(String::from).into());
}
