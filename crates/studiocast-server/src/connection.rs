//! One accepted connection, from the TLS handshake (when configured) to
//! close: HTTP/1.1 with hyper's header timeout and upgrades, or HTTP/2
//! when ALPN says `h2`, with an idle timeout of our own.
//!
//! Every guarantee of [`crate::serve`] holds for both protocols and with or
//! without TLS: the handshake and the request headers are bounded by the
//! header timeout, an idle connection can be evicted (a handshake in
//! progress counts as idle), writes that make no progress fail (the stall
//! timer sits in [`Tracked`], below TLS), and the shutdown's forced end
//! closes everything, HTTP/2 streams included.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::conns::{Busy, ConnState, Tracked};
use crate::tls::TlsConfig;

/// Streams one HTTP/2 connection may run at once (hyper's default, said
/// here so that the limit is visible): blocking playlist reloads of every
/// rendition and the parts a player fetches in parallel fit many times.
const MAX_STREAMS: u32 = 200;

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) app: Router,
    pub(crate) http1: http1::Builder,
    pub(crate) header_timeout: Duration,
    /// See [`crate::ServeOptions::write_stall_timeout`]; HTTP/2 applies it
    /// to response progress too ([`stalled`]).
    pub(crate) write_stall: Duration,
    pub(crate) tls: Option<TlsConfig>,
    /// Where HTTP/2 stream tasks run, so that the shutdown can wait for
    /// them: hyper spawns them, they are not the connection task's own.
    pub(crate) streams: TaskTracker,
    /// Cancelled when the shutdown begins.
    pub(crate) graceful: CancellationToken,
}

/// Cancelled when the server's shutdown begins, in every request's
/// extensions: a response that never ends by itself (the events stream)
/// ends then, so that the graceful shutdown need not wait out its grace.
#[derive(Clone)]
pub(crate) struct Draining(pub(crate) CancellationToken);

/// One connection, from accept to close.
pub(crate) async fn connection(io: Tracked, shared: Arc<Shared>, peer: std::net::IpAddr) {
    let state = io.state().clone();
    let Some(tls) = &shared.tls else {
        return serve_http1(io, &shared, state, peer).await;
    };
    // The handshake gets the header timeout: a client that opens TLS and
    // never finishes it is a slowloris one layer down.
    let accepted = tokio::select! {
        r = tokio::time::timeout(shared.header_timeout, tls.acceptor().accept(io)) => r,
        () = state.close.cancelled() => return,
        () = shared.graceful.cancelled() => return,
    };
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake not finished within the header timeout");
            return;
        }
    };
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        serve_http2(stream, &shared, state, peer).await;
    } else {
        serve_http1(stream, &shared, state, peer).await;
    }
}

async fn serve_http1<I>(io: I, shared: &Shared, state: Arc<ConnState>, peer: std::net::IpAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = shared.app.clone();
    let svc_state = state.clone();
    let draining = Draining(shared.graceful.clone());
    let svc =
        service_fn(move |req| handle(app.clone(), svc_state.clone(), peer, draining.clone(), req));
    // Upgrades on, or the meters WebSocket could never be answered.
    let conn = shared
        .http1
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    // Dropping the connection future closes the socket: that is how both
    // eviction and the end of the shutdown grace close it.
    tokio::select! {
        done = conn.as_mut() => return finished(done),
        () = state.close.cancelled() => return,
        () = shared.graceful.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    tokio::select! {
        done = conn.as_mut() => finished(done),
        () = state.close.cancelled() => {}
    }
}

async fn serve_http2<I>(io: I, shared: &Shared, state: Arc<ConnState>, peer: std::net::IpAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = shared.app.clone();
    let svc_state = state.clone();
    let draining = Draining(shared.graceful.clone());
    let svc =
        service_fn(move |req| handle(app.clone(), svc_state.clone(), peer, draining.clone(), req));
    let exec = StreamExec(shared.streams.clone());
    let limit = shared.header_timeout;
    let conn = http2::Builder::new(exec)
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        // Pings find a peer that vanished while a stream is open.
        .keep_alive_interval(limit)
        .keep_alive_timeout(limit)
        .serve_connection(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => finished(done),
        () = state.close.cancelled() => {}
        // HTTP/2 has no header timeout: an idle connection (no stream
        // running, preface never sent included) is closed after as long.
        () = idle_expired(&state, limit) => {}
        () = stalled(&state, shared.write_stall) => {}
        () = shared.graceful.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                done = conn.as_mut() => finished(done),
                () = state.close.cancelled() => {}
            }
        }
    }
    // Dropping the connection here ends its streams too: h2 tells every
    // stream that its connection is gone, and hyper drops the handler.
}

/// Resolves once the connection has been idle for `limit` and is claimed
/// for closing (a request starting at that instant wins instead). While
/// it is busy this wakes once per `limit` to look again: a timer per
/// connection, not per request, and nothing at all while it is idle.
async fn idle_expired(state: &ConnState, limit: Duration) {
    loop {
        let wait = match state.idle_for() {
            Some(idle) if idle >= limit => {
                if state.try_evict() {
                    tracing::debug!(?limit, "closing an idle HTTP/2 connection");
                    return;
                }
                limit
            }
            Some(idle) => limit - idle,
            None => limit,
        };
        tokio::time::sleep(wait).await;
    }
}

/// Resolves once requests have run for `limit` with no response making
/// progress: a peer that keeps every stream's flow-control window shut
/// (and answers pings) would otherwise hold its streams, and the
/// connection, forever. Wakes once per `limit / 2` while busy.
async fn stalled(state: &ConnState, limit: Duration) {
    loop {
        let wait = match state.stalled_for() {
            Some(s) if s >= limit => {
                tracing::debug!(
                    ?limit,
                    "closing an HTTP/2 connection whose responses stalled"
                );
                return;
            }
            Some(s) => (limit - s).max(Duration::from_millis(100)),
            None => limit / 2,
        };
        tokio::time::sleep(wait).await;
    }
}

/// Runs hyper's HTTP/2 stream tasks in the server's tracker, so that the
/// shutdown can wait for them.
#[derive(Clone)]
struct StreamExec(TaskTracker);

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(fut);
    }
}

fn finished(done: Result<(), hyper::Error>) {
    if let Err(e) = done {
        // Timeouts and resets are what clients do; not worth a warning.
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Runs one request through the router, keeping the connection busy (not
/// evictable) until hyper has sent the whole response body.
async fn handle(
    app: Router,
    state: Arc<ConnState>,
    peer: std::net::IpAddr,
    draining: Draining,
    mut req: Request<Incoming>,
) -> Result<Response, Infallible> {
    // Who asked, for the viewer count of `/metrics`.
    req.extensions_mut().insert(crate::metrics::Peer(peer));
    req.extensions_mut().insert(draining);
    let Some(busy) = Busy::enter(&state) else {
        // Evicted an instant ago; the socket closes right after this.
        return Ok(StatusCode::SERVICE_UNAVAILABLE.into_response());
    };
    let res = app.oneshot(req).await?;
    if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        state.mark_upgraded();
    }
    // hyper drops the body once its last frame is written (or the
    // connection fails); `busy` goes with it.
    Ok(res.map(move |body| {
        Body::new(body.map_frame(move |frame| {
            busy.progressed();
            frame
        }))
    }))
}
