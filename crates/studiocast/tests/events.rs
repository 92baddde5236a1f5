//! `GET /api/v1/events` through the daemon: Server-Sent Events of a
//! session's start, live and end, in order, to a client with a token of
//! scope `read` (401 without one).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn a_session_start_live_and_end_arrive_as_events() {
    let dir = tmpdir("events");
    let d = Daemon::start(&dir);
    assert_eq!(
        request(&d.addr, "GET", "/api/v1/events", &[], b"").status,
        401
    );
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    write!(
        s,
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    r.read_line(&mut head).unwrap();
    assert!(head.contains(" 200 "), "{head}");
    // Past the headers.
    loop {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        if l.trim().is_empty() {
            break;
        }
        if l.to_ascii_lowercase().starts_with("content-type") {
            assert!(l.contains("text/event-stream"), "{l}");
        }
    }
    let id = start_live(&d, "demo");
    api(&d, "POST", &format!("/api/v1/sessions/{id}/stop"), None);
    // The body is chunked: chunk sizes and event lines; keep the events.
    let (mut states, mut kind) = (Vec::new(), String::new());
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(40)
        && states.last().map(String::as_str) != Some("ended")
    {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        if let Some(k) = l.trim().strip_prefix("event: ") {
            kind = k.to_string();
        } else if let Some(data) = l.trim().strip_prefix("data: ") {
            if kind == "session" {
                let v: serde_json::Value = serde_json::from_str(data).unwrap();
                assert_eq!(v["id"], id.as_str());
                states.push(v["state"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(
        states,
        ["starting", "live", "stopping", "ended"],
        "{states:?}"
    );
    // A client that reconnects after the first event gets the rest again,
    // from the next id, in order.
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nLast-Event-ID: 1\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut ids = Vec::new();
    while ids.len() < 3 {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        if let Some(i) = l.trim().strip_prefix("id: ") {
            ids.push(i.parse::<u64>().unwrap());
        }
    }
    assert_eq!(ids, [2, 3, 4], "resumed after id 1");
    d.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}
