//! Where and how one tenant's events enter the pipeline: a WA Bridges event
//! on the tenant's own webhook URL, or a Cloud API message as Meta posts it
//! (a signed batch on ingest's `/cloud`, routed by the tenant's phone number
//! id). Both carry the same text, `lt:<tenant>:<event>`, from the same 64
//! users per tenant, so the echo bot answers both alike and the driver
//! matches replies the same way ([`token_of`]).

use std::sync::Arc;

use serde_json::json;
use switchyard_shared::cloud_api::signature::AppSecrets;

/// Meta's signature header on every webhook POST.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// Users per tenant: event `n` comes from user `n % USERS`.
pub const USERS: u64 = 64;

/// The phone number (digits, no `+`) of the user who sends `event`.
pub fn user_of(event: u64) -> String {
    format!("4479{:08}", event % USERS)
}

/// A Cloud API tenant's number, as Meta names it in a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudNumber {
    pub tenant: String,
    pub phone_number_id: String,
    pub waba_id: String,
    pub display_phone_number: String,
}

/// Where one tenant's events go.
#[derive(Clone)]
pub enum Inlet {
    /// The tenant's WA Bridges webhook URL (it carries its own token).
    Bridge { url: String },
    /// Ingest's `/cloud`, the tenant's number, and the app secret that signs.
    Cloud {
        url: String,
        number: CloudNumber,
        secrets: Arc<AppSecrets>,
    },
}

impl std::fmt::Debug for Inlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inlet::Bridge { .. } => f.write_str("Inlet::Bridge"),
            Inlet::Cloud { number, .. } => f
                .debug_struct("Inlet::Cloud")
                .field("phone_number_id", &number.phone_number_id)
                .finish_non_exhaustive(),
        }
    }
}

impl Inlet {
    /// The POST of `tenant`'s event `event`, written at `unix_s`: one
    /// message per request on both channels.
    pub fn request(
        &self,
        http: &reqwest::Client,
        tenant: &str,
        event: u64,
        unix_s: u64,
    ) -> reqwest::RequestBuilder {
        match self {
            Inlet::Bridge { url } => http
                .post(url)
                .header("content-type", "application/json")
                .body(bridge_body(tenant, event, unix_s)),
            Inlet::Cloud {
                url,
                number,
                secrets,
            } => {
                let body = cloud_body(number, event, unix_s);
                http.post(url)
                    .header("content-type", "application/json")
                    .header(SIGNATURE_HEADER, secrets.sign(body.as_bytes()))
                    .body(body)
            }
        }
    }
}

/// A WA Bridges `message` event.
pub fn bridge_body(tenant: &str, event: u64, unix_s: u64) -> String {
    let phone = user_of(event);
    json!({
        "event": "message",
        "customer_ref": tenant,
        "message_id": format!("LT{event:012}"),
        "contact_id": format!("{phone}@s.whatsapp.net"),
        "phone": phone,
        "chat_id": format!("{phone}@s.whatsapp.net"),
        "name": "Load",
        "body": format!("lt:{tenant}:{event}"),
        "type": "text",
        "media_type": "",
        "is_group": false,
        "from_me": false,
        "timestamp": unix_s,
    })
    .to_string()
}

/// A Cloud API batch holding one text message to `number` (one entry, one
/// `messages` change), as Meta posts it. The `wamid` is the event's, so a
/// re-posted event is the same message to ingest (Meta's retry).
pub fn cloud_body(number: &CloudNumber, event: u64, unix_s: u64) -> String {
    let from = user_of(event);
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": number.waba_id,
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": number.display_phone_number,
                        "phone_number_id": number.phone_number_id,
                    },
                    "contacts": [{"wa_id": from, "profile": {"name": "Load"}}],
                    "messages": [{
                        "from": from,
                        "id": format!("wamid.LT{event:012}"),
                        "timestamp": unix_s.to_string(),
                        "type": "text",
                        "text": {"body": format!("lt:{}:{event}", number.tenant)},
                    }],
                },
            }],
        }],
    })
    .to_string()
}

/// The (tenant, event) a reply answers, from `echo: lt:<tenant>:<event>`.
pub fn token_of(reply: &str) -> Option<(&str, u64)> {
    let rest = reply.strip_prefix("echo: lt:")?;
    let (tenant, event) = rest.rsplit_once(':')?;
    Some((tenant, event.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use serde_json::Value;
    use switchyard_shared::cloud_api::webhook;

    use super::*;

    fn number() -> CloudNumber {
        CloudNumber {
            tenant: "quiet-02".into(),
            phone_number_id: "1000000002".into(),
            waba_id: "2000000002".into(),
            display_phone_number: "15550000002".into(),
        }
    }

    #[test]
    fn a_reply_names_the_event_it_answers() {
        assert_eq!(token_of("echo: lt:quiet-01:42"), Some(("quiet-01", 42)));
        assert_eq!(
            token_of("echo: lt:lt9-1-quiet-01:7"),
            Some(("lt9-1-quiet-01", 7))
        );
        assert_eq!(token_of("something else"), None);
        assert_eq!(token_of("echo: lt:quiet-01:x"), None);
    }

    #[test]
    fn both_channels_carry_the_same_text_from_the_same_user() {
        let bridge: Value =
            serde_json::from_str(&bridge_body("quiet-02", 70, 1_750_000_000)).unwrap();
        let cloud: Value = serde_json::from_str(&cloud_body(&number(), 70, 1_750_000_000)).unwrap();
        let value = &cloud["entry"][0]["changes"][0]["value"];
        let message = &value["messages"][0];
        assert_eq!(message["text"]["body"], bridge["body"]);
        assert_eq!(message["text"]["body"], "lt:quiet-02:70");
        assert_eq!(message["from"], bridge["phone"]);
        assert_eq!(message["from"], "447900000006");
        assert_eq!(value["contacts"][0]["wa_id"], message["from"]);
        assert_eq!(message["timestamp"], "1750000000");
        assert_eq!(value["metadata"]["phone_number_id"], "1000000002");
        assert_eq!(cloud["entry"][0]["id"], "2000000002");
    }

    #[test]
    fn a_cloud_event_is_one_message_ingest_routes_to_the_number_with_a_key_of_its_event() {
        let split = |b: &str| webhook::split(b.as_bytes()).unwrap();
        let batch = split(&cloud_body(&number(), 5, 1_750_000_000));
        assert!(batch.refused.is_empty(), "{:?}", batch.refused);
        assert_eq!(batch.items.len(), 1);
        assert_eq!(batch.items[0].kind, webhook::ItemKind::Message);
        assert_eq!(
            batch.items[0].route,
            webhook::Route::Number {
                phone_number_id: "1000000002".into(),
                waba_id: "2000000002".into()
            }
        );
        let key = |b: &str| split(b).items[0].event_id.clone();
        assert_eq!(
            key(&cloud_body(&number(), 5, 1_750_000_000)),
            key(&cloud_body(&number(), 5, 1_750_000_009)),
            "a re-posted event is Meta's retry"
        );
        assert_ne!(
            key(&cloud_body(&number(), 5, 1_750_000_000)),
            key(&cloud_body(&number(), 6, 1_750_000_000))
        );
    }

    #[test]
    fn a_cloud_event_is_signed_as_meta_signs_it() {
        let secrets = Arc::new(AppSecrets::new(SecretString::from("lt-app-secret"), None));
        let inlet = Inlet::Cloud {
            url: "http://127.0.0.1:9/cloud".into(),
            number: number(),
            secrets: Arc::clone(&secrets),
        };
        let request = inlet
            .request(&reqwest::Client::new(), "quiet-02", 5, 1_750_000_000)
            .build()
            .unwrap();
        let body = request.body().and_then(|b| b.as_bytes()).unwrap();
        let header = request.headers().get(SIGNATURE_HEADER).unwrap();
        assert!(secrets.verify(body, Some(header.as_bytes())).is_ok());
        assert_eq!(request.url().path(), "/cloud");
        assert!(!format!("{inlet:?}").contains("secret"));
    }
}
