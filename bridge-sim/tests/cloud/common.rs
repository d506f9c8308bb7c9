//! A recording webhook receiver, a seeded simulator, and a small Graph client.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use switchyard_bridge_sim::cloud::{CloudClock, CloudSim, CloudSimConfig, PhoneNumberSpec};
use tokio::net::TcpListener;

pub const APP_ID: &str = "app-1";
pub const APP_SECRET: &str = "app-secret-olá";
pub const VERIFY_TOKEN: &str = "verify-me";
pub const VERSION: &str = "v25.0";
pub const DEADLINE: Duration = Duration::from_secs(10);

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub signature: Option<String>,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Log {
    posts: Vec<Received>,
    /// Statuses to answer, in order; 200 once empty.
    answers: VecDeque<u16>,
}

/// A stand-in for ingest's Cloud route: records raw POSTs, answers a scripted
/// status, and echoes the handshake challenge when the verify token is ours.
#[derive(Clone)]
pub struct Receiver {
    log: Arc<Mutex<Log>>,
    pub url: String,
}

impl Receiver {
    pub async fn start() -> Self {
        let log = Arc::new(Mutex::new(Log::default()));
        let app = Router::new()
            .route("/cloud", get(handshake).post(record))
            .with_state(Arc::clone(&log));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/cloud", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { log, url }
    }

    /// The next POSTs get these statuses, then 200 again.
    pub fn answer_with(&self, statuses: &[u16]) {
        self.log.lock().unwrap().answers.extend(statuses);
    }

    pub fn posts(&self) -> Vec<Received> {
        self.log.lock().unwrap().posts.clone()
    }

    /// Polls until at least `n` POSTs arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let start = tokio::time::Instant::now();
        loop {
            let posts = self.posts();
            if posts.len() >= n {
                return posts;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "waited {DEADLINE:?} for {n} webhook POSTs, got {}",
                posts.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn record(State(log): State<Arc<Mutex<Log>>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut log = log.lock().unwrap();
    log.posts.push(Received {
        signature: headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    });
    let status = log.answers.pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap().into_response()
}

async fn handshake(Query(q): Query<HashMap<String, String>>) -> Response {
    let ok = q.get("hub.mode").map(String::as_str) == Some("subscribe")
        && q.get("hub.verify_token").map(String::as_str) == Some(VERIFY_TOKEN);
    match (ok, q.get("hub.challenge")) {
        (true, Some(challenge)) => challenge.clone().into_response(),
        _ => StatusCode::FORBIDDEN.into_response(),
    }
}

/// `sha256=<hex>` of `body` under the app secret, computed independently of the simulator.
pub fn expected_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Two WABAs: `WABA_A` with `PN_1`, `PN_2`; `WABA_B` with `PN_3`; both
/// subscribed, one token each; webhooks to a fresh receiver.
pub struct World {
    pub sim: CloudSim,
    pub receiver: Receiver,
    pub token_a: String,
    pub token_b: String,
    pub http: reqwest::Client,
}

pub async fn world() -> World {
    world_with(CloudClock::compressed()).await
}

pub async fn world_with(clock: CloudClock) -> World {
    let receiver = Receiver::start().await;
    let mut config = CloudSimConfig::new(APP_ID, APP_SECRET, VERIFY_TOKEN);
    config.webhook_url = Some(receiver.url.clone());
    config.clock = clock;
    let sim = CloudSim::start(config).await.unwrap();
    sim.add_number(PhoneNumberSpec::new("WABA_A", "PN_1", "15550000001"))
        .unwrap();
    sim.add_number(PhoneNumberSpec::new("WABA_A", "PN_2", "15550000002"))
        .unwrap();
    sim.add_number(PhoneNumberSpec::new("WABA_B", "PN_3", "15550000003"))
        .unwrap();
    sim.subscribe("WABA_A", true).unwrap();
    sim.subscribe("WABA_B", true).unwrap();
    let token_a = sim.add_token("WABA_A").unwrap();
    let token_b = sim.add_token("WABA_B").unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    World {
        sim,
        receiver,
        token_a,
        token_b,
        http,
    }
}

impl World {
    /// `POST /v25.0/{pn}/messages` with `token`; the status and the JSON answer (`Null` if none).
    pub async fn send(&self, token: &str, pn: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/{VERSION}/{pn}/messages", self.sim.base_url()))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/{VERSION}/{path}", self.sim.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/{VERSION}/{path}", self.sim.base_url()))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// A text send body to `+<wa_id>`.
pub fn text_to(wa_id: &str, body: &str) -> Value {
    serde_json::json!({"messaging_product": "whatsapp", "recipient_type": "individual",
        "to": format!("+{wa_id}"), "type": "text", "text": {"body": body}})
}

/// Meta's error code of an answer.
pub fn code(answer: &Value) -> i64 {
    answer["error"]["code"].as_i64().unwrap_or(-1)
}
