//! Shared arrangement for the Cloud API tests: the app secret and verify
//! token ingest is configured with, a fixed token key, Cloud tenants in the
//! test's database, signed batches as Meta sends them, and [`CloudRig`]: the
//! whole pipeline with three Cloud tenants (two WABAs) beside two WA Bridges
//! tenants, the Cloud simulator posting to ingest.

use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_bridge_sim::cloud::{BatchItem, CloudSim, CloudSimConfig, PhoneNumberSpec};
use switchyard_shared::{
    cloud_api::{
        channel::{self, NewChannel},
        signature::AppSecrets,
        token_box::TokenKeys,
    },
    ids::TenantId,
    tenants::{self, NewTenant},
};
use switchyard_tests::pipeline::{Pipeline, TenantSpec};

pub const APP_SECRET: &str = "cloud-test-app-secret";
pub const VERIFY_TOKEN: &str = "cloud-test-verify-token";
/// `k1` and 32 bytes of 0x07: a fixed key, so every process of a test opens
/// what another sealed.
pub const TOKEN_KEYS: &str = "k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// What ingest needs for its `/cloud` route.
pub fn ingest_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SWITCHYARD_CLOUD_APP_SECRET", APP_SECRET),
        ("SWITCHYARD_CLOUD_VERIFY_TOKEN", VERIFY_TOKEN),
    ]
}

pub fn token_keys() -> TokenKeys {
    TokenKeys::parse(&SecretString::from(TOKEN_KEYS)).expect("test token keys")
}

/// The `X-Hub-Signature-256` value Meta would send for `body`.
pub fn sign(body: &[u8]) -> String {
    AppSecrets::new(SecretString::from(APP_SECRET), None).sign(body)
}

/// A Cloud API tenant (echo bot) with its number, WABA and sealed token.
pub async fn cloud_tenant(
    db: &PgPool,
    id: &str,
    number: &str,
    waba: &str,
    token: &str,
) -> TenantId {
    cloud_tenant_with(db, id, number, waba, token, |_| {}).await
}

/// [`cloud_tenant`], with the tenant row adjusted by `adjust` (e.g. its bot).
pub async fn cloud_tenant_with(
    db: &PgPool,
    id: &str,
    number: &str,
    waba: &str,
    token: &str,
    adjust: impl FnOnce(&mut NewTenant),
) -> TenantId {
    let tenant = TenantId::parse(id).expect("tenant id");
    let mut new = NewTenant::with_defaults(tenant.clone());
    new.bot_kind = switchyard_shared::tenants::BotKind::Echo;
    adjust(&mut new);
    assert!(tenants::insert(db, &new).await.expect("insert tenant"));
    let sealed = token_keys().seal(&tenant, &SecretString::from(token.to_owned()));
    channel::connect(
        db,
        &tenant,
        &NewChannel {
            phone_number_id: number,
            waba_id: waba,
            display_phone_number: Some(&format!("1555{number}")),
            token: &sealed,
        },
    )
    .await
    .expect("connect the Cloud channel");
    tenant
}

/// A text message item from `from` (a wa_id) to `number`.
pub fn text(number: &str, wamid: &str, from: &str, body: &str) -> (String, Value) {
    (
        number.to_owned(),
        json!({"from": from, "id": wamid, "timestamp": "1750000000", "type": "text",
               "text": {"body": body}}),
    )
}

/// One POST body: a `messages` change per item, under `waba`.
pub fn batch(waba: &str, items: &[(String, Value)]) -> String {
    let changes: Vec<Value> = items
        .iter()
        .map(|(number, message)| {
            json!({"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": format!("1555{number}"), "phone_number_id": number},
                "contacts": [{"wa_id": message["from"], "profile": {"name": "Test"}}],
                "messages": [message]}})
        })
        .collect();
    json!({"object": "whatsapp_business_account", "entry": [{"id": waba, "changes": changes}]})
        .to_string()
}

/// The Cloud tenants of a [`CloudRig`]: (tenant, WABA, phone number id).
/// `cloud-a` and `cloud-b` share `WABA1`; `cloud-c` is alone on `WABA2`.
pub const RIG_TENANTS: [(&str, &str, &str); 3] = [
    ("cloud-a", "WABA1", "PN1"),
    ("cloud-b", "WABA1", "PN2"),
    ("cloud-c", "WABA2", "PN3"),
];

/// The pipeline with Cloud and WA Bridges tenants side by side.
pub struct CloudRig {
    pub p: Pipeline,
    pub cloud: CloudSim,
    /// (tenant, phone number id, token) of the Cloud tenants, in [`RIG_TENANTS`] order.
    pub tenants: Vec<(&'static str, &'static str, String)>,
}

/// Starts the Cloud simulator and the pipeline (two WA Bridges echo tenants,
/// `wa-a` and `wa-b`), connects [`RIG_TENANTS`] with a token each, and points
/// the simulator's webhooks at ingest. `extra_env` goes to every service.
pub async fn start_rig(pool: &PgPool, extra_env: &[(&'static str, &'static str)]) -> CloudRig {
    let cloud = CloudSim::start(CloudSimConfig::new("sim-app", APP_SECRET, VERIFY_TOKEN))
        .await
        .expect("Cloud simulator");
    let url = cloud.base_url();
    let mut env = ingest_env();
    env.push(("SWITCHYARD_CLOUD_API_URL", url.as_str()));
    env.push(("SWITCHYARD_CLOUD_TOKEN_KEYS", TOKEN_KEYS));
    env.extend_from_slice(extra_env);
    let p = Pipeline::start_with_env(
        pool,
        &[TenantSpec::echo("wa-a"), TenantSpec::echo("wa-b")],
        &env,
    )
    .await;
    let mut tenants = Vec::new();
    for (tenant, waba, number) in RIG_TENANTS {
        if cloud.waba(waba).is_none() {
            cloud.add_waba(waba);
            cloud.subscribe(waba, true).expect("subscribe");
        }
        cloud
            .add_number(PhoneNumberSpec::new(waba, number, format!("1555{number}")))
            .expect("number");
        let token = cloud.add_token(waba).expect("token");
        cloud_tenant(pool, tenant, number, waba, &token).await;
        tenants.push((tenant, number, token));
    }
    cloud.set_webhook_url(Some(&format!("http://{}/cloud", p.ingest_addr)));
    CloudRig { p, cloud, tenants }
}

/// A text from `from` to a [`RIG_TENANTS`] number as a raw `messages`
/// change, with Meta's `timestamp` set to `written` (unix seconds): a
/// message Meta delivers late (its retries run for days) or one written
/// before the window closed. The simulator's own window is not touched.
pub fn text_written_at(
    number: &str,
    wamid: &str,
    from: &str,
    body: &str,
    written: i64,
) -> BatchItem {
    let waba = RIG_TENANTS
        .iter()
        .find(|(_, _, n)| *n == number)
        .map(|(_, waba, _)| *waba)
        .expect("a rig number");
    BatchItem::Raw {
        waba_id: waba.to_owned(),
        field: "messages".to_owned(),
        value: json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": format!("1555{number}"), "phone_number_id": number},
            "contacts": [{"wa_id": from, "profile": {"name": "Late"}}],
            "messages": [{"from": from, "id": wamid, "timestamp": written.to_string(),
                          "type": "text", "text": {"body": body}}],
        }),
    }
}

/// Now, in unix seconds.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
