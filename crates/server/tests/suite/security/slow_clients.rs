//! Rule: slow or idle clients cannot hold the server. A request's headers must arrive
//! within the header-read timeout, a keep-alive connection may wait between requests
//! only for the idle timeout, a request must be received and answered within the
//! request timeout (408 or 503, JSON, then the connection is closed), and at most
//! `max_connections` connections are served at once (the next waits unaccepted).
//! Meanwhile everyone else is served.
//!
//! The tests talk raw TCP, since an HTTP client would not send half a request. They
//! never assert speed: only that a connection is closed (or answered) within its bound
//! plus a generous margin for a busy machine, or that it is not served while the
//! bound's condition holds.

use std::time::{Duration, Instant};

use bonafide_server::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, Harness};

/// Slack on top of a bound before a connection still open counts as held.
const MARGIN: Duration = Duration::from_secs(5);
/// A bound long enough never to matter in a test.
const LONG: Duration = Duration::from_secs(600);

fn limits(header: Duration, idle: Duration, request: Duration, max_connections: usize) -> Config {
    Config {
        header_read_timeout: header,
        idle_timeout: idle,
        request_timeout: request,
        max_connections,
        ..common::config()
    }
}

async fn connect(h: &Harness) -> TcpStream {
    let addr = h.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.unwrap()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bonafide.test\r\n\r\n").into_bytes()
}

/// An answer as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one answer (headers and a `Content-Length` body); `None` if nothing arrived
/// by `deadline`. Panics if the connection closes or breaks mid-answer.
async fn read_answer(s: &mut (impl AsyncRead + Unpin), deadline: Instant) -> Option<Answer> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("not an HTTP answer: {head}"));
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or_else(|| panic!("no content-length: {head}"));
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                return Some(Answer { status, head, body });
            }
        }
        let n = match tokio::time::timeout_at(deadline.into(), s.read(&mut chunk)).await {
            Err(_) if buf.is_empty() => return None,
            Err(_) => panic!("half an answer by the deadline: {buf:?}"),
            Ok(Ok(0)) => panic!("closed mid-answer after {} bytes", buf.len()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => panic!("connection broke mid-answer: {e}"),
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Waits for the server to close `s` (EOF or reset), failing if it is still open at
/// `deadline`. Returns whatever the server sent before closing.
async fn closed_by(s: &mut (impl AsyncRead + Unpin), deadline: Instant, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline.into(), s.read(&mut chunk)).await {
            Err(_) => panic!("{what}: still open past its bound (got {got:?})"),
            Ok(Ok(0)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            // A reset is a close too (the kernel resets when unread bytes remain).
            Ok(Err(_)) => return got,
        }
    }
}

async fn healthz_served(h: &Harness) {
    let (st, body) = h.call("GET", "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn half_sent_headers_are_closed_within_the_header_read_timeout_while_others_are_served() {
    let header = Duration::from_secs(2);
    let h = common::start_with_config(limits(header, LONG, LONG, 64)).await;
    let started = Instant::now();

    let mut held = Vec::new();
    // Half a header, then nothing.
    for _ in 0..3 {
        let mut s = connect(&h).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: bonafide.test\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    // Connected, never a byte.
    held.push(connect(&h).await);
    // Slowloris: a new header line every 200 ms, progress that an inactivity timeout
    // would keep resetting; the bound counts from the connection's start.
    let mut trickle = connect(&h).await;
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let trickler = tokio::spawn(async move {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let line = format!("X-Slow-{i}: a\r\n");
            if trickle.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            if i > 200 {
                panic!("a trickled header was still being taken after 40 s");
            }
        }
    });

    // Everyone else is served meanwhile, including a header sent in two halves well
    // within the bound.
    for _ in 0..5 {
        healthz_served(&h).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut halves = connect(&h).await;
    halves
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    halves
        .write_all(b"Host: bonafide.test\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut halves, Instant::now() + MARGIN)
        .await
        .expect("a header sent in two halves within the bound is answered");
    assert_eq!(answer.status, 200, "{answer:?}");

    let bound = started + header + MARGIN;
    for (i, s) in held.iter_mut().enumerate() {
        let got = closed_by(s, bound, &format!("half-sent connection {i}")).await;
        assert!(got.is_empty(), "a half-sent request got an answer: {got:?}");
    }
    tokio::time::timeout_at(bound.into(), trickler)
        .await
        .expect("the trickled header's connection is still taken past its bound")
        .unwrap();
    healthz_served(&h).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_secs(1);
    // The header-read timeout is long: the idle one alone must close the connection.
    let h = common::start_with_config(limits(LONG, idle, LONG, 64)).await;
    let mut s = connect(&h).await;
    s.write_all(&get("/healthz")).await.unwrap();
    let first = read_answer(&mut s, Instant::now() + MARGIN).await.unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    // Within the idle timeout the connection is kept for the next request.
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(&get("/healthz")).await.unwrap();
    let second = read_answer(&mut s, Instant::now() + MARGIN)
        .await
        .expect("a keep-alive connection is answered within the idle timeout");
    assert_eq!(second.status, 200, "{second:?}");
    let got = closed_by(&mut s, Instant::now() + idle + MARGIN, "idle connection").await;
    assert!(got.is_empty(), "{got:?}");
    healthz_served(&h).await;
}

#[tokio::test]
async fn a_half_sent_request_after_a_kept_alive_one_is_closed_within_the_header_read_timeout() {
    let header = Duration::from_secs(1);
    // A long idle timeout: once a request has begun, its headers have their own bound.
    let h = common::start_with_config(limits(header, LONG, LONG, 64)).await;
    let mut s = connect(&h).await;
    s.write_all(&get("/healthz")).await.unwrap();
    let first = read_answer(&mut s, Instant::now() + MARGIN).await.unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let got = closed_by(
        &mut s,
        started + header + MARGIN,
        "half-sent second request",
    )
    .await;
    assert!(got.is_empty(), "{got:?}");
    healthz_served(&h).await;
}

#[tokio::test]
async fn a_body_trickling_past_the_request_timeout_is_answered_408_and_closed() {
    let request = Duration::from_secs(1);
    let h = common::start_with_config(limits(LONG, LONG, request, 64)).await;
    let s = connect(&h).await;
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(
        b"POST /v1/verify HTTP/1.1\r\nHost: bonafide.test\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"token\":\"",
    )
    .await
    .unwrap();
    let started = Instant::now();
    // One byte every 200 ms: the 100-byte body would take 18 s more.
    let trickler = tokio::spawn(async move {
        for _ in 0..90 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let answer = read_answer(&mut rd, started + request + MARGIN)
        .await
        .expect("no answer to a trickled body within the request timeout");
    assert_eq!(answer.status, 408, "{answer:?}");
    let v = answer.json();
    assert_eq!(v["error"]["code"], "REQUEST_TIMEOUT", "{v}");
    assert!(v["error"]["request_id"].is_string(), "{v}");
    assert!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("connection: close"),
        "{}",
        answer.head
    );
    closed_by(&mut rd, Instant::now() + MARGIN, "timed-out request").await;
    trickler.abort();
    healthz_served(&h).await;
}

#[tokio::test]
async fn the_idle_timeout_does_not_cut_a_request_in_progress() {
    let idle = Duration::from_millis(500);
    let h = common::start_with_config(limits(LONG, idle, LONG, 64)).await;
    let mut s = connect(&h).await;
    let body = br#"{"token":"abc"}"#;
    s.write_all(
        format!(
            "POST /v1/verify HTTP/1.1\r\nHost: bonafide.test\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The body takes three idle timeouts to arrive: the request is in progress, not
    // idle, so it is still answered.
    for b in body {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(&[*b]).await.unwrap();
    }
    let answer = read_answer(&mut s, Instant::now() + MARGIN)
        .await
        .expect("a request slower than the idle timeout is answered");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["valid"], false);
}

#[tokio::test]
async fn a_verify_decision_handed_to_the_audit_log_is_recorded_though_its_request_timed_out() {
    use sqlx::Connection;
    let request = Duration::from_secs(1);
    let h = common::start_with_config(limits(LONG, LONG, request, 64)).await;
    let key = h.issuer("slow.example").await;
    let reg = h
        .register(&key, json!({"name": "A", "scopes": ["read:x"]}))
        .await;
    let agent = reg["agent_id"].as_str().unwrap().to_owned();
    let token = reg["token"].as_str().unwrap().to_owned();
    let before = h.state.store.audit_size().await.unwrap();

    // Another process holds SQLite's write lock: the committer waits on it (its busy
    // timeout is 5 s), past the request timeout.
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&h.db_path);
    let mut db = sqlx::sqlite::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut db)
        .await
        .unwrap();

    let started = Instant::now();
    let answer = tokio::time::timeout_at(
        (started + request + Duration::from_secs(2)).into(),
        h.call("POST", "/v1/verify", None, Some(json!({"token": token}))),
    )
    .await;
    sqlx::query("ROLLBACK").execute(&mut db).await.unwrap();
    let (st, v) = answer.expect("no answer within the request timeout");
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "TIMEOUT", "{v}");

    // The decision was the committer's already: it is recorded, whole, all the same.
    let deadline = Instant::now() + MARGIN;
    while h.state.store.audit_size().await.unwrap() == before {
        assert!(
            Instant::now() < deadline,
            "the timed-out verify's decision was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = h
        .state
        .store
        .audit_entries(before, before + 1)
        .await
        .unwrap();
    let entry: Value = serde_json::from_slice(&rows[0].entry).unwrap();
    assert_eq!(entry["type"], "verify", "{entry}");
    assert_eq!(entry["agent"], agent.as_str(), "{entry}");
    assert_eq!(entry["decision"], "allow", "{entry}");

    // And the next verify is answered normally.
    let v = h.verify_token(&token).await;
    assert_eq!(v["valid"], true, "{v}");
}

#[tokio::test]
async fn a_client_that_stops_reading_its_answers_is_closed_within_the_request_timeout() {
    let request = Duration::from_secs(1);
    // One slot: while the reader that stopped holds it, nobody else is served.
    let h = common::start_with_config(limits(LONG, LONG, request, 1)).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = h.base.trim_start_matches("http://").parse().unwrap();
    let mut stopped_reading = socket.connect(addr).await.unwrap();
    // Pipelined requests whose answers (the OpenAPI document, tens of KiB each) far
    // exceed the socket buffers; none is ever read.
    stopped_reading
        .write_all(&get("/openapi.json").repeat(300))
        .await
        .unwrap();
    let started = Instant::now();
    let mut next = connect(&h).await;
    next.write_all(&get("/healthz")).await.unwrap();
    // The stall is noticed a request timeout after the buffers fill, which takes a
    // moment of its own: a second margin for it.
    let a = read_answer(&mut next, started + request + MARGIN + MARGIN)
        .await
        .expect("a client that stopped reading held the server past the request timeout");
    assert_eq!(a.status, 200, "{a:?}");
    closed_by(
        &mut stopped_reading,
        Instant::now() + MARGIN,
        "stalled reader",
    )
    .await;
}

#[tokio::test]
async fn with_the_connection_cap_reached_a_new_connection_waits_until_one_closes() {
    let h = common::start_with_config(limits(LONG, LONG, LONG, 2)).await;
    let mut first = connect(&h).await;
    let mut second = connect(&h).await;
    for s in [&mut first, &mut second] {
        s.write_all(&get("/healthz")).await.unwrap();
        let a = read_answer(s, Instant::now() + MARGIN).await.unwrap();
        assert_eq!(a.status, 200, "{a:?}");
    }
    // Both kept alive: a third connection is not served while they are open...
    let mut third = connect(&h).await;
    third.write_all(&get("/healthz")).await.unwrap();
    let early = read_answer(&mut third, Instant::now() + Duration::from_secs(1)).await;
    assert!(early.is_none(), "served past the connection cap: {early:?}");
    // ...and is as soon as one closes.
    drop(first);
    let a = read_answer(&mut third, Instant::now() + MARGIN)
        .await
        .expect("a waiting connection is served once a slot frees");
    assert_eq!(a.status, 200, "{a:?}");
    drop(second);
    drop(third);
    // The server keeps serving.
    healthz_served(&h).await;
    healthz_served(&h).await;
}

#[tokio::test]
async fn connections_holding_half_sent_headers_free_their_slots_within_the_header_read_timeout() {
    let header = Duration::from_secs(1);
    let h = common::start_with_config(limits(header, LONG, LONG, 2)).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect(&h).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    let started = Instant::now();
    // Every slot is taken by a half-sent request; a full one is served once they are
    // closed.
    let mut waiting = connect(&h).await;
    waiting.write_all(&get("/healthz")).await.unwrap();
    let a = read_answer(&mut waiting, started + header + MARGIN)
        .await
        .expect("half-sent requests held the server past the header-read timeout");
    assert_eq!(a.status, 200, "{a:?}");
    for (i, s) in held.iter_mut().enumerate() {
        closed_by(s, Instant::now() + MARGIN, &format!("half-sent {i}")).await;
    }
}
