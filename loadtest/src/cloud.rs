//! The Cloud API side of a local deployment: the Cloud simulator in this
//! process (its limits out of the way, see [`load_clock`]), per-run secrets
//! and token keys for the services, each Cloud tenant's WABA, number, token
//! and `cloud_channels` row, and the simulator's accepted sends read back as
//! replies the driver counts exactly like a bridge's.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};
use sqlx::PgPool;
use switchyard_bridge_sim::{
    RecordedSend,
    cloud::{
        CloudClock, CloudSend, CloudSim, CloudSimConfig, PhoneNumberSpec, StatusMode, StatusPlan,
    },
};
use switchyard_shared::{
    cloud_api::{
        channel::{self, NewChannel},
        signature::AppSecrets,
        token_box::{self, TokenKeys},
    },
    ids::TenantId,
};

use crate::inlet::{self, CloudNumber};

/// Sends a number accepts per throughput window: far above any scenario.
const LOAD_MPS: u32 = 1_000_000;

/// Meta's gates moved out of the way of a load run, so what is measured is
/// the pipeline: a 24 h window (opened for every user up front), one
/// pair-rate token per millisecond with a burst of 100,000, and the
/// compressed clock's 1 s throughput window (each number takes
/// [`LOAD_MPS`] per window). Status webhooks keep Meta's shape.
pub fn load_clock() -> CloudClock {
    CloudClock {
        window: Duration::from_secs(24 * 3600),
        pair_interval: Duration::from_millis(1),
        pair_burst: 100_000,
        ..CloudClock::compressed()
    }
}

/// A Cloud tenant's number and the token the simulator issued it.
struct Provisioned {
    number: CloudNumber,
    token: SecretString,
}

/// The Cloud simulator and what the services need to use it.
pub struct CloudSide {
    sim: CloudSim,
    secrets: Arc<AppSecrets>,
    app_secret: SecretString,
    verify_token: SecretString,
    /// `SWITCHYARD_CLOUD_TOKEN_KEYS`: one key, generated for this run.
    keys_entry: SecretString,
    keys: TokenKeys,
    tenants: Vec<Provisioned>,
}

/// A random secret of this run (never printed).
fn random_secret(prefix: &str) -> SecretString {
    SecretString::from(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()))
}

impl CloudSide {
    /// Starts the simulator on a free loopback port; its webhooks (the
    /// replies' statuses) go to `ingest_cloud_url`.
    pub async fn start(ingest_cloud_url: &str) -> anyhow::Result<Self> {
        let app_secret = random_secret("lt-app");
        let verify_token = random_secret("lt-verify");
        let keys_entry =
            SecretString::from(TokenKeys::generate_entry("lt1").context("generating a token key")?);
        let keys = TokenKeys::parse(&keys_entry)?;
        let mut config = CloudSimConfig::new(
            "switchyard-load",
            app_secret.expose_secret(),
            verify_token.expose_secret(),
        );
        config.clock = load_clock();
        config.webhook_url = Some(ingest_cloud_url.to_owned());
        let sim = CloudSim::start(config)
            .await
            .context("starting the Cloud API simulator")?;
        Ok(Self {
            sim,
            secrets: Arc::new(AppSecrets::new(app_secret.clone(), None)),
            app_secret,
            verify_token,
            keys_entry,
            keys,
            tenants: Vec::new(),
        })
    }

    /// The services' Cloud settings: ingest's `/cloud` route, the sender's Graph URL and keys.
    pub fn service_env(&self) -> Vec<(String, String)> {
        [
            (
                "SWITCHYARD_CLOUD_APP_SECRET",
                self.app_secret.expose_secret().to_owned(),
            ),
            (
                "SWITCHYARD_CLOUD_VERIFY_TOKEN",
                self.verify_token.expose_secret().to_owned(),
            ),
            ("SWITCHYARD_CLOUD_API_URL", self.sim.base_url()),
            (
                token_box::VARIABLE,
                self.keys_entry.expose_secret().to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Puts tenant `id` (its row already inserted) on the Cloud API: a WABA
    /// and a number of its own on the simulator (subscribed, statuses
    /// `sent`, `delivered`, `read` in one POST per reply, the window open
    /// for its 64 users), a token, and its `cloud_channels` row with the
    /// token sealed. `index` makes its ids unique within the run.
    pub async fn provision(
        &mut self,
        pool: &PgPool,
        id: &TenantId,
        index: usize,
        ingest_cloud_url: &str,
    ) -> anyhow::Result<inlet::Inlet> {
        let number = CloudNumber {
            tenant: id.as_str().to_owned(),
            phone_number_id: format!("10{:08}", index + 1),
            waba_id: format!("20{:08}", index + 1),
            display_phone_number: format!("1555{:07}", index + 1),
        };
        let sim = &self.sim;
        sim.add_waba(&number.waba_id);
        sim.subscribe(&number.waba_id, true)?;
        let mut spec = PhoneNumberSpec::new(
            number.waba_id.clone(),
            number.phone_number_id.clone(),
            number.display_phone_number.clone(),
        );
        spec.mps = LOAD_MPS;
        sim.add_number(spec)?;
        sim.set_statuses(
            &number.phone_number_id,
            StatusPlan {
                mode: StatusMode::Normal,
                batched: true,
            },
        )?;
        for user in 0..inlet::USERS {
            sim.open_window(&number.phone_number_id, &inlet::user_of(user))?;
        }
        let token = SecretString::from(sim.add_token(&number.waba_id)?);
        let sealed = self.keys.seal(id, &token);
        channel::connect(
            pool,
            id,
            &NewChannel {
                phone_number_id: &number.phone_number_id,
                waba_id: &number.waba_id,
                display_phone_number: Some(&number.display_phone_number),
                token: &sealed,
            },
        )
        .await
        .with_context(|| format!("connecting {id}'s Cloud API channel"))?;
        self.tenants.push(Provisioned {
            number: number.clone(),
            token,
        });
        Ok(inlet::Inlet::Cloud {
            url: ingest_cloud_url.to_owned(),
            number,
            secrets: Arc::clone(&self.secrets),
        })
    }

    /// The simulator's accepted sends as replies (see [`replies`]).
    pub fn replies(&self) -> Vec<RecordedSend> {
        let owners: Vec<(&CloudNumber, &str)> = self
            .tenants
            .iter()
            .map(|p| (&p.number, p.token.expose_secret()))
            .collect();
        replies(&self.sim.accepted_sends(), &owners)
    }

    pub async fn stop(self) {
        self.sim.shutdown().await;
    }
}

/// Accepted Cloud sends as the records the driver reads for the bridge path:
/// `customer_ref` is the tenant whose number the reply went out on, only if
/// it went out with that tenant's own token (otherwise a name no tenant has,
/// so the driver counts it as misrouted); `body` is the text's body, `chat`
/// the recipient, `at_ms` when the simulator accepted it.
pub fn replies(sends: &[CloudSend], owners: &[(&CloudNumber, &str)]) -> Vec<RecordedSend> {
    sends
        .iter()
        .filter_map(|s| {
            let wamid = s.wamid.as_ref()?;
            let owner = owners
                .iter()
                .find(|(n, _)| n.phone_number_id == s.phone_number_id);
            let customer_ref = match owner {
                Some((n, token)) if s.token.as_ref().is_some_and(|t| t.as_str() == *token) => {
                    n.tenant.clone()
                }
                Some((n, _)) => format!("{}!another-token", n.tenant),
                None => format!("!number-{}", s.phone_number_id),
            };
            let body = s.body["text"]["body"].as_str().unwrap_or_default();
            Some(RecordedSend {
                bridge_id: 0,
                customer_ref,
                chat: s.to.clone().unwrap_or_default(),
                body: body.to_owned(),
                at_ms: s.at_ms,
                message_id: wamid.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn number(tenant: &str, id: &str) -> CloudNumber {
        CloudNumber {
            tenant: tenant.into(),
            phone_number_id: id.into(),
            waba_id: format!("W{id}"),
            display_phone_number: format!("1555{id}"),
        }
    }

    fn send(number: &str, token: Option<&str>, text: &str, wamid: Option<&str>) -> CloudSend {
        serde_json::from_value(json!({
            "at_ms": 1_750_000_000_123_u64, "version": "v25.0", "phone_number_id": number,
            "token": token, "to": "447900000006", "recipient": null, "kind": "text",
            "body": {"messaging_product": "whatsapp", "to": "447900000006", "type": "text",
                     "text": {"body": text}},
            "http_status": if wamid.is_some() { 200 } else { 400 },
            "wamid": wamid, "error_code": null,
        }))
        .unwrap()
    }

    #[test]
    fn a_reply_on_the_tenants_own_number_with_its_own_token_is_its_reply() {
        let (a, b) = (number("quiet-02", "1"), number("noisy", "2"));
        let owners = [(&a, "tok-a"), (&b, "tok-b")];
        let got = replies(
            &[send(
                "1",
                Some("tok-a"),
                "echo: lt:quiet-02:70",
                Some("wamid.1"),
            )],
            &owners,
        );
        assert_eq!(got.len(), 1);
        let r = &got[0];
        assert_eq!(
            (r.customer_ref.as_str(), r.body.as_str(), r.chat.as_str()),
            ("quiet-02", "echo: lt:quiet-02:70", "447900000006")
        );
        assert_eq!(
            (r.at_ms, r.message_id.as_str()),
            (1_750_000_000_123, "wamid.1")
        );
        assert_eq!(inlet::token_of(&r.body), Some(("quiet-02", 70)));
    }

    #[test]
    fn another_tenants_token_or_an_unknown_number_reads_as_misrouted_and_refusals_are_left_out() {
        let (a, b) = (number("quiet-02", "1"), number("noisy", "2"));
        let owners = [(&a, "tok-a"), (&b, "tok-b")];
        let got = replies(
            &[
                send("1", Some("tok-b"), "echo: lt:quiet-02:1", Some("wamid.1")),
                send("1", None, "echo: lt:quiet-02:2", Some("wamid.2")),
                send("9", Some("tok-a"), "echo: lt:quiet-02:3", Some("wamid.3")),
                send("1", Some("tok-a"), "echo: lt:quiet-02:4", None),
            ],
            &owners,
        );
        let refs: Vec<&str> = got.iter().map(|r| r.customer_ref.as_str()).collect();
        assert_eq!(
            refs,
            [
                "quiet-02!another-token",
                "quiet-02!another-token",
                "!number-9"
            ]
        );
    }

    #[test]
    fn the_load_clock_keeps_metas_gates_out_of_the_way() {
        let clock = load_clock();
        assert!(clock.window >= Duration::from_secs(3600));
        assert!(clock.pair_interval <= Duration::from_millis(1));
        assert!(clock.pair_burst >= 10_000);
    }
}
