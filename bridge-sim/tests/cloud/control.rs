//! The `/_sim/cloud` control API, as the demo and the load tool use it.

use serde_json::{Value, json};
use switchyard_bridge_sim::cloud::{CloudSim, CloudSimConfig};

use crate::common::*;

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
) -> (u16, Value) {
    let r = http.request(method, url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_control_api_sets_up_injects_and_lists() {
    let receiver = Receiver::start().await;
    let sim = CloudSim::start(CloudSimConfig::new(APP_ID, APP_SECRET, VERIFY_TOKEN))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let sim_url = |p: &str| format!("{}/_sim/cloud{p}", sim.base_url());
    use reqwest::Method as M;

    let (s1, _) = call(
        &http,
        M::PUT,
        sim_url("/webhook"),
        json!({"url": receiver.url}),
    )
    .await;
    let (s2, waba) = call(
        &http,
        M::POST,
        sim_url("/wabas"),
        json!({"id": "W1", "subscribed": true}),
    )
    .await;
    let (s3, number) = call(&http, M::POST, sim_url("/numbers"),
        json!({"waba_id": "W1", "phone_number_id": "P1", "display_phone_number": "15550001111", "mps": 5})).await;
    let (s4, token) = call(&http, M::POST, sim_url("/tokens"), json!({"waba_id": "W1"})).await;
    let (s5, report) = call(
        &http,
        M::POST,
        sim_url("/batches"),
        json!([
        {"kind": "message", "phone_number_id": "P1", "from": {"wa_id": "4915112345"},
         "content": {"type": "text", "body": "hallo"}}]),
    )
    .await;
    let (s6, _) = call(
        &http,
        M::PUT,
        sim_url("/numbers/P1/statuses"),
        json!({"mode": "off"}),
    )
    .await;
    let token = token["token"].as_str().unwrap().to_owned();
    let sent = http
        .post(format!("{}/v25.0/P1/messages", sim.base_url()))
        .bearer_auth(&token)
        .json(&text_to("4915112345", "hi"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    let (s7, sends) = call(&http, M::GET, sim_url("/sends"), Value::Null).await;
    let (s8, deliveries) = call(&http, M::GET, sim_url("/deliveries"), Value::Null).await;
    let (s9, fault) = call(
        &http,
        M::PUT,
        sim_url("/numbers/P1/fault"),
        json!({"kind": "meta_error", "code": 368, "times": 1}),
    )
    .await;
    let (s10, hs) = call(&http, M::POST, sim_url("/handshake"), json!({})).await;
    let (missing, _) = call(
        &http,
        M::POST,
        sim_url("/tokens"),
        json!({"waba_id": "nope"}),
    )
    .await;

    assert_eq!(
        [s1, s2, s3, s4, s5, s6, s7, s8, s9, s10],
        [204, 200, 200, 200, 200, 200, 200, 200, 200, 200]
    );
    assert_eq!(waba["subscribed"], true);
    assert_eq!(number["mps"], 5);
    assert_eq!(report["first"]["status"], 200);
    assert_eq!(sent, 200, "the inbound opened the window");
    assert_eq!(sends[0]["to"], "+4915112345");
    assert!(sends[0]["wamid"].as_str().is_some());
    assert_eq!(deliveries[0]["fields"], json!(["messages"]));
    assert_eq!(fault["fault"]["code"], 368);
    assert_eq!(hs["verified"], true);
    assert_eq!(missing, 404);
    assert_eq!(receiver.posts().len(), 1);
}
