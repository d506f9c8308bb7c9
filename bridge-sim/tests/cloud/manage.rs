//! Templates, number health fields and the Embedded Signup code exchange.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_bridge_sim::cloud::CloudClock;

use crate::common::*;

fn template_send(name: &str) -> Value {
    json!({"messaging_product": "whatsapp", "to": "+16505551234", "type": "template",
           "template": {"name": name, "language": {"code": "en_US"},
                        "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-1"}]}]}})
}

#[tokio::test]
async fn a_template_is_sendable_only_after_approval_flows_by_webhook() {
    let w = world().await;
    let create = json!({"name": "order_update", "language": "en_US", "category": "UTILITY",
                        "components": [{"type": "BODY", "text": "Order {{1}} shipped"}]});

    let (created, answer) = w
        .post(&w.token_a, "WABA_A/message_templates", &create)
        .await;
    let (dup, dup_answer) = w
        .post(&w.token_a, "WABA_A/message_templates", &create)
        .await;
    let bad_name = json!({"name": "Order-Update", "language": "en_US", "category": "UTILITY", "components": []});
    let (bad, _) = w
        .post(&w.token_a, "WABA_A/message_templates", &bad_name)
        .await;
    let (pending, refused) = w
        .send(&w.token_a, "PN_1", &template_send("order_update"))
        .await;
    w.sim
        .set_template_status("WABA_A", "order_update", "en_US", "APPROVED", true)
        .await
        .unwrap();
    let (listed, list) = w.get(&w.token_a, "WABA_A/message_templates").await;
    let (approved, sent) = w
        .send(&w.token_a, "PN_1", &template_send("order_update"))
        .await;
    let (other_waba, _) = w
        .send(&w.token_b, "PN_3", &template_send("order_update"))
        .await;

    assert_eq!(created, 200);
    assert_eq!(answer["status"], "PENDING");
    assert_eq!(answer["category"], "UTILITY");
    assert!(answer["id"].as_str().is_some());
    assert_eq!((dup, code(&dup_answer)), (400, 100));
    assert_eq!(dup_answer["error"]["error_subcode"], 2388024);
    assert_eq!(bad, 400);
    assert_eq!(
        code(&refused),
        132001,
        "before approval: {pending} {refused}"
    );
    let update = w.receiver.wait_for(1).await[0].json();
    let change = &update["entry"][0]["changes"][0];
    assert_eq!(change["field"], "message_template_status_update");
    assert_eq!(change["value"]["event"], "APPROVED");
    assert_eq!(change["value"]["message_template_name"], "order_update");
    assert_eq!(change["value"]["message_template_language"], "en_US");
    assert_eq!(
        change["value"]["message_template_id"].to_string(),
        answer["id"].as_str().unwrap()
    );
    assert_eq!(listed, 200);
    assert_eq!(list["data"][0]["status"], "APPROVED");
    assert_eq!(approved, 200, "a template needs no window: {sent}");
    assert_eq!(other_waba, 404, "templates belong to one WABA");
}

fn template_send_with(name: &str, params: &[&str]) -> Value {
    let parameters: Vec<Value> = params
        .iter()
        .map(|p| json!({"type": "text", "text": p}))
        .collect();
    json!({"messaging_product": "whatsapp", "to": "+16505551234", "type": "template",
           "template": {"name": name, "language": {"code": "en_US"},
                        "components": [{"type": "body", "parameters": parameters}]}})
}

#[tokio::test]
async fn a_template_send_is_refused_as_meta_does_when_paused_disabled_pending_or_miscounted() {
    let w = world().await;
    let body = json!([{"type": "BODY", "text": "Order {{1}} ships {{2}} ({{1}})"}]);
    for (name, status) in [
        ("two_params", "APPROVED"),
        ("paused", "PAUSED"),
        ("disabled", "DISABLED"),
        ("pending", "PENDING"),
        ("rejected", "REJECTED"),
    ] {
        w.sim
            .seed_template_with("WABA_A", name, "en_US", status, body.clone())
            .unwrap();
    }

    let mut answers = Vec::new();
    for (name, params) in [
        ("two_params", &["A-1", "Monday"][..]),
        ("two_params", &["A-1"][..]),
        ("two_params", &["A-1", "Monday", "x"][..]),
        ("paused", &["A-1", "Monday"][..]),
        ("disabled", &["A-1", "Monday"][..]),
        ("pending", &["A-1", "Monday"][..]),
        ("rejected", &["A-1", "Monday"][..]),
        ("missing", &["A-1", "Monday"][..]),
    ] {
        let (status, answer) = w
            .send(&w.token_a, "PN_1", &template_send_with(name, params))
            .await;
        answers.push((status, code(&answer)));
    }

    assert_eq!(answers[0], (200, -1), "the distinct placeholders are two");
    assert_eq!(answers[1], (400, 132000));
    assert_eq!(answers[2], (400, 132000));
    assert_eq!(answers[3], (400, 132015));
    assert_eq!(answers[4], (400, 132016));
    assert_eq!(answers[5], (404, 132001));
    assert_eq!(answers[6], (404, 132001));
    assert_eq!(answers[7], (404, 132001));
    let refused = w.sim.sends().iter().filter(|s| s.wamid.is_none()).count();
    assert_eq!(refused, 7, "every refusal recorded");
}

#[tokio::test]
async fn a_template_listing_pages_by_cursor_with_next_only_while_more_remain() {
    let w = world().await;
    for name in ["t_one", "t_two", "t_three"] {
        w.sim
            .seed_template("WABA_A", name, "en_US", "UTILITY", "APPROVED")
            .unwrap();
    }
    w.sim.set_template_page_max(Some(2));

    let (first_status, first) = w
        .get(&w.token_a, "WABA_A/message_templates?limit=100")
        .await;
    let after = first["paging"]["cursors"]["after"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, second) = w
        .get(
            &w.token_a,
            &format!("WABA_A/message_templates?limit=100&after={after}"),
        )
        .await;
    let (bad_status, bad) = w
        .get(&w.token_a, "WABA_A/message_templates?after=nonsense")
        .await;

    assert_eq!(first_status, 200);
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert!(
        first["paging"]["next"]
            .as_str()
            .unwrap()
            .contains(&format!("after={after}"))
    );
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["data"][0]["name"], "t_three");
    assert!(second["paging"].get("next").is_none(), "{second}");
    assert_eq!((bad_status, code(&bad)), (400, 100));
}

#[tokio::test]
async fn health_fields_follow_quality_and_tier_changes() {
    let w = world().await;
    w.sim.set_quality("PN_1", "RED").unwrap();

    let report = w
        .sim
        .set_messaging_limit("PN_1", "TIER_2K", "UPGRADE", true)
        .await
        .unwrap();
    let (status, fields) = w
        .get(
            &w.token_a,
            "PN_1?fields=quality_rating,throughput,whatsapp_business_manager_messaging_limit",
        )
        .await;

    assert!(report.is_some());
    assert_eq!(status, 200);
    assert_eq!(fields["quality_rating"], "RED");
    assert_eq!(fields["throughput"]["level"], "STANDARD");
    assert_eq!(
        fields["whatsapp_business_manager_messaging_limit"],
        "TIER_2K"
    );
    let body = w.receiver.wait_for(1).await[0].json();
    let value = &body["entry"][0]["changes"][0]["value"];
    assert_eq!(
        body["entry"][0]["changes"][0]["field"],
        "phone_number_quality_update"
    );
    assert_eq!(value["display_phone_number"], "15550000001");
    assert_eq!(value["current_limit"], "TIER_2K");
    assert_eq!(value["old_limit"], "TIER_250");
    let (foreign, answer) = w.get(&w.token_b, "PN_1?fields=quality_rating").await;
    assert_eq!((foreign, code(&answer)), (401, 0));
}

async fn exchange(w: &World, secret: &str, code_: &str) -> (u16, Value) {
    let r = w
        .http
        .get(format!("{}/v25.0/oauth/access_token", w.sim.base_url()))
        .query(&[
            ("client_id", APP_ID),
            ("client_secret", secret),
            ("code", code_),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn a_signup_code_works_once_and_expires() {
    let clock = CloudClock {
        signup_code_ttl: Duration::from_millis(300),
        ..CloudClock::compressed()
    };
    let w = world_with(clock).await;
    let signup = w.sim.issue_signup_code("WABA_B").unwrap();
    let late = w.sim.issue_signup_code("WABA_B").unwrap();

    let (wrong_secret, ws) = exchange(&w, "nope", &signup).await;
    let (first, token) = exchange(&w, APP_SECRET, &signup).await;
    let (again, used) = exchange(&w, APP_SECRET, &signup).await;
    tokio::time::sleep(Duration::from_millis(400)).await; // the code's lifetime passes
    let (expired, old) = exchange(&w, APP_SECRET, &late).await;

    assert_eq!((wrong_secret, code(&ws)), (400, 1));
    assert_eq!(first, 200);
    let token = token["access_token"].as_str().unwrap();
    let (fields, _) = w.get(token, "PN_3?fields=quality_rating").await;
    assert_eq!(fields, 200, "the new token works for the code's WABA");
    let (foreign, _) = w.get(token, "PN_1?fields=quality_rating").await;
    assert_eq!(foreign, 401, "and only for it");
    assert_eq!((again, code(&used)), (400, 100));
    assert_eq!(used["error"]["error_subcode"], 36009);
    assert_eq!(
        (expired, old["error"]["error_subcode"].as_i64()),
        (400, Some(36007))
    );
}
