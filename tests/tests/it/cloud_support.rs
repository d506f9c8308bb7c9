//! Shared arrangement for the Cloud API tests: the app secret and verify
//! token ingest is configured with, a fixed token key, Cloud tenants in the
//! test's database, and signed batches as Meta sends them.

use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_shared::{
    cloud_api::{
        channel::{self, NewChannel},
        signature::AppSecrets,
        token_box::TokenKeys,
    },
    ids::TenantId,
    tenants::{self, NewTenant},
};

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
