//! `GET /api/v1/events` (scope `read`): Server-Sent Events of session,
//! job and alarm changes, for the console and for systems that react to
//! them (the Campus lists a lesson once its session is live). Each event
//! has a type (`session`, `alarm`, `job`), an id that increases over the
//! daemon's life, and a JSON body. The daemon publishes them on a bounded
//! broadcast channel: a client that reads too slowly misses events (it is
//! told so with a `lagged` event saying how many) and never holds the
//! publisher back; a keep-alive comment every 15 s keeps proxies from
//! closing a quiet stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::api::ApiError;
use crate::AppState;

/// Events kept for slow readers; past this a reader lags.
pub const CAPACITY: usize = 1024;

/// One change.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    /// Increasing over the daemon's life.
    pub seq: u64,
    /// `session`, `alarm` or `job`.
    pub kind: String,
    pub data: serde_json::Value,
}

/// The publishing side, shared by the daemon's actors.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    seq: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(CAPACITY).0,
            seq: Default::default(),
        }
    }
}

impl EventBus {
    /// Publish (nobody listening is not an error).
    pub fn send(&self, kind: &str, data: serde_json::Value) {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let _ = self.tx.send(Event {
            seq,
            kind: kind.to_string(),
            data,
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// `GET /api/v1/events`.
pub async fn stream(State(st): State<AppState>) -> Result<Response, ApiError> {
    let bus =
        st.0.control
            .events()
            .ok_or_else(|| ApiError::Unavailable("this daemon publishes no events".into()))?;
    let rx = bus.subscribe();
    Ok(Sse::new(events(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn events(rx: broadcast::Receiver<Event>) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        let e = match rx.recv().await {
            Ok(e) => SseEvent::default()
                .event(e.kind.clone())
                .id(e.seq.to_string())
                .data(serde_json::to_string(&e.data).unwrap_or_default()),
            Err(broadcast::error::RecvError::Lagged(n)) => SseEvent::default()
                .event("lagged")
                .data(format!("{{\"missed\":{n}}}")),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(e), rx))
    })
}
