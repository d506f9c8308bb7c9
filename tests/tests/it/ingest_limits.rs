//! Ingest's HTTP server bounds (issue 17): header-read and body-read
//! timeouts, the connection cap and the in-flight cap, each configured low
//! and attacked from raw sockets while a real webhook is still answered.

use std::time::Duration;

use crate::ingest_support::{Harness, message};
use reqwest::StatusCode;
use sqlx::PgPool;
use switchyard_tests::poll;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    time::{Instant, timeout},
};

fn addr(h: &Harness) -> String {
    h.base.trim_start_matches("http://").to_owned()
}

/// A webhook on a connection of its own; returns the status and how long it took.
async fn fresh_webhook(h: &Harness, id: &str) -> (StatusCode, Duration) {
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(h.hook_url("tenant-a"))
        .header("content-type", "application/json")
        .body(message(id))
        .send()
        .await
        .expect("ingest answers");
    (response.status(), started.elapsed())
}

/// Reads until the server closes the connection (EOF or reset); returns what
/// was read, or `None` if it stayed open for `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = timeout(within, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&answer).into_owned())
}

/// A connection that sent a request head and `sent` bytes of a body of `len`.
async fn partial_body(h: &Harness, len: usize, sent: &str) -> TcpStream {
    let a = addr(h);
    let path = h.hook_url("tenant-a");
    let path = path.trim_start_matches(&h.base);
    let mut s = TcpStream::connect(&a).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n{sent}"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn many_half_open_connections_are_closed_and_a_webhook_is_answered_meanwhile(db: PgPool) {
    let h = Harness::start_with(
        db,
        &[
            ("SWITCHYARD_HTTP_HEADER_TIMEOUT", "2s"),
            ("SWITCHYARD_HTTP_MAX_CONNECTIONS", "300"),
        ],
    )
    .await;
    let a = addr(&h);
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(&a).await.expect("connect");
        // One byte of a request head, and nothing more.
        s.write_all(b"P").await.expect("write");
        held.push(s);
    }
    let opened = Instant::now();
    let (status, took) = fresh_webhook(&h, "HALF-OPEN-1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(took < Duration::from_secs(1), "webhook took {took:?}");
    // Every held connection is closed by the header timeout (2 s), none
    // answered as a request.
    for s in &mut held {
        let left = Duration::from_secs(6).saturating_sub(opened.elapsed());
        let answer = closed_within(s, left)
            .await
            .expect("a half-open connection was still open 6 s after the 2 s header timeout");
        assert!(!answer.contains("200 OK"), "{answer}");
    }
    let (status, _) = fresh_webhook(&h, "HALF-OPEN-2").await;
    assert_eq!(status, StatusCode::OK);
}

/// Reads one whole answer (head and `Content-Length` body) from `s`.
async fn read_answer(s: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    let complete = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(str::to_owned)
            })?
            .trim()
            .parse()
            .ok()?;
        (body.len() >= length).then(|| text.clone().into_owned())
    };
    loop {
        if let Some(text) = complete(&answer) {
            return text;
        }
        let n = timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("answered")
            .expect("read");
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&chunk[..n]);
    }
}

/// A whole webhook request for `id` on an open connection.
async fn post_on(h: &Harness, s: &mut TcpStream, id: &str) {
    let body = message(id);
    let a = addr(h);
    let path = h.hook_url("tenant-a");
    let path = path.trim_start_matches(&h.base);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.expect("write");
}

/// Ingest with a 1 s header timeout and the idle timeout `idle`.
async fn resting_harness(db: PgPool, idle: &str) -> Harness {
    Harness::start_with(
        db,
        &[
            ("SWITCHYARD_HTTP_HEADER_TIMEOUT", "1s"),
            ("SWITCHYARD_HTTP_IDLE_TIMEOUT", idle),
        ],
    )
    .await
}

/// A connection that was answered one webhook (`id`) and is kept open.
async fn kept_connection(h: &Harness, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr(h)).await.expect("connect");
    post_on(h, &mut s, id).await;
    let answer = read_answer(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    s
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn an_idle_keep_alive_connection_rests_past_the_header_timeout_until_the_idle_timeout(
    db: PgPool,
) {
    let h = resting_harness(db, "3s").await;
    let mut s = kept_connection(&h, "IDLE-1").await;
    let answered = Instant::now();
    // Still open well past the header timeout (1 s)...
    assert_eq!(
        closed_within(&mut s, Duration::from_millis(2000)).await,
        None,
        "a resting connection was closed by the header timeout"
    );
    // ...and closed once the idle timeout (3 s) has passed.
    closed_within(&mut s, Duration::from_secs(4))
        .await
        .expect("an idle keep-alive connection stayed open past the idle timeout");
    assert!(answered.elapsed() >= Duration::from_millis(2900));
}

/// The race the idle bound exists for: a client whose pool keeps connections
/// longer than the header timeout posts on one it kept.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_connection_kept_past_the_header_timeout_still_takes_the_next_webhook(db: PgPool) {
    let h = resting_harness(db, "30s").await;
    let mut s = kept_connection(&h, "KEPT-1").await;
    // The client's pool keeps the connection; time passes (the scenario, not
    // a wait for something to happen).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    post_on(&h, &mut s, "KEPT-2").await;
    let second = read_answer(&mut s).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}

/// Resting longer does not loosen the head's bound: a head that trickles on
/// a kept connection is cut at the header timeout from its first byte.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_head_trickling_on_a_kept_connection_is_cut_at_the_header_timeout(db: PgPool) {
    let h = resting_harness(db, "60s").await;
    let mut s = kept_connection(&h, "TRICKLE-1").await;
    // The connection rests past the header timeout (the scenario, not a
    // wait for something to happen).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"POST / HT").await.expect("write");
    let started = Instant::now();
    let answer = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("a trickling head on a kept connection was not cut");
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "cut before its header timeout: {:?}",
        started.elapsed()
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_trickling_body_is_cut_while_others_are_served(db: PgPool) {
    let h = Harness::start_with(db, &[("SWITCHYARD_HTTP_BODY_TIMEOUT", "1s")]).await;
    let body = message("TRICKLE-1");
    let mut slow = partial_body(&h, body.len(), &body[..1]).await;
    let (status, _) = fresh_webhook(&h, "FAST-1").await;
    assert_eq!(status, StatusCode::OK);
    let answer = closed_within(&mut slow, Duration::from_secs(5))
        .await
        .expect("a trickling body was still being read 5 s after the 1 s body timeout");
    assert!(
        answer.is_empty() || !answer.starts_with("HTTP/1.1 2"),
        "{answer}"
    );
    assert_eq!(
        h.inbound_count().await,
        1,
        "only the fast webhook is published"
    );
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn over_the_connection_cap_new_connections_are_closed_until_a_slot_frees(db: PgPool) {
    let h = Harness::start_with(
        db,
        &[
            ("SWITCHYARD_HTTP_HEADER_TIMEOUT", "2s"),
            ("SWITCHYARD_HTTP_MAX_CONNECTIONS", "4"),
        ],
    )
    .await;
    let a = addr(&h);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(&a).await.expect("connect"));
    }
    let opened = Instant::now();
    let mut extra = TcpStream::connect(&a).await.expect("connect");
    let _ = extra.write_all(b"POST / HTTP/1.1\r\n").await;
    closed_within(&mut extra, Duration::from_secs(1))
        .await
        .expect("a connection over the cap was kept open");
    assert!(
        opened.elapsed() < Duration::from_millis(1500),
        "refused only after the held connections timed out"
    );
    // Once the held connections time out, webhooks get through again.
    poll::until(
        "a webhook to be answered once a slot frees",
        Duration::from_secs(10),
        || async {
            let answered = reqwest::Client::new()
                .post(h.hook_url("tenant-a"))
                .header("content-type", "application/json")
                .body(message("CAP-1"))
                .send()
                .await;
            matches!(answered, Ok(r) if r.status() == StatusCode::OK).then_some(())
        },
    )
    .await;
    drop(held);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn over_the_in_flight_cap_a_request_is_answered_503_at_once(db: PgPool) {
    let h = Harness::start_with(
        db,
        &[
            ("SWITCHYARD_HTTP_MAX_IN_FLIGHT", "2"),
            ("SWITCHYARD_HTTP_BODY_TIMEOUT", "3s"),
        ],
    )
    .await;
    let body = message("INFLIGHT-1");
    // Two requests in flight: heads sent, bodies not yet.
    let _first = partial_body(&h, body.len(), "").await;
    let _second = partial_body(&h, body.len(), "").await;
    let (status, took) = poll::until(
        "both slow requests to be in flight",
        Duration::from_secs(2),
        || async {
            let (status, took) = fresh_webhook(&h, "INFLIGHT-2").await;
            (status == StatusCode::SERVICE_UNAVAILABLE).then_some((status, took))
        },
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < Duration::from_secs(1), "shed after {took:?}");
    // Once the slow bodies time out, the slots free.
    poll::until(
        "a webhook to be answered once the slow requests end",
        Duration::from_secs(10),
        || async { (fresh_webhook(&h, "INFLIGHT-3").await.0 == StatusCode::OK).then_some(()) },
    )
    .await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn shutdown_drains_a_request_in_flight_and_accepts_no_more(db: PgPool) {
    let h = Harness::start(db).await;
    let body = message("DRAIN-1");
    let a = addr(&h);
    let path = h.hook_url("tenant-a");
    let path = path.trim_start_matches(&h.base).to_owned();
    let mut s = TcpStream::connect(&a).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    // "100 Continue" comes when the handler starts reading the body: the
    // request is in flight before shutdown.
    let mut seen = Vec::new();
    let mut chunk = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
        let n = timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("100 Continue")
            .expect("read");
        assert!(n > 0, "closed before 100 Continue");
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 100"));
    h.shutdown.cancel();
    s.write_all(body.as_bytes()).await.expect("write the body");
    let answer = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("the drained connection was not closed after its answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    poll::until(
        "new connections to be refused after shutdown",
        Duration::from_secs(5),
        || async { TcpStream::connect(addr(&h)).await.is_err().then_some(()) },
    )
    .await;
}
