//! Book-keeping of open connections for [`crate::serve`]: which are open,
//! oldest first, which of them are idle, and a way to close any of them.
//!
//! A connection is *busy* from the moment hyper hands us a request until
//! hyper drops the response body (after its last byte is written), and
//! forever once upgraded to a WebSocket; with HTTP/2, while any of its
//! streams is. Otherwise it is *idle*: in its TLS handshake, waiting for
//! (the rest of) a request's headers, or kept alive between requests. Only
//! idle connections are ever evicted, so a slowloris client cannot hold a
//! slot against a real request, and eviction never cuts a response short.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// `in_flight` value of an evicted connection: no request may start on it.
const EVICTED: usize = usize::MAX;

/// Milliseconds on a process-wide monotonic clock, for idle times kept in
/// an atomic (an `Instant` cannot be).
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// What the registry and the connection's task share.
pub(crate) struct ConnState {
    /// Requests running (0 or 1 with HTTP/1, any number of streams with
    /// HTTP/2), or [`EVICTED`].
    in_flight: AtomicUsize,
    /// When `in_flight` last fell to 0 (or the connection opened), on the
    /// [`now_ms`] clock. HTTP/2 has no header timeout of its own: its
    /// connection task closes the connection when this gets too old.
    idle_since_ms: AtomicU64,
    /// When a request last started or a response body last yielded a
    /// frame, on the [`now_ms`] clock. An HTTP/2 peer that grants no flow
    /// control window makes hyper stop polling the bodies without ever
    /// attempting a write, so the write-stall timer in [`Tracked`] never
    /// starts: this is what the HTTP/2 connection task watches instead.
    progress_ms: AtomicU64,
    /// Now a WebSocket: hyper no longer serves it, and it is never idle.
    upgraded: AtomicBool,
    /// Cancelled to close the connection now (eviction, end of shutdown).
    pub(crate) close: CancellationToken,
}

impl Default for ConnState {
    fn default() -> Self {
        ConnState {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(now_ms()),
            progress_ms: AtomicU64::new(now_ms()),
            upgraded: AtomicBool::new(false),
            close: CancellationToken::new(),
        }
    }
}

impl ConnState {
    /// Claims the connection for closing if it is idle (eviction, or an
    /// HTTP/2 connection idle too long). Done with a compare-and-swap so
    /// that a request starting at the same instant either wins (and the
    /// connection stays) or sees it closed.
    pub(crate) fn try_evict(&self) -> bool {
        !self.upgraded.load(Ordering::Acquire)
            && self
                .in_flight
                .compare_exchange(0, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    pub(crate) fn mark_upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }

    /// A request started or a response body moved on.
    pub(crate) fn progressed(&self) {
        self.progress_ms.store(now_ms(), Ordering::Release);
    }

    /// How long requests have been running without any response making
    /// progress; `None` while the connection is idle or upgraded.
    pub(crate) fn stalled_for(&self) -> Option<Duration> {
        let n = self.in_flight.load(Ordering::Acquire);
        if n == 0 || n == EVICTED || self.upgraded.load(Ordering::Acquire) {
            return None;
        }
        let since = self.progress_ms.load(Ordering::Acquire);
        Some(Duration::from_millis(now_ms().saturating_sub(since)))
    }

    /// How long the connection has been idle; `None` while it is busy.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) != 0 || self.upgraded.load(Ordering::Acquire) {
            return None;
        }
        let since = self.idle_since_ms.load(Ordering::Acquire);
        Some(Duration::from_millis(now_ms().saturating_sub(since)))
    }
}

/// Held while a request runs; the connection is busy until it drops.
pub(crate) struct Busy(Arc<ConnState>);

impl Busy {
    /// The response this request is sending moved on.
    pub(crate) fn progressed(&self) {
        self.0.progressed();
    }

    /// `None` if the connection was just evicted.
    pub(crate) fn enter(state: &Arc<ConnState>) -> Option<Busy> {
        state
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                // Not `then_some(n + 1)`: that would compute EVICTED + 1.
                if n == EVICTED {
                    None
                } else {
                    Some(n + 1)
                }
            })
            .ok()
            .map(|_| {
                state.progressed();
                Busy(state.clone())
            })
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // Stamped before the count falls, so that whoever sees 0 also sees
        // a time no older than this request's end.
        self.0.idle_since_ms.store(now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct Open {
    next_id: u64,
    /// Ids grow with every admission, so the map is ordered oldest first.
    conns: BTreeMap<u64, Arc<ConnState>>,
}

/// Every open connection, WebSockets included.
pub(crate) struct Registry {
    max: usize,
    open: Mutex<Open>,
}

/// A connection's place in the registry; it leaves when this drops. It
/// lives inside the connection's socket wrapper, so an upgraded connection
/// keeps its place for as long as the WebSocket is open.
pub(crate) struct Slot {
    id: u64,
    registry: Arc<Registry>,
    pub(crate) state: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.lock().conns.remove(&self.id);
    }
}

impl Registry {
    pub(crate) fn new(max: usize) -> Arc<Registry> {
        Arc::new(Registry {
            max: max.max(1),
            open: Mutex::new(Open::default()),
        })
    }

    // A panic elsewhere while holding the lock leaves the map consistent
    // (every update is a single insert or remove), so carry on.
    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection. At the cap, the oldest idle connection
    /// is closed to make room; if every connection is busy, `None`.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.lock();
        if open.conns.len() >= self.max {
            let victim = open
                .conns
                .iter()
                .find(|(_, c)| c.try_evict())
                .map(|(id, _)| *id)?;
            if let Some(c) = open.conns.remove(&victim) {
                c.close.cancel();
            }
            tracing::debug!(victim, "evicted the oldest idle connection");
        }
        let id = open.next_id;
        open.next_id += 1;
        let state = Arc::new(ConnState::default());
        open.conns.insert(id, state.clone());
        Some(Slot {
            id,
            registry: self.clone(),
            state,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().conns.len()
    }

    /// Closes WebSockets: they have no graceful HTTP ending of their own.
    pub(crate) fn close_upgraded(&self) {
        for c in self.lock().conns.values() {
            if c.upgraded.load(Ordering::Acquire) {
                c.close.cancel();
            }
        }
    }

    pub(crate) fn close_all(&self) {
        for c in self.lock().conns.values() {
            c.close.cancel();
        }
    }
}

/// The accepted socket with its slot. Once the slot's `close` is cancelled
/// every read and write fails, which ends even an upgraded connection whose
/// task (axum's, not ours) we cannot drop. A write that makes no progress
/// for `write_stall` fails too: a client that stops reading would otherwise
/// keep its connection busy, and so beyond eviction, forever.
pub(crate) struct Tracked {
    stream: TcpStream,
    slot: Slot,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    write_stall: Duration,
    /// Running while a write is pending; reset by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Tracked {
    pub(crate) fn new(stream: TcpStream, slot: Slot, write_stall: Duration) -> Tracked {
        let closed = Box::pin(slot.state.close.clone().cancelled_owned());
        Tracked {
            stream,
            slot,
            closed,
            write_stall,
            stalled: None,
        }
    }

    pub(crate) fn state(&self) -> &Arc<ConnState> {
        &self.slot.state
    }

    /// Polling the cancellation registers the waker, so a task parked on
    /// a read is woken when the connection is closed.
    fn check_open(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.closed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed by the server",
            )),
            Poll::Pending => Ok(()),
        }
    }

    /// Wraps a write-side poll: progress resets the stall timer, a pending
    /// write starts it (and registers its waker), expiry fails the write.
    fn write_side<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        self.check_open(cx)?;
        match op(Pin::new(&mut self.stream), cx) {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.write_stall;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_open(cx)?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write_side(cx, |stream, cx| stream.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write_side(cx, |stream, cx| stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .write_side(cx, |stream, cx| stream.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_takes_the_oldest_idle_one() {
        let reg = Registry::new(3);
        let slots: Vec<Slot> = (0..3).map(|_| reg.admit().unwrap()).collect();
        let _d = reg.admit().unwrap();
        let closed: Vec<bool> = slots.iter().map(|s| s.state.close.is_cancelled()).collect();
        assert_eq!(closed, [true, false, false]);
        let _e = reg.admit().unwrap();
        let closed: Vec<bool> = slots.iter().map(|s| s.state.close.is_cancelled()).collect();
        assert_eq!(closed, [true, true, false]);
    }

    #[test]
    fn eviction_takes_the_oldest_idle_and_spares_busy_and_upgraded() {
        let reg = Registry::new(3);
        let a = reg.admit().unwrap();
        let b = reg.admit().unwrap();
        let c = reg.admit().unwrap();
        let busy_a = Busy::enter(&a.state).unwrap();
        b.state.mark_upgraded();
        // a is busy, b upgraded: c, the oldest idle one, goes.
        let d = reg.admit().unwrap();
        assert!(c.state.close.is_cancelled());
        assert!(!a.state.close.is_cancelled() && !b.state.close.is_cancelled());
        assert!(
            Busy::enter(&c.state).is_none(),
            "no request on an evicted one"
        );
        assert_eq!(reg.len(), 3);
        // Everything busy now: a new connection is refused, none closed.
        let busy_d = Busy::enter(&d.state).unwrap();
        assert!(reg.admit().is_none());
        assert!(!d.state.close.is_cancelled());
        // Once a's response is done, a is the oldest idle one.
        drop(busy_a);
        let _e = reg.admit().unwrap();
        assert!(a.state.close.is_cancelled());
        drop(busy_d);
    }

    #[test]
    fn idle_time_counts_from_the_end_of_the_last_request() {
        let reg = Registry::new(2);
        let a = reg.admit().unwrap();
        assert!(a.state.idle_for().is_some(), "idle from the start");
        let one = Busy::enter(&a.state).unwrap();
        let two = Busy::enter(&a.state).unwrap();
        assert_eq!(a.state.idle_for(), None, "busy with two streams");
        drop(one);
        assert_eq!(a.state.idle_for(), None, "still one stream");
        std::thread::sleep(Duration::from_millis(30));
        drop(two);
        let idle = a.state.idle_for().unwrap();
        assert!(idle < Duration::from_millis(20), "{idle:?}");
        a.state.mark_upgraded();
        assert_eq!(a.state.idle_for(), None, "a WebSocket is never idle");
    }

    #[test]
    fn a_dropped_slot_frees_its_place() {
        let reg = Registry::new(1);
        let a = reg.admit().unwrap();
        let busy = Busy::enter(&a.state).unwrap();
        assert!(reg.admit().is_none());
        drop(busy);
        drop(a);
        assert_eq!(reg.len(), 0);
        assert!(reg.admit().is_some());
    }
}
