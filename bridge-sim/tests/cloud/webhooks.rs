//! Meta's side of webhooks: signed batches, redelivery, subscriptions, handshake.

use serde_json::json;
use switchyard_bridge_sim::cloud::{Batch, BatchItem, Content, InboundFrom, PhoneNumberSpec};

use crate::common::*;

#[tokio::test]
async fn a_mixed_batch_arrives_as_one_post_signed_over_its_raw_bytes() {
    let w = world().await;
    w.sim
        .seed_template("WABA_A", "order_update", "en_US", "UTILITY", "PENDING")
        .unwrap();
    let batch = Batch::new()
        .text("PN_1", "111", "olá 👋 https://x.test/a")
        .message(
            "PN_3",
            InboundFrom::phone("333"),
            Content::ButtonReply {
                id: "sel:1".into(),
                title: "Yes".into(),
            },
        )
        .message(
            "PN_2",
            InboundFrom::phone("222"),
            Content::ListReply {
                id: "sel:2".into(),
                title: "Fast".into(),
                description: None,
            },
        )
        .message(
            "PN_1",
            InboundFrom::phone("112"),
            Content::TemplateButton {
                text: "Stop".into(),
                payload: "STOP".into(),
            },
        )
        .message(
            "PN_2",
            InboundFrom::phone("223"),
            Content::Media {
                media_type: "image".into(),
                id: "media-1".into(),
                mime_type: "image/jpeg".into(),
                caption: Some("a cat".into()),
            },
        )
        .message(
            "PN_3",
            InboundFrom::phone("334"),
            Content::Unknown {
                type_name: "hologram".into(),
                payload: json!({"x": 1}),
            },
        )
        .message(
            "PN_1",
            InboundFrom::bsuid("US.1234"),
            Content::text("no phone"),
        )
        .value_error("PN_2", 130429, "Rate limit hit")
        .template_status("WABA_A", "order_update", "en_US", "APPROVED");

    let report = w.sim.post_batch(&batch).await.unwrap();

    assert_eq!(report.first.as_ref().unwrap().status, Some(200));
    let posts = w.receiver.wait_for(1).await;
    assert_eq!(posts.len(), 1, "one POST for the whole batch");
    let post = &posts[0];
    assert!(post.body.is_ascii(), "Meta escapes non-ASCII characters");
    assert_eq!(
        post.signature.as_deref(),
        Some(expected_signature(&post.body).as_str())
    );
    let body = post.json();
    assert_eq!(body["object"], "whatsapp_business_account");
    let entries = body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["id"], "WABA_A");
    assert_eq!(entries[1]["id"], "WABA_B");
    let a = entries[0]["changes"].as_array().unwrap();
    let fields: Vec<&str> = a.iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(
        fields,
        [
            "messages",
            "messages",
            "messages",
            "message_template_status_update"
        ]
    );
    let pn1 = &a[0]["value"];
    assert_eq!(pn1["metadata"]["phone_number_id"], "PN_1");
    assert_eq!(pn1["metadata"]["display_phone_number"], "15550000001");
    let msgs = pn1["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0]["text"]["body"], "olá 👋 https://x.test/a");
    assert_eq!(msgs[1]["type"], "button");
    assert_eq!(msgs[1]["button"]["payload"], "STOP");
    assert!(
        msgs[2].get("from").is_none(),
        "a BSUID-only user has no from"
    );
    assert_eq!(msgs[2]["from_user_id"], "US.1234");
    assert_eq!(pn1["contacts"].as_array().unwrap().len(), 3);
    let pn2 = &a[1]["value"];
    assert_eq!(
        pn2["messages"][0]["interactive"]["list_reply"]["id"],
        "sel:2"
    );
    assert_eq!(pn2["messages"][1]["image"]["caption"], "a cat");
    assert_eq!(a[2]["value"]["errors"][0]["code"], 130429);
    assert_eq!(a[3]["value"]["event"], "APPROVED");
    let b = &entries[1]["changes"][0]["value"];
    assert_eq!(
        b["messages"][0]["interactive"]["button_reply"]["id"],
        "sel:1"
    );
    assert_eq!(b["messages"][1]["type"], "hologram");
    assert_eq!(
        w.sim.templates("WABA_A")[0].status,
        "APPROVED",
        "the event moved the template"
    );
}

#[tokio::test]
async fn a_non_200_answer_is_redelivered_with_the_identical_body() {
    let w = world().await;
    w.receiver.answer_with(&[500, 503]);

    let report = w
        .sim
        .post_batch(&Batch::new().text("PN_1", "111", "hi"))
        .await
        .unwrap();

    let posts = w.receiver.wait_for(3).await;
    assert_eq!(posts[0].body, posts[1].body);
    assert_eq!(posts[1].body, posts[2].body);
    assert_eq!(posts[0].signature, posts[2].signature);
    let deliveries = w.sim.wait_for_deliveries(3, DEADLINE).await.unwrap();
    let batch = report.batch.unwrap();
    let attempts: Vec<(u64, u32, Option<u16>)> = deliveries
        .iter()
        .map(|d| (d.batch, d.attempt, d.status))
        .collect();
    assert_eq!(
        attempts[..3],
        [
            (batch, 1, Some(500)),
            (batch, 2, Some(503)),
            (batch, 3, Some(200))
        ]
    );
}

#[tokio::test]
async fn redelivery_stops_after_the_last_scheduled_attempt() {
    let w = world().await;
    w.receiver.answer_with(&[500; 20]);

    w.sim
        .post_batch(&Batch::new().text("PN_1", "111", "hi"))
        .await
        .unwrap();

    // The compressed clock schedules 4 redeliveries: 5 attempts in all.
    let deliveries = w.sim.wait_for_deliveries(5, DEADLINE).await.unwrap();
    assert_eq!(deliveries.last().unwrap().attempt, 5);
    // Longer than the last delay (400 ms): a sixth attempt would show up.
    let more = w
        .sim
        .wait_until(std::time::Duration::from_millis(800), |_, d| d.len() > 5)
        .await;
    assert!(more.is_err(), "no attempt after the schedule ends");
}

#[tokio::test]
async fn an_unsubscribed_waba_gets_no_webhooks_until_it_subscribes() {
    let w = world().await;
    w.sim
        .add_number(PhoneNumberSpec::new("WABA_C", "PN_9", "15550000009"))
        .unwrap();
    let token_c = w.sim.add_token("WABA_C").unwrap();

    let alone = w
        .sim
        .post_batch(&Batch::new().text("PN_9", "999", "hi"))
        .await
        .unwrap();
    let mixed = w
        .sim
        .post_batch(
            &Batch::new()
                .text("PN_9", "999", "hi")
                .text("PN_1", "111", "hi"),
        )
        .await
        .unwrap();

    assert_eq!(alone.batch, None);
    assert_eq!(alone.unsubscribed, ["WABA_C"]);
    assert_eq!(mixed.unsubscribed, ["WABA_C"]);
    let posts = w.receiver.wait_for(1).await;
    assert_eq!(posts.len(), 1);
    let entries = posts[0].json()["entry"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["id"], "WABA_A");

    let (status, answer) = w.post(&token_c, "WABA_C/subscribed_apps", &json!({})).await;
    assert_eq!((status, answer), (200, json!({"success": true})));
    let after = w
        .sim
        .post_batch(&Batch::new().text("PN_9", "999", "again"))
        .await
        .unwrap();
    assert!(after.batch.is_some());
    assert_eq!(
        w.receiver.wait_for(2).await[1].json()["entry"][0]["id"],
        "WABA_C"
    );
}

#[tokio::test]
async fn the_handshake_helper_reports_whether_the_challenge_came_back() {
    let w = world().await;

    let good = w.sim.verify_webhook().await.unwrap();
    let bad = w.sim.verify_webhook_with("not-the-token").await.unwrap();

    assert!(good.verified, "{good:?}");
    assert_eq!(good.body, good.challenge);
    assert!(!bad.verified);
    assert_eq!(bad.status, Some(403));
}

#[tokio::test]
async fn a_raw_change_and_an_account_update_are_posted_as_given() {
    let w = world().await;
    let batch = Batch::new()
        .item(BatchItem::Raw {
            waba_id: "WABA_B".into(),
            field: "account_alerts".into(),
            value: json!({"entity_type": "BUSINESS", "alert_info": {"alert_type": "X"}}),
        })
        .account_update("WABA_B", "PARTNER_REMOVED");

    w.sim.post_batch(&batch).await.unwrap();

    let body = w.receiver.wait_for(1).await[0].json();
    let changes = &body["entry"][0]["changes"];
    assert_eq!(changes[0]["field"], "account_alerts");
    assert_eq!(changes[0]["value"]["alert_info"]["alert_type"], "X");
    assert_eq!(changes[1]["value"]["event"], "PARTNER_REMOVED");
}
