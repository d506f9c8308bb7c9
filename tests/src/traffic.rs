//! Publishing inbound events the way ingest does, and reading back what the
//! pipeline produced (replies, dead letters), for assertions.

use std::{collections::BTreeMap, time::Duration};

use async_nats::{HeaderMap, jetstream};
use futures::StreamExt as _;
use switchyard_shared::{
    events,
    ids::TenantId,
    replies::OutboundReply,
    scoped_event_id::ScopedEventId,
    subjects::{self, Direction},
};

/// A `message` event body as WA Bridges documents it.
pub fn message_body(
    customer_ref: Option<&str>,
    message_id: &str,
    chat: &str,
    text: &str,
) -> String {
    let mut event = serde_json::json!({
        "event": "message",
        "message_id": message_id,
        "contact_id": chat,
        "phone": chat.split('@').next().unwrap_or(chat),
        "chat_id": chat,
        "name": "Test",
        "body": text,
        "type": "text",
        "media_type": "",
        "is_group": false,
        "from_me": false,
        "timestamp": 1_777_180_605,
    });
    if let Some(r) = customer_ref {
        event["customer_ref"] = serde_json::json!(r);
    }
    event.to_string()
}

/// The headers ingest puts on an inbound event: `<tenant>:<event id>` as
/// both its `Nats-Msg-Id` and its event id (the router refuses an event id
/// scoped to another tenant than the subject).
pub fn event_headers(tenant: &TenantId, event_id: &str) -> HeaderMap {
    let scoped = ScopedEventId::new(tenant, event_id);
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, scoped.as_str());
    headers.insert(events::HEADER_EVENT_ID, scoped.as_str());
    headers
}

/// Publishes an inbound event for `tenant` as ingest would (subject from the
/// tenant id, [`event_headers`]) and waits for the ack.
pub async fn publish_inbound(
    js: &jetstream::Context,
    tenant: &TenantId,
    event_id: &str,
    body: String,
) {
    let mut headers = event_headers(tenant, event_id);
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    headers.insert(events::HEADER_RECEIVED_AT_MS, now_ms.to_string().as_str());
    js.publish_with_headers(subjects::inbound(tenant), headers, body.into())
        .await
        .expect("publish")
        .await
        .expect("publish ack");
}

/// Publishes many events of one tenant without waiting between them (then
/// waits for every ack), to build a backlog faster than one-by-one publishing.
pub async fn publish_burst(
    js: &jetstream::Context,
    tenant: &TenantId,
    events: Vec<(String, String)>,
) {
    let mut acks = Vec::with_capacity(events.len());
    for (event_id, body) in events {
        if acks.len() >= 256 {
            for ack in acks.drain(..) {
                let ack: jetstream::context::PublishAckFuture = ack;
                ack.await.expect("publish ack");
            }
        }
        acks.push(
            js.publish_with_headers(
                subjects::inbound(tenant),
                event_headers(tenant, &event_id),
                body.into(),
            )
            .await
            .expect("publish"),
        );
    }
    for ack in acks {
        ack.await.expect("publish ack");
    }
}

/// Every stored message of a stream whose subject matches `filter`, in stream
/// order, as (subject, headers, payload).
pub async fn read_stream(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
) -> Vec<(String, HeaderMap, bytes::Bytes)> {
    let stream = js.get_stream(stream).await.expect("stream");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            ..Default::default()
        })
        .await
        .expect("ordered consumer");
    let pending = consumer.cached_info().num_pending as usize;
    let mut out = Vec::with_capacity(pending);
    if pending == 0 {
        return out;
    }
    let mut messages = consumer.messages().await.expect("messages");
    while out.len() < pending {
        match tokio::time::timeout(Duration::from_secs(5), messages.next()).await {
            Ok(Some(Ok(m))) => out.push((
                m.subject.to_string(),
                m.headers.clone().unwrap_or_default(),
                m.payload.clone(),
            )),
            _ => break,
        }
    }
    out
}

/// Every reply stored on the outbound stream, by tenant (from the subject), in order.
pub async fn replies_by_tenant(js: &jetstream::Context) -> BTreeMap<String, Vec<OutboundReply>> {
    let mut by_tenant: BTreeMap<String, Vec<OutboundReply>> = BTreeMap::new();
    for (subject, _, payload) in read_stream(js, subjects::OUTBOUND_STREAM, "outbound.>").await {
        let tenant = subjects::tenant_of(&subject)
            .map(|t| t.to_string())
            .unwrap_or(subject);
        let reply: OutboundReply = serde_json::from_slice(&payload).expect("reply json");
        by_tenant.entry(tenant).or_default().push(reply);
    }
    by_tenant
}

/// Dead letters of one direction: (tenant, reason, attempts).
pub async fn dead_letters(
    js: &jetstream::Context,
    direction: Direction,
) -> Vec<(String, String, u32)> {
    read_stream(
        js,
        subjects::DLQ_STREAM,
        &subjects::dead_letter_filter(direction),
    )
    .await
    .into_iter()
    .map(|(subject, headers, _)| {
        let get = |h: &str| {
            headers
                .get(h)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        (
            subjects::tenant_of(&subject)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            get(switchyard_shared::lanes::dead_letter::HEADER_REASON),
            get(switchyard_shared::lanes::dead_letter::HEADER_ATTEMPTS)
                .parse()
                .unwrap_or(0),
        )
    })
    .collect()
}

/// The value of a Prometheus counter (summed over label sets matching `labels`).
pub async fn metric(ops: std::net::SocketAddr, name: &str, labels: &str) -> f64 {
    let text = reqwest::get(format!("http://{ops}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    metric_sum(&text, name, labels)
}

/// The sum of every sample of `name` whose label set contains `labels`, in
/// Prometheus text as `/metrics` (or an in-process recorder) renders it.
pub fn metric_sum(rendered: &str, name: &str, labels: &str) -> f64 {
    rendered
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        // An empty float sum is -0.0, which would print as "-0".
        .fold(0.0, |total, v| total + v)
}

/// Publishes reply parts for `tenant` as the router would (one per body, in
/// order, deterministic ids from `event_prefix`), waiting for every ack.
pub async fn publish_replies(
    js: &jetstream::Context,
    tenant: &TenantId,
    event_prefix: &str,
    chat: &str,
    bodies: impl IntoIterator<Item = String>,
) {
    // Acks are awaited in chunks: thousands of outstanding acks overflow the
    // client's ack inbox.
    let mut acks = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        if acks.len() >= 256 {
            for ack in acks.drain(..) {
                let ack: jetstream::context::PublishAckFuture = ack;
                ack.await.expect("ack");
            }
        }
        let event_id = switchyard_shared::ids::EventId::parse(&format!("{event_prefix}-{i}"))
            .expect("event id");
        let reply = OutboundReply {
            tenant: tenant.clone(),
            reply_id: OutboundReply::reply_id_for(&event_id, 0),
            event_id,
            chat_id: switchyard_shared::message_ids::ChatId::parse(chat).expect("chat id"),
            body,
            part: 0,
            parts: 1,
            priority: Default::default(),
            received_at_ms: None,
            menu: None,
        };
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, reply.msg_id().as_str());
        acks.push(
            js.publish_with_headers(
                subjects::outbound(tenant),
                headers,
                serde_json::to_vec(&reply).expect("json").into(),
            )
            .await
            .expect("publish"),
        );
    }
    for ack in acks {
        ack.await.expect("ack");
    }
}

/// Waits (at most `deadline`) until the dead-letter stream holds letters of
/// `direction`, then returns them.
pub async fn wait_dead_letters(
    js: &jetstream::Context,
    direction: Direction,
    deadline: Duration,
) -> Vec<(String, String, u32)> {
    crate::poll::until("dead letters", deadline, || async {
        let letters = dead_letters(js, direction).await;
        (!letters.is_empty()).then_some(letters)
    })
    .await
}

/// Every reply stored for each tenant, live (`OUTBOUND`) and bulk (`BULK`),
/// asserting that the bulk lane holds only replies marked bulk (the router
/// answers re-run events there).
pub async fn replies_in_both_lanes(
    js: &jetstream::Context,
) -> BTreeMap<String, Vec<OutboundReply>> {
    let mut all = replies_by_tenant(js).await;
    let bulk = subjects::all_partitions_filter(Direction::Bulk);
    for (subject, _, payload) in read_stream(js, subjects::BULK_STREAM, &bulk).await {
        let tenant = subjects::tenant_of(&subject).map_or(subject, |t| t.to_string());
        let reply: OutboundReply = serde_json::from_slice(&payload).expect("reply json");
        assert_eq!(
            reply.priority,
            switchyard_shared::replies::Priority::Bulk,
            "only bulk replies in the bulk lane"
        );
        all.entry(tenant).or_default().push(reply);
    }
    all
}
