//! When a run loses events or does not settle: where each lost event got to
//! (stored in the inbound stream? a reply stored for it on the outbound or
//! bulk stream? a send attempted?) and the state of every work consumer, so
//! the finding can be written down from the run's own evidence.

use std::fmt::Write as _;

use futures::StreamExt as _;
use switchyard_shared::subjects;

use super::{load::body_text, topology::Topology};
use crate::traffic::read_stream;

/// A report of where `lost` (tenant, seq) got to, and the consumers' state.
pub async fn diagnose(topology: &Topology, lost: &[(String, u64)]) -> String {
    let mut out = String::new();
    let inbound = read_stream(&topology.js, subjects::INBOUND_STREAM, "inbound.>").await;
    let outbound = read_stream(&topology.js, subjects::OUTBOUND_STREAM, "outbound.>").await;
    let bulk = read_stream(&topology.js, subjects::BULK_STREAM, "bulk.>").await;
    let attempts = topology.sim.attempts();
    for (tenant, seq) in lost.iter().take(20) {
        let msg_id = format!("{tenant}:chaos-{seq}");
        let text = body_text(tenant, *seq);
        let stored: Vec<String> = inbound
            .iter()
            .filter(|(_, h, _)| h.get("Nats-Msg-Id").is_some_and(|v| v.as_str() == msg_id))
            .map(|(subject, _, _)| subject.clone())
            .collect();
        let contains = |payload: &bytes::Bytes| String::from_utf8_lossy(payload).contains(&text);
        let replies = outbound.iter().filter(|(_, _, p)| contains(p)).count();
        let bulk_replies = bulk.iter().filter(|(_, _, p)| contains(p)).count();
        let tried = attempts.iter().filter(|a| a.body.contains(&text)).count();
        let _ = writeln!(
            out,
            "- {tenant} #{seq}: inbound {stored:?}, replies stored: {replies} outbound, \
             {bulk_replies} bulk; send attempts: {tried}"
        );
    }
    // What waits in tenants' spill lanes, with or without a consumer.
    if let Ok(spill) = topology.js.get_stream(subjects::SPILL_STREAM).await
        && let Ok(mut per_subject) = spill.info_with_subjects("spill.>").await
    {
        while let Some(Ok((subject, count))) = per_subject.next().await {
            let _ = writeln!(out, "- {}: {subject} holds {count}", subjects::SPILL_STREAM);
        }
    }
    for stream in [
        subjects::INBOUND_STREAM,
        subjects::SPILL_STREAM,
        subjects::OUTBOUND_STREAM,
        subjects::BULK_STREAM,
    ] {
        let Ok(s) = topology.js.get_stream(stream).await else {
            let _ = writeln!(out, "- {stream}: not reachable");
            continue;
        };
        let mut consumers = s.consumers();
        while let Some(info) = consumers.next().await {
            match info {
                Ok(i)
                    if i.num_pending > 0
                        || i.num_ack_pending > 0
                        || stream == subjects::SPILL_STREAM =>
                {
                    let _ = writeln!(
                        out,
                        "- {stream}/{}: pending {}, ack pending {}, redelivered {}, waiting pulls {}, \
                         delivered stream seq {}, ack floor stream seq {}",
                        i.name,
                        i.num_pending,
                        i.num_ack_pending,
                        i.num_redelivered,
                        i.num_waiting,
                        i.delivered.stream_sequence,
                        i.ack_floor.stream_sequence
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = writeln!(out, "- {stream}: consumer info failed: {e}");
                }
            }
        }
    }
    out
}

/// Where the slowest event of each fault spent its time: when its event
/// was stored in the inbound stream and its reply in the outbound stream
/// (the streams' own timestamps), relative to the fault's start, so a
/// recovery figure can be pinned on a stage (ingest and the outbox, the
/// router, the sender).
pub async fn slowest_paths(
    topology: &Topology,
    slowest: &[Option<(String, u64)>],
    began_ms: &[u64],
) -> String {
    let inbound = stored_times(&topology.js, subjects::INBOUND_STREAM, "inbound.>").await;
    let outbound = stored_times(&topology.js, subjects::OUTBOUND_STREAM, "outbound.>").await;
    let mut out = String::new();
    for (event, began) in slowest.iter().zip(began_ms) {
        let Some((tenant, seq)) = event else { continue };
        let msg_id = format!("{tenant}:chaos-{seq}");
        let text = body_text(tenant, *seq);
        let rel = |at: Option<u64>| at.map(|t| t as i64 - *began as i64);
        let stored = inbound
            .iter()
            .find(|(h, _, _)| h.get("Nats-Msg-Id").is_some_and(|v| v.as_str() == msg_id))
            .map(|(_, _, at)| *at);
        let replied = outbound
            .iter()
            .find(|(_, p, _)| String::from_utf8_lossy(p).contains(&text))
            .map(|(_, _, at)| *at);
        let _ = writeln!(
            out,
            "slowest {tenant} #{seq}: stored inbound {:?} ms, reply stored {:?} ms after the fault began",
            rel(stored),
            rel(replied)
        );
    }
    out
}

/// Every message of `stream` under `filter`: headers, payload, and when
/// the stream stored it (Unix ms).
async fn stored_times(
    js: &async_nats::jetstream::Context,
    stream: &str,
    filter: &str,
) -> Vec<(async_nats::HeaderMap, bytes::Bytes, u64)> {
    use async_nats::jetstream::consumer::pull::OrderedConfig;
    let mut out = Vec::new();
    let Ok(stream) = js.get_stream(stream).await else {
        return out;
    };
    let Ok(consumer) = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter.to_owned(),
            ..Default::default()
        })
        .await
    else {
        return out;
    };
    let pending = consumer.cached_info().num_pending as usize;
    let Ok(mut messages) = consumer.messages().await else {
        return out;
    };
    while out.len() < pending {
        match tokio::time::timeout(std::time::Duration::from_secs(5), messages.next()).await {
            Ok(Some(Ok(m))) => {
                let at = m
                    .info()
                    .map(|i| (i.published.unix_timestamp_nanos() / 1_000_000) as u64)
                    .unwrap_or(0);
                out.push((m.headers.clone().unwrap_or_default(), m.payload.clone(), at));
            }
            _ => break,
        }
    }
    out
}
