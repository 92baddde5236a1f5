//! Alarm webhooks (`[server] alarm_webhooks`): every alarm a session raises
//! or clears, POSTed to each URL, signed as the job webhooks are (the same
//! `X-Studiocast-Signature` with `[jobs] webhook_secret`, see
//! [`crate::jobs::webhooks`]), so a receiver checks both alike. The body:
//! `{"id": "evt-…", "type": "alarm.raised" | "alarm.cleared", "created":
//! "…", "session": "…", "seq": 41, "kind": "signal", "alarm": "…"}` (`seq`
//! is the event stream's id, increasing: deliveries may arrive out of
//! order, it orders them; `kind` is
//! stable: signal, audio, drift, encoder, queue, disk, recording, store,
//! sidecar, hls, teardown;
//! `alarm` is the text, which may carry a live figure).
//!
//! An alarm is about now: deliveries are kept in memory, not in the job
//! outbox, and retried with backoff (1 s doubling to a minute) for up to
//! [`GIVE_UP`]; a restart forgets the undelivered ones. At most
//! [`MAX_PENDING`] wait at once: past that the newest are dropped with a
//! warning, so a receiver that is down cannot grow the daemon's memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::http::Method;
use studiocast_server::events::{Event, EventBus};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::http_client::{Body, Client};
use crate::jobs::webhooks::signature;

/// A delivery not answered 2xx within this is given up.
pub const GIVE_UP: Duration = Duration::from_secs(3600);
/// Deliveries waiting at once, all URLs together.
pub const MAX_PENDING: usize = 256;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Deliver the bus's alarm events to `urls` until `stop`.
pub fn spawn(bus: &EventBus, urls: Vec<String>, secret: Vec<u8>, stop: CancellationToken) {
    if urls.is_empty() {
        return;
    }
    let mut rx = bus.subscribe();
    let (client, secret) = (Client::new(), Arc::new(secret));
    let pending = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let e = tokio::select! {
                r = rx.recv() => r,
                () = stop.cancelled() => return,
            };
            let e = match e {
                Ok(e) if e.kind == "alarm" => e,
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "alarm webhooks fell behind the events");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let body = Arc::new(body(&e));
            for url in &urls {
                if pending.load(Ordering::Relaxed) >= MAX_PENDING {
                    tracing::warn!(%url, "alarm webhook dropped: {MAX_PENDING} deliveries already wait");
                    continue;
                }
                pending.fetch_add(1, Ordering::Relaxed);
                let (client, secret, body, url, pending, stop) = (
                    client.clone(),
                    secret.clone(),
                    body.clone(),
                    url.clone(),
                    pending.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    tokio::select! {
                        () = deliver(&client, &secret, &url, &body) => {}
                        () = stop.cancelled() => {}
                    }
                    pending.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }
    });
}

fn body(e: &Event) -> (String, String, Vec<u8>) {
    let raised = e.data["raised"].as_bool().unwrap_or(true);
    let kind = if raised {
        "alarm.raised"
    } else {
        "alarm.cleared"
    };
    let mut rnd = [0u8; 6];
    let _ = getrandom::fill(&mut rnd);
    let id = format!(
        "evt-alarm-{}-{}",
        e.seq,
        rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let json = serde_json::json!({
        "id": id,
        "type": kind,
        "created": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "session": e.data["session"],
        // The event stream's id: webhooks are sent one task each and may
        // arrive out of order; this orders them.
        "seq": e.seq,
        "kind": e.data["kind"],
        "alarm": e.data["alarm"],
    });
    (
        kind.to_string(),
        id,
        serde_json::to_vec(&json).unwrap_or_default(),
    )
}

async fn deliver(client: &Client, secret: &[u8], url: &str, body: &(String, String, Vec<u8>)) {
    let (kind, id, bytes) = body;
    let start = tokio::time::Instant::now();
    let mut wait = Duration::from_secs(1);
    loop {
        let t = chrono::Utc::now().timestamp();
        let sig = signature(secret, t, bytes);
        let headers = [
            ("content-type", "application/json"),
            ("x-studiocast-event", kind.as_str()),
            ("x-studiocast-event-id", id.as_str()),
            ("x-studiocast-signature", sig.as_str()),
        ];
        let sent = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            client.send(Method::POST, url, &headers, Body::Bytes(bytes.clone())),
        )
        .await;
        let why = match sent {
            Ok(Ok(a)) if (200..300).contains(&a.status) => {
                tracing::info!(%url, event = %id, "alarm webhook delivered");
                return;
            }
            Ok(Ok(a)) => format!("HTTP {}", a.status),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer in {} s", ATTEMPT_TIMEOUT.as_secs()),
        };
        if start.elapsed() + wait > GIVE_UP {
            tracing::error!(%url, event = %id, error = %why, "alarm webhook given up");
            return;
        }
        tracing::warn!(%url, event = %id, error = %why, retry_in_s = wait.as_secs(), "alarm webhook not delivered");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}
