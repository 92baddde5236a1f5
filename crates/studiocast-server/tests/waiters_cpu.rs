//! What thousands of waiting blocking reloads cost: alone in this test
//! binary, because the CPU clock it reads is the whole process's.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::net::{opts, process_cpu, read_reply, send_get, Server};
use common::views::VIDEO;
use tokio::net::TcpStream;

/// 2000 requests wait on one rendition over 2000 connections; while they
/// wait, the process (server and clients) uses next to no CPU; one
/// publication then answers them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_waiting_requests_cost_no_cpu() {
    let _ = studiocast_server::raise_fd_limit();
    let n = 2000;
    let mut srv = Server::start(opts(Duration::from_secs(10), 4096), |_| {}).await;
    let tx = srv.fake.publish("s1", "video", VIDEO.at(12, 1));
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        send_get(&mut s, "/live/s1/video/index.m3u8?_HLS_msn=12&_HLS_part=2")
            .await
            .unwrap();
        readers.push(tokio::spawn(async move { read_reply(&mut s).await }));
    }
    let t = Instant::now();
    while srv.fake.live_lookups.load(Ordering::Relaxed) < n {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "requests did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let window = Duration::from_secs(2);
    let cpu0 = process_cpu();
    tokio::time::sleep(window).await;
    let used = process_cpu() - cpu0;
    eprintln!("{n} waiting requests: {used:?} of CPU over {window:?}");
    assert!(
        readers.iter().all(|r| !r.is_finished()),
        "a request was answered before the publication"
    );
    let t = Instant::now();
    tx.send_replace(Arc::new(VIDEO.at(12, 2)));
    for r in readers {
        let reply = r.await.unwrap().unwrap();
        assert_eq!(reply.status, 200);
    }
    eprintln!("one publication answered all {n} in {:?}", t.elapsed());
    // 5% of one core at most; idle waiting measures about nothing.
    assert!(used < window / 20, "{used:?} of CPU while waiting");
    srv.shut_down(Duration::from_secs(5)).await;
}
