//! Blocking playlist reloads over real sockets: how soon a waiting request
//! is answered after the awaited part is published (what thousands of
//! waiting requests cost is in `waiters_cpu.rs`, alone in its process).

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::net::{opts, percentile, read_reply, send_get, Server};
use common::views::VIDEO;
use tokio::net::TcpStream;

const PL: &str = "/live/s1/video/index.m3u8";

fn next(msn: u64, part: u32) -> (u64, u32) {
    if part + 1 == VIDEO.parts {
        (msn + 1, 0)
    } else {
        (msn, part + 1)
    }
}

fn request_for((msn, part): (u64, u32)) -> String {
    format!("{PL}?_HLS_msn={msn}&_HLS_part={part}")
}

/// Waits until the server has taken `n` live lookups (each request makes
/// one, and then parks on the channel without yielding in between).
async fn until_lookups(srv: &Server, n: usize, limit: Duration) {
    let t = Instant::now();
    while srv.fake.live_lookups.load(Ordering::Relaxed) < n {
        assert!(
            t.elapsed() < limit,
            "only {} of {n} requests arrived",
            srv.fake.live_lookups.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn summary(what: &str, mut delays: Vec<Duration>) -> (Duration, Duration) {
    delays.sort();
    let (p50, p99) = (percentile(&delays, 50), percentile(&delays, 99));
    eprintln!(
        "{what}: n={} p50={p50:?} p99={p99:?} max={:?}",
        delays.len(),
        delays[delays.len() - 1]
    );
    (p50, p99)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_is_answered_as_soon_as_its_part_is_published() {
    let mut srv = Server::start(opts(Duration::from_secs(10), 64), |_| {}).await;
    let mut at = (12, 0);
    let tx = srv.fake.publish("s1", "video", VIDEO.at(at.0, at.1));
    let mut conn = TcpStream::connect(srv.addr).await.unwrap();
    conn.set_nodelay(true).unwrap();
    let rounds = 300;
    let mut delays = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let want = next(at.0, at.1);
        send_get(&mut conn, &request_for(want)).await.unwrap();
        until_lookups(&srv, i + 1, Duration::from_secs(2)).await;
        // A moment more, so that the request is surely parked.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let t = Instant::now();
        tx.send_replace(Arc::new(VIDEO.at(want.0, want.1)));
        let reply = read_reply(&mut conn).await.unwrap();
        delays.push(t.elapsed());
        assert_eq!(reply.status, 200);
        let marker = format!("## view {}.{}", want.0, want.1);
        assert!(String::from_utf8_lossy(&reply.body).contains(&marker));
        at = want;
    }
    let (p50, p99) = summary("publish → response, one waiter at a time", delays);
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
    assert!(p50 < Duration::from_millis(10), "p50 {p50:?}");
    srv.shut_down(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_waiters_are_all_answered_promptly_by_one_publication() {
    let mut srv = Server::start(opts(Duration::from_secs(10), 1024), |_| {}).await;
    let tx = srv.fake.publish("s1", "video", VIDEO.at(12, 1));
    let n = 500;
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        send_get(&mut s, &request_for((12, 2))).await.unwrap();
        readers.push(tokio::spawn(async move {
            let reply = read_reply(&mut s).await;
            (reply, Instant::now())
        }));
    }
    until_lookups(&srv, n, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = Instant::now();
    tx.send_replace(Arc::new(VIDEO.at(12, 2)));
    let mut delays = Vec::with_capacity(n);
    for r in readers {
        let (reply, at) = r.await.unwrap();
        assert_eq!(reply.unwrap().status, 200);
        delays.push(at.duration_since(t));
    }
    let (_, p99) = summary("publish → response, 500 waiters at once", delays);
    assert!(p99 < Duration::from_millis(500), "p99 {p99:?}");
    srv.shut_down(Duration::from_secs(3)).await;
}
