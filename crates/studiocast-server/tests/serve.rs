//! `serve` on real sockets (127.0.0.1:0): header timeout, eviction,
//! bounded shutdown, WebSocket upgrades.

mod common;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Fake, TempDir, TOKEN};
use studiocast_server::{router, serve, ServeOptions, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
    fake: Arc<Fake>,
    _dir: TempDir,
}

impl Server {
    async fn start(opts: ServeOptions, tweak: impl FnOnce(&mut ServerConfig, &TempDir)) -> Server {
        Server::start_with(Fake::new(), opts, tweak).await
    }

    async fn start_with(
        fake: Arc<Fake>,
        opts: ServeOptions,
        tweak: impl FnOnce(&mut ServerConfig, &TempDir),
    ) -> Server {
        let dir = TempDir::new("serve");
        let mut cfg = common::config(dir.path());
        tweak(&mut cfg, &dir);
        let app = router(cfg, fake.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve(listener, app, opts, shutdown));
        Server {
            addr,
            stop: Some(stop),
            task,
            fake,
            _dir: dir,
        }
    }

    /// Fires the shutdown future and says how long `serve` took to return.
    async fn shut_down(&mut self, limit: Duration) -> Duration {
        let t = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(limit, &mut self.task)
            .await
            .unwrap_or_else(|_| panic!("serve did not return within {limit:?}"))
            .unwrap()
            .unwrap();
        t.elapsed()
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }
}

fn opts(header_read_timeout: Duration, max_connections: usize, grace: Duration) -> ServeOptions {
    ServeOptions {
        header_read_timeout,
        max_connections,
        shutdown_grace: grace,
        write_stall_timeout: Duration::from_secs(60),
        tls: None,
    }
}

/// A session with a 32 MiB segment: far more than the socket buffers hold.
fn with_big_segment(dir: &TempDir) {
    let video = dir.path().join("sessions/s1/hls/video");
    std::fs::create_dir_all(&video).unwrap();
    std::fs::write(video.join("big.m4s"), vec![7u8; 32 << 20]).unwrap();
}

/// Reads until the server closes; `None` if it is still open at `limit`.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(all),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// One request on a fresh connection (`Connection: close`); the whole
/// answer, or `None` if none came within `limit`.
async fn request(addr: SocketAddr, head: &str, limit: Duration) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!("{head}\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let bytes = read_until_closed(&mut s, limit).await?;
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether the server has closed this connection (EOF or reset), without
/// waiting for more than a moment.
async fn is_closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
    }
}

#[tokio::test]
async fn a_half_open_connection_is_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(400);
    let mut srv = Server::start(opts(timeout, 64, Duration::from_secs(1)), |_, _| {}).await;

    // Half a request line, then nothing.
    let mut half = srv.connect().await;
    half.write_all(b"GET /healthz HT").await.unwrap();
    // Nothing at all.
    let mut silent = srv.connect().await;
    // A complete request, then kept alive and idle.
    let mut idle = srv.connect().await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();

    let t = Instant::now();
    let mut lived = Vec::new();
    for (name, s) in [
        ("half", &mut half),
        ("silent", &mut silent),
        ("keep-alive", &mut idle),
    ] {
        let answer = read_until_closed(s, Duration::from_secs(5)).await;
        let answer = answer.unwrap_or_else(|| panic!("{name}: still open after 5 s"));
        lived.push((
            name,
            t.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        ));
    }
    for (name, lived, answer) in &lived {
        eprintln!("{name}: closed after {lived:?} (timeout {timeout:?}); got {answer:?}");
        assert!(
            *lived >= timeout - Duration::from_millis(50),
            "{name}: {lived:?}"
        );
        assert!(
            *lived < timeout + Duration::from_millis(1500),
            "{name}: {lived:?}"
        );
    }
    assert!(
        lived[2].2.starts_with("HTTP/1.1 200"),
        "the complete request was answered"
    );
    srv.shut_down(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn at_the_cap_the_oldest_idle_connection_makes_room() {
    let n = 4;
    let mut srv = Server::start(
        opts(Duration::from_secs(60), n, Duration::from_secs(1)),
        |_, _| {},
    )
    .await;
    let mut half_open = Vec::new();
    for _ in 0..n {
        let mut s = srv.connect().await;
        s.write_all(b"GET /heal").await.unwrap();
        half_open.push(s);
        // Accepted in this order, so the first is the oldest.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for round in 0..3 {
        if round > 0 {
            // Refill to the cap (the last request's connection has closed).
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut s = srv.connect().await;
            s.write_all(b"GET /heal").await.unwrap();
            half_open.push(s);
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let t = Instant::now();
        let answer = request(srv.addr, "GET /healthz HTTP/1.1", Duration::from_secs(3)).await;
        let took = t.elapsed();
        let answer = answer
            .unwrap_or_else(|| panic!("round {round}: no answer with {n} half-open connections"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            took < Duration::from_secs(1),
            "round {round}: took {took:?}"
        );
        eprintln!("round {round}: answered in {took:?} with {n} half-open connections held");
        // The oldest half-open ones went, oldest first; the rest stay.
        for (i, s) in half_open.iter_mut().enumerate() {
            let closed = is_closed(s).await;
            assert_eq!(
                closed,
                i <= round,
                "round {round}: half-open #{i} closed = {closed}"
            );
        }
    }
    srv.shut_down(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn at_the_cap_with_every_connection_busy_the_new_one_is_refused() {
    let mut srv = Server::start(
        opts(Duration::from_secs(60), 2, Duration::from_secs(3)),
        |_, _| {},
    )
    .await;
    *srv.fake.delay.lock().unwrap() = Duration::from_millis(1500);
    let addr = srv.addr;
    let slow = |_| {
        tokio::spawn(async move {
            let head = format!("GET /api/v1/sessions HTTP/1.1\r\nAuthorization: Bearer {TOKEN}");
            request(addr, &head, Duration::from_secs(5)).await
        })
    };
    let busy: Vec<_> = (0..2).map(slow).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Both slots run a request: nothing is idle, so the newcomer goes.
    let t = Instant::now();
    let refused = request(addr, "GET /healthz HTTP/1.1", Duration::from_secs(3)).await;
    assert_eq!(refused, None, "a busy connection was evicted");
    assert!(t.elapsed() < Duration::from_secs(1));
    for b in busy {
        let answer = b.await.unwrap().expect("the busy request was cut off");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // Their slots are free again.
    let answer = request(addr, "GET /healthz HTTP/1.1", Duration::from_secs(3)).await;
    assert!(answer.unwrap().starts_with("HTTP/1.1 200"));
    srv.shut_down(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_ends_within_the_grace_despite_stalled_clients() {
    let grace = Duration::from_millis(600);
    let mut srv = Server::start(opts(Duration::from_secs(60), 64, grace), |cfg, dir| {
        cfg.api_timeout = Duration::from_secs(120);
        with_big_segment(dir);
    })
    .await;
    *srv.fake.delay.lock().unwrap() = Duration::from_secs(3600);

    // An in-flight request whose handler never finishes.
    let mut in_flight = srv.connect().await;
    let head = format!(
        "GET /api/v1/sessions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    // A response the client never reads.
    let mut stalled = srv.connect().await;
    stalled
        .write_all(b"GET /vod/s1/video/big.m4s HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    // And a half-open one.
    let mut half = srv.connect().await;
    half.write_all(b"GET /").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let took = srv.shut_down(grace + Duration::from_secs(3)).await;
    eprintln!("serve returned {took:?} after shutdown (grace {grace:?}) with stalled clients");
    assert!(
        took >= grace - Duration::from_millis(50),
        "stalled clients were not given the grace: {took:?}"
    );
    assert!(took < grace + Duration::from_millis(500), "took {took:?}");
    // Every one of them is closed, and nothing listens any more.
    for s in [&mut in_flight, &mut half] {
        assert!(read_until_closed(s, Duration::from_secs(1)).await.is_some());
    }
    assert!(read_until_closed(&mut stalled, Duration::from_secs(5))
        .await
        .is_some());
    assert!(
        TcpStream::connect(srv.addr).await.is_err(),
        "still accepting"
    );
}

/// The events stream never ends by itself: when the shutdown begins it
/// ends (the client reconnects with Last-Event-ID), so the shutdown does
/// not wait out its grace for it.
#[tokio::test]
async fn shutdown_ends_an_events_stream_at_once() {
    let grace = Duration::from_secs(5);
    let fake = Fake::with_events();
    let mut srv =
        Server::start_with(fake, opts(Duration::from_secs(60), 64, grace), |_, _| {}).await;
    let mut sse = srv.connect().await;
    let head =
        format!("GET /api/v1/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    sse.write_all(head.as_bytes()).await.unwrap();
    // The stream is open and delivers: an event sent now arrives.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let bus = srv.fake.bus.as_ref().unwrap();
    while !String::from_utf8_lossy(&seen).contains("event: alarm") {
        bus.send("alarm", serde_json::json!({"kind": "disk_low"}));
        match tokio::time::timeout_at(deadline, sse.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            other => panic!("no event: {other:?}, {}", String::from_utf8_lossy(&seen)),
        }
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    let took = srv.shut_down(grace + Duration::from_secs(3)).await;
    eprintln!("serve returned {took:?} after shutdown with an events stream open");
    assert!(
        took < Duration::from_secs(1),
        "the stream held the shutdown: {took:?}"
    );
    // The body ends properly (the last chunk), then the connection closes.
    let rest = read_until_closed(&mut sse, Duration::from_secs(2))
        .await
        .expect("the connection stayed open");
    seen.extend_from_slice(&rest);
    assert!(
        String::from_utf8_lossy(&seen).ends_with("0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn shutdown_lets_a_request_finish_within_the_grace() {
    let grace = Duration::from_secs(5);
    let mut srv = Server::start(opts(Duration::from_secs(60), 64, grace), |_, _| {}).await;
    *srv.fake.delay.lock().unwrap() = Duration::from_millis(400);
    let addr = srv.addr;
    let pending = tokio::spawn(async move {
        let head = format!("GET /api/v1/sessions HTTP/1.1\r\nAuthorization: Bearer {TOKEN}");
        request(addr, &head, Duration::from_secs(5)).await
    });
    // An idle keep-alive connection must not hold the shutdown either.
    let mut idle = srv.connect().await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;

    let took = srv.shut_down(grace).await;
    let answer = pending
        .await
        .unwrap()
        .expect("the in-flight request was cut off");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    eprintln!("graceful shutdown with a 400 ms request in flight: {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "waited for more than the request: {took:?}"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_and_its_slot_freed() {
    let stall = Duration::from_millis(500);
    let mut o = opts(Duration::from_secs(60), 1, Duration::from_secs(1));
    o.write_stall_timeout = stall;
    let mut srv = Server::start(o, |_, dir| with_big_segment(dir)).await;
    let mut reader = srv.connect().await;
    reader
        .write_all(b"GET /vod/s1/video/big.m4s HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    // Read a little, then stop: the server's writes stall.
    let mut first = [0u8; 1024];
    reader.read_exact(&mut first).await.unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"));
    let t = Instant::now();
    // The only slot is busy: a newcomer is refused while the stall lasts…
    let refused = request(srv.addr, "GET /healthz HTTP/1.1", Duration::from_secs(1)).await;
    assert_eq!(refused, None, "admitted while the only slot was busy");
    // …and admitted once the stalled connection has been closed.
    let mut answered = None;
    while t.elapsed() < stall + Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(a) = request(srv.addr, "GET /healthz HTTP/1.1", Duration::from_secs(1)).await {
            answered = Some((a, t.elapsed()));
            break;
        }
    }
    let (answer, after) = answered.expect("the stalled connection was never closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    eprintln!("stalled reader closed, slot free again after {after:?} (stall limit {stall:?})");
    // The reader sees the end of a truncated response.
    let rest = read_until_closed(&mut reader, Duration::from_secs(5)).await;
    let rest = rest.expect("the stalled connection is still open");
    assert!(rest.len() < 32 << 20, "the whole segment arrived");
    srv.shut_down(Duration::from_secs(3)).await;
}

type Ws = tungstenite::WebSocket<std::net::TcpStream>;

/// A blocking WebSocket client on the meters route.
fn ws_connect(
    addr: SocketAddr,
    protocols: Option<&str>,
    auth: Option<&str>,
) -> (Ws, Option<String>) {
    use tungstenite::client::IntoClientRequest;
    let url = format!("ws://{addr}/api/v1/sessions/s1/meters");
    let mut req = url.into_client_request().unwrap();
    if let Some(p) = protocols {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().unwrap());
    }
    if let Some(a) = auth {
        req.headers_mut()
            .insert("authorization", a.parse().unwrap());
    }
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (ws, res) = tungstenite::client(req, stream).expect("WebSocket handshake");
    let protocol = res
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string());
    (ws, protocol)
}

fn next_frame(ws: &mut Ws) -> serde_json::Value {
    loop {
        match ws.read().expect("meters message") {
            tungstenite::Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meters_websocket_upgrades_through_serve_and_outlives_the_api_timeout() {
    let mut srv = Server::start(
        opts(Duration::from_millis(300), 8, Duration::from_secs(5)),
        |cfg, _| cfg.api_timeout = Duration::from_millis(200),
    )
    .await;
    let addr = srv.addr;
    let client = tokio::task::spawn_blocking(move || {
        let offer = format!("studiocast.bearer, {TOKEN}");
        let (mut ws, protocol) = ws_connect(addr, Some(&offer), None);
        assert_eq!(protocol.as_deref(), Some("studiocast.bearer"));
        // Readings for well past the API timeout and the header timeout.
        let t = Instant::now();
        let mut seqs = Vec::new();
        while t.elapsed() < Duration::from_millis(900) {
            let frame = next_frame(&mut ws);
            assert_eq!(frame["channels"][0]["name"], "in 1");
            seqs.push(frame["seq"].as_u64().unwrap());
        }
        assert!(seqs.len() >= 5, "only {} readings", seqs.len());
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        let header = format!("Bearer {TOKEN}");
        let (mut ws2, protocol) = ws_connect(addr, None, Some(&header));
        assert_eq!(protocol, None);
        next_frame(&mut ws2);
        (ws, ws2)
    });
    let (ws, ws2) = tokio::time::timeout(Duration::from_secs(10), client)
        .await
        .expect("WebSocket client timed out")
        .unwrap();

    // Shutdown closes WebSockets at once rather than waiting for the grace.
    let took = srv.shut_down(Duration::from_secs(3)).await;
    eprintln!("shutdown with two meters WebSockets open: {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let closed = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        for mut ws in [ws, ws2] {
            while ws.read().is_ok() {}
        }
        t.elapsed()
    });
    let closed_in = tokio::time::timeout(Duration::from_secs(6), closed)
        .await
        .unwrap()
        .unwrap();
    assert!(
        closed_in < Duration::from_secs(2),
        "sockets closed after {closed_in:?}"
    );
}
