//! A tenant lane's opening asks JetStream whether the tenant has a spill
//! backlog left by an earlier owner of its partition. Every tenant's first
//! event opens a lane in each of router and sender (a thousand of them at a
//! start over a thousand tenants), so the question is one request: the read
//! of the tenant's last spilled message, with no stream info before it
//! (issue 20).

use std::time::Duration;

use futures::StreamExt as _;
use switchyard_shared::{
    ids::TenantId,
    lanes::spill,
    subjects::{self, Direction},
};
use switchyard_tests::{fixtures, nats_server::NatsServer};

const MESSAGE_GET: &str = "$JS.API.STREAM.MSG.GET.SPILL";

/// The JetStream API requests seen until the `reads`-th read of a spilled
/// message. The server relays API requests to other subscribers on a path
/// of their own, so a marker published after them may overtake them; but a
/// stream-info request made before a read is relayed before it.
async fn api_requests_through_read(seen: &mut async_nats::Subscriber, reads: usize) -> Vec<String> {
    let mut requests = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = seen.next().await {
            let subject = message.subject.as_str();
            if subject.starts_with("$JS.API.") {
                requests.push(subject.to_owned());
                if requests.iter().filter(|r| *r == MESSAGE_GET).count() == reads {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{reads} message reads seen: {requests:?}");
    requests
}

#[tokio::test]
async fn a_lanes_backlog_check_is_one_jetstream_request_and_sees_a_backlog() {
    let nats = NatsServer::start();
    let (_client, js) = fixtures::jetstream_with_streams(&nats.url(), 4).await;
    let watcher = async_nats::connect(nats.url()).await.unwrap();
    let mut seen = watcher.subscribe("$JS.API.>").await.unwrap();
    watcher.flush().await.unwrap();
    let acme = TenantId::parse("acme").unwrap();

    let empty = spill::has_backlog(&js, Direction::Inbound, &acme)
        .await
        .unwrap();
    let requests = api_requests_through_read(&mut seen, 1).await;
    assert!(!empty, "nothing spilled yet");
    assert_eq!(
        requests,
        [MESSAGE_GET],
        "one request per check, no stream info"
    );

    js.publish(subjects::spill(Direction::Inbound, &acme), "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let backlog = spill::has_backlog(&js, Direction::Inbound, &acme)
        .await
        .unwrap();
    let other = spill::has_backlog(&js, Direction::Outbound, &acme)
        .await
        .unwrap();
    assert!(backlog, "the spilled message is a backlog");
    assert!(!other, "in its own direction only");
    let requests = api_requests_through_read(&mut seen, 2).await;
    assert_eq!(
        requests,
        [MESSAGE_GET, MESSAGE_GET],
        "one request per check"
    );
}
