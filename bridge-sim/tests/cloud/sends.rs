//! `POST /{version}/{phone_number_id}/messages`: gates, tokens, limits,
//! faults, and the status webhooks that follow.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_bridge_sim::cloud::{Batch, CloudClock, CloudFault, StatusMode, StatusPlan};

use crate::common::*;

fn quiet(w: &World, pn: &str) {
    w.sim
        .set_statuses(
            pn,
            StatusPlan {
                mode: StatusMode::Off,
                batched: false,
            },
        )
        .unwrap();
}

#[tokio::test]
async fn a_free_form_send_needs_an_inbound_within_the_window() {
    let w = world().await;
    quiet(&w, "PN_1");

    let (before, refused) = w
        .send(&w.token_a, "PN_1", &text_to("16505551234", "hi"))
        .await;
    w.sim
        .post_batch(&Batch::new().text("PN_1", "16505551234", "hello"))
        .await
        .unwrap();
    let (after, accepted) = w
        .send(&w.token_a, "PN_1", &text_to("16505551234", "hi"))
        .await;

    assert_eq!((before, code(&refused)), (400, 131047));
    assert_eq!(refused["error"]["type"], "OAuthException");
    assert!(
        refused["error"]["error_data"]["details"]
            .as_str()
            .unwrap()
            .contains("24 hours")
    );
    assert_eq!(after, 200, "{accepted}");
    assert_eq!(accepted["messaging_product"], "whatsapp");
    assert_eq!(
        accepted["contacts"][0],
        json!({"input": "+16505551234", "wa_id": "16505551234"})
    );
    let wamid = accepted["messages"][0]["id"].as_str().unwrap();
    assert!(wamid.starts_with("wamid."));
    let sends = w.sim.sends();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].error_code, Some(131047));
    assert_eq!(sends[1].wamid.as_deref(), Some(wamid));
    assert_eq!(sends[1].token.as_ref().unwrap().as_str(), w.token_a);
    assert_eq!(sends[1].to.as_deref(), Some("+16505551234"));
    assert_eq!(sends[1].version, "v25.0");
}

#[tokio::test]
async fn the_window_closes_after_its_length() {
    let clock = CloudClock {
        window: Duration::from_millis(300),
        ..CloudClock::compressed()
    };
    let w = world_with(clock).await;
    quiet(&w, "PN_1");
    w.sim.open_window("PN_1", "111111").unwrap();
    let (open, _) = w.send(&w.token_a, "PN_1", &text_to("111111", "a")).await;

    tokio::time::sleep(Duration::from_millis(400)).await; // the window's length passes
    let (closed, answer) = w.send(&w.token_a, "PN_1", &text_to("111111", "b")).await;

    assert_eq!(open, 200);
    assert_eq!((closed, code(&answer)), (400, 131047));
}

#[tokio::test]
async fn the_pair_rate_refuses_a_burst_to_one_user_only() {
    let clock = CloudClock {
        pair_burst: 2,
        pair_interval: Duration::from_secs(60),
        ..CloudClock::compressed()
    };
    let w = world_with(clock).await;
    quiet(&w, "PN_1");
    w.sim.open_window("PN_1", "111111").unwrap();
    w.sim.open_window("PN_1", "222222").unwrap();

    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(w.send(&w.token_a, "PN_1", &text_to("111111", "x")).await);
    }
    let (other, _) = w.send(&w.token_a, "PN_1", &text_to("222222", "x")).await;

    assert_eq!(answers[0].0, 200);
    assert_eq!(answers[1].0, 200);
    assert_eq!((answers[2].0, code(&answers[2].1)), (400, 131056));
    assert_eq!(other, 200, "another user's bucket is untouched");
}

#[tokio::test]
async fn the_numbers_throughput_refuses_sends_over_its_mps() {
    let clock = CloudClock {
        throughput_window: Duration::from_secs(60),
        ..CloudClock::compressed()
    };
    let w = world_with(clock).await;
    quiet(&w, "PN_1");
    w.sim.set_mps("PN_1", 2).unwrap();
    for user in ["100001", "100002", "100003"] {
        w.sim.open_window("PN_1", user).unwrap();
        w.sim.open_window("PN_2", user).unwrap();
    }

    let mut statuses = Vec::new();
    for user in ["100001", "100002", "100003"] {
        let (status, answer) = w.send(&w.token_a, "PN_1", &text_to(user, "x")).await;
        statuses.push((status, code(&answer)));
    }
    let (other_number, _) = w.send(&w.token_a, "PN_2", &text_to("100003", "x")).await;

    assert_eq!(statuses[0].0, 200);
    assert_eq!(statuses[1].0, 200);
    assert_eq!(statuses[2], (400, 130429));
    assert_eq!(other_number, 200, "throughput is per number");
}

#[tokio::test]
async fn a_revoked_token_fails_only_its_own_waba() {
    let w = world().await;
    quiet(&w, "PN_1");
    quiet(&w, "PN_3");
    w.sim.open_window("PN_1", "111111").unwrap();
    w.sim.open_window("PN_3", "333333").unwrap();

    let report = w.sim.revoke_token(&w.token_a, true).await.unwrap().unwrap();
    let (revoked, a) = w.send(&w.token_a, "PN_1", &text_to("111111", "x")).await;
    let (fine, _) = w.send(&w.token_b, "PN_3", &text_to("333333", "x")).await;
    let (foreign, f) = w.send(&w.token_b, "PN_1", &text_to("111111", "x")).await;
    let (unknown, u) = w
        .send("EAAnot-a-token", "PN_1", &text_to("111111", "x"))
        .await;

    assert_eq!((revoked, code(&a)), (401, 190));
    assert_eq!(fine, 200);
    assert_eq!((foreign, code(&f)), (401, 0), "another WABA's token");
    assert_eq!((unknown, code(&u)), (401, 190));
    assert_eq!(report.first.unwrap().fields, ["account_update"]);
    let body = w.receiver.wait_for(1).await[0].json();
    assert_eq!(body["entry"][0]["id"], "WABA_A");
    assert_eq!(
        body["entry"][0]["changes"][0]["value"]["event"],
        "PARTNER_APP_UNINSTALLED"
    );
}

#[tokio::test]
async fn an_expired_token_answers_190() {
    let w = world().await;
    w.sim.open_window("PN_1", "111111").unwrap();
    w.sim.expire_token(&w.token_a).unwrap();

    let (status, answer) = w.send(&w.token_a, "PN_1", &text_to("111111", "x")).await;

    assert_eq!((status, code(&answer)), (401, 190));
    assert_eq!(answer["error"]["error_subcode"], 463);
}

fn buttons(titles: &[&str]) -> Value {
    let buttons: Vec<Value> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"type": "reply", "reply": {"id": format!("sel:{i}"), "title": t}}))
        .collect();
    json!({"messaging_product": "whatsapp", "to": "+111111", "type": "interactive",
           "interactive": {"type": "button", "body": {"text": "Pick one"},
                           "action": {"buttons": buttons}}})
}

#[tokio::test]
async fn interactive_limits_are_enforced() {
    let w = world().await;
    quiet(&w, "PN_1");
    w.sim.open_window("PN_1", "111111").unwrap();

    let (four, a) = w
        .send(&w.token_a, "PN_1", &buttons(&["a", "b", "c", "d"]))
        .await;
    let (long, b) = w
        .send(&w.token_a, "PN_1", &buttons(&[&"x".repeat(21)]))
        .await;
    let (fits, c) = w
        .send(&w.token_a, "PN_1", &buttons(&[&"x".repeat(20), "b", "c"]))
        .await;
    let (no_plus, d) = w
        .send(
            &w.token_a,
            "PN_1",
            &json!({"messaging_product": "whatsapp", "to": "111111",
                                            "type": "text", "text": {"body": "x"}}),
        )
        .await;

    assert_eq!((four, code(&a)), (400, 131009));
    assert_eq!((long, code(&b)), (400, 131009));
    assert_eq!(fits, 200, "{c}");
    assert_eq!((no_plus, code(&d)), (400, 100));
}

#[tokio::test]
async fn injected_faults_answer_then_clear() {
    let w = world().await;
    quiet(&w, "PN_1");
    w.sim.open_window("PN_1", "111111").unwrap();
    let fault = CloudFault::MetaError {
        code: 131000,
        http_status: 500,
        message: None,
    };
    w.sim.set_fault("PN_1", fault, Some(1)).unwrap();

    let (first, a) = w.send(&w.token_a, "PN_1", &text_to("111111", "x")).await;
    let (second, _) = w.send(&w.token_a, "PN_1", &text_to("111111", "x")).await;
    w.sim
        .set_fault("PN_1", CloudFault::BareServerError { status: 502 }, None)
        .unwrap();
    let (bare, bare_body) = w.send(&w.token_a, "PN_1", &text_to("111111", "x")).await;
    w.sim
        .set_fault("PN_1", CloudFault::Hang { ms: None }, None)
        .unwrap();
    let hung = w
        .http
        .post(format!("{}/v25.0/PN_1/messages", w.sim.base_url()))
        .bearer_auth(&w.token_a)
        .json(&text_to("111111", "x"))
        .timeout(Duration::from_millis(200))
        .send()
        .await;

    assert_eq!((first, code(&a)), (500, 131000));
    assert_eq!(second, 200);
    assert_eq!((bare, bare_body), (502, Value::Null));
    assert!(hung.unwrap_err().is_timeout());
    w.sim.shutdown().await; // releases the hanging request
}

#[tokio::test]
async fn statuses_follow_a_send_and_echo_the_callback_data() {
    let w = world().await;
    w.sim.open_window("PN_1", "111111").unwrap();
    let mut body = text_to("111111", "x");
    body["biz_opaque_callback_data"] = json!("reply-42");

    let (status, answer) = w.send(&w.token_a, "PN_1", &body).await;

    assert_eq!(status, 200);
    let wamid = answer["messages"][0]["id"].as_str().unwrap();
    let posts = w.receiver.wait_for(3).await;
    let statuses: Vec<Value> = posts
        .iter()
        .map(|p| p.json()["entry"][0]["changes"][0]["value"]["statuses"][0].clone())
        .collect();
    let names: Vec<&str> = statuses
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sent", "delivered", "read"]);
    for s in &statuses {
        assert_eq!(s["id"], wamid);
        assert_eq!(s["recipient_id"], "111111");
        assert_eq!(s["biz_opaque_callback_data"], "reply-42");
        assert!(s["timestamp"].as_str().unwrap().parse::<u64>().is_ok());
    }
    assert_eq!(statuses[0]["pricing"]["category"], "service");
}

#[tokio::test]
async fn statuses_can_skip_delivered_come_batched_reordered_or_fail() {
    let w = world().await;
    for user in ["100001", "100002", "100003"] {
        w.sim.open_window("PN_1", user).unwrap();
    }

    let plan = |mode, batched| StatusPlan { mode, batched };
    w.sim
        .set_statuses("PN_1", plan(StatusMode::ReadWithoutDelivered, true))
        .unwrap();
    w.send(&w.token_a, "PN_1", &text_to("100001", "x")).await;
    let batched = w.receiver.wait_for(1).await[0].json();
    w.sim
        .set_statuses("PN_1", plan(StatusMode::Reordered, true))
        .unwrap();
    w.send(&w.token_a, "PN_1", &text_to("100002", "x")).await;
    let reordered = w.receiver.wait_for(2).await[1].json();
    w.sim
        .set_statuses("PN_1", plan(StatusMode::failed(131026), true))
        .unwrap();
    w.send(&w.token_a, "PN_1", &text_to("100003", "x")).await;
    let failed = w.receiver.wait_for(3).await[2].json();

    let names = |b: &Value| -> Vec<String> {
        b["entry"][0]["changes"][0]["value"]["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&batched), ["sent", "read"]);
    assert_eq!(names(&reordered), ["read", "delivered", "sent"]);
    assert_eq!(names(&failed), ["sent", "failed"]);
    let failure = &failed["entry"][0]["changes"][0]["value"]["statuses"][1];
    assert_eq!(failure["errors"][0]["code"], 131026);
}

#[tokio::test]
async fn any_graph_version_is_accepted_and_recorded_and_nonsense_is_not() {
    let w = world().await;
    quiet(&w, "PN_1");
    w.sim.open_window("PN_1", "111111").unwrap();
    let url = |v: &str| format!("{}/{v}/PN_1/messages", w.sim.base_url());

    let other = w
        .http
        .post(url("v99.1"))
        .bearer_auth(&w.token_a)
        .json(&text_to("111111", "x"));
    let other = other.send().await.unwrap().status().as_u16();
    let bad = w
        .http
        .post(url("latest"))
        .bearer_auth(&w.token_a)
        .json(&text_to("111111", "x"));
    let bad = bad.send().await.unwrap().status().as_u16();

    assert_eq!(other, 200);
    assert_eq!(bad, 400);
    assert_eq!(w.sim.versions(), ["v99.1"]);
}
