//! `GET /api/v1/events` (scope `read`): Server-Sent Events of session,
//! job and alarm changes, for the console and for systems that react to
//! them (the Campus lists a lesson once its session is live). Each event
//! has a type (`session`, `alarm`, `job`), an id that increases over the
//! daemon's life, and a JSON body. The daemon publishes them on a bounded
//! broadcast channel: a client that reads too slowly misses events (it is
//! told so with a `lagged` event saying how many) and never holds the
//! publisher back; a keep-alive comment every 15 s keeps proxies from
//! closing a quiet stream. The last [`REPLAY`] events are kept: a client
//! that reconnects with `Last-Event-ID` gets those it missed first (or a
//! `lagged` event when more went by), then the live ones, with no gap and
//! no repeat. Ids go out in order: numbering and sending happen under one
//! lock.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::api::ApiError;
use crate::AppState;

/// Events kept for slow readers; past this a reader lags.
pub const CAPACITY: usize = 1024;
/// Events kept for clients that reconnect (`Last-Event-ID`).
pub const REPLAY: usize = 256;

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
    /// The last number given, and the last [`REPLAY`] events.
    recent: Arc<Mutex<(u64, VecDeque<Event>)>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(CAPACITY).0,
            recent: Default::default(),
        }
    }
}

impl EventBus {
    /// Publish (nobody listening is not an error).
    pub fn send(&self, kind: &str, data: serde_json::Value) {
        let mut g = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let e = Event {
            seq: g.0,
            kind: kind.to_string(),
            data,
        };
        if g.1.len() == REPLAY {
            g.1.pop_front();
        }
        g.1.push_back(e.clone());
        let _ = self.tx.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// A subscription that starts after event `last`: the kept events
    /// since then, how many were not kept, and the live receiver.
    pub fn resume(&self, last: u64) -> (Vec<Event>, u64, broadcast::Receiver<Event>) {
        let g = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        let missed: Vec<Event> = g.1.iter().filter(|e| e.seq > last).cloned().collect();
        let first_kept = missed.first().map_or(g.0 + 1, |e| e.seq);
        let lost = first_kept
            .saturating_sub(last + 1)
            .min(g.0.saturating_sub(last));
        (missed, lost, rx)
    }
}

/// `GET /api/v1/events`, resuming after `Last-Event-ID` when sent.
///
/// Server-Sent Events: `session` (started, live, ended, failed), `alarm`
/// (raised or cleared, by `kind`), `job` (queued, running, progress,
/// ended), and `lagged` (`{"missed": n}`) when events went by unseen.
/// Each event's `id` is its sequence number; the last 256 are kept for a
/// client that reconnects with `Last-Event-ID`.
#[utoipa::path(get, path = "/api/v1/events", operation_id = "events", tag = "operations",
    params(("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event")),
    responses(
        (status = 200, description = "The stream; a comment every 15 s keeps it open", content_type = "text/event-stream", body = String),
        (status = 503, description = "This daemon publishes no events", body = crate::api::ErrorBody),
    ))]
pub(crate) async fn stream(
    State(st): State<AppState>,
    draining: Option<axum::Extension<crate::connection::Draining>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let bus =
        st.0.control
            .events()
            .ok_or_else(|| ApiError::Unavailable("this daemon publishes no events".into()))?;
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (replay, lost, rx) = match last {
        Some(last) => bus.resume(last),
        None => (Vec::new(), 0, bus.subscribe()),
    };
    let head = (lost > 0).then(|| lagged(lost)).into_iter();
    let head = head
        .chain(replay.iter().map(to_sse))
        .map(Ok)
        .collect::<Vec<_>>();
    // The stream ends when the server drains (a shutdown or restart): the
    // client reconnects with Last-Event-ID, and the shutdown does not wait
    // out its grace for a response that would never end. (In process,
    // without the serve loop, there is no token: it ends with the bus.)
    let end = match draining {
        Some(axum::Extension(d)) => futures_util::future::Either::Left(d.0.cancelled_owned()),
        None => futures_util::future::Either::Right(futures_util::future::pending()),
    };
    let body = futures_util::stream::iter(head)
        .chain(events(rx))
        .take_until(end);
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn to_sse(e: &Event) -> SseEvent {
    SseEvent::default()
        .event(e.kind.clone())
        .id(e.seq.to_string())
        .data(serde_json::to_string(&e.data).unwrap_or_default())
}

fn lagged(n: u64) -> SseEvent {
    SseEvent::default()
        .event("lagged")
        .data(format!("{{\"missed\":{n}}}"))
}

fn events(rx: broadcast::Receiver<Event>) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        let e = match rx.recv().await {
            Ok(e) => to_sse(&e),
            Err(broadcast::error::RecvError::Lagged(n)) => lagged(n),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(e), rx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(v: &[Event]) -> Vec<u64> {
        v.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_client_resumes_without_gap_or_repeat() {
        let bus = EventBus::default();
        for i in 0..5 {
            bus.send("job", serde_json::json!(i));
        }
        let (replay, lost, mut rx) = bus.resume(3);
        assert_eq!((seqs(&replay), lost), (vec![4, 5], 0));
        bus.send("job", serde_json::json!(5));
        assert_eq!(rx.try_recv().unwrap().seq, 6);
        assert!(rx.try_recv().is_err());
        // Up to date: nothing to replay.
        let (replay, lost, _) = bus.resume(6);
        assert!(replay.is_empty() && lost == 0);
    }

    #[test]
    fn older_than_the_kept_events_is_told_how_many_went_by() {
        let bus = EventBus::default();
        for i in 0..(REPLAY as u64 + 10) {
            bus.send("job", serde_json::json!(i));
        }
        let (replay, lost, _) = bus.resume(2);
        assert_eq!(replay.len(), REPLAY);
        assert_eq!(replay[0].seq, 11);
        assert_eq!(lost, 8, "events 3 to 10");
    }

    #[test]
    fn ids_go_out_in_order_from_many_threads() {
        let bus = EventBus::default();
        let mut rx = bus.subscribe();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..200 {
                        bus.send("job", serde_json::json!(i));
                    }
                });
            }
        });
        let mut last = 0;
        while let Ok(e) = rx.try_recv() {
            assert_eq!(e.seq, last + 1);
            last = e.seq;
        }
        assert_eq!(last, 800);
    }
}
