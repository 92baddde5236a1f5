//! The accept loop: a connection cap with eviction of idle connections,
//! optional TLS with HTTP/2 (see [`crate::connection`]), a header read
//! timeout, and a shutdown that ends within a bounded time.
//!
//! Why not `axum::serve`: it has no header timeout and no cap, so clients
//! that never finish their headers pile up until the daemon runs out of
//! file descriptors (and live sessions can no longer open their segment
//! files), and its graceful shutdown waits for every connection forever.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection::{connection, Shared};
use crate::conns::{Registry, Tracked};
use crate::tls::TlsConfig;

/// See [`ServeOptions::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The cap [`ServeOptions::default`] asks [`connection_budget`] for.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// See [`ServeOptions::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// See [`ServeOptions::write_stall_timeout`].
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Descriptors kept for sessions (segment files, pipes, devices, the store)
/// and transcoding jobs (the queue's database, a job's child process and
/// its pipes) when the connection cap is derived from the descriptor
/// limit. 256 left a demo session and the job queue at 913–1024 of 1024
/// under a thousand half-open connections; 320 reached 1024 again once the
/// demo session gained its ambisonic (Opus) rendition.
pub const FD_RESERVE: u64 = 448;
/// The descriptor limit never pushes the connection cap below this.
pub const MIN_CONNECTIONS: usize = 16;

/// Pause after an accept error such as `EMFILE`: the pending connection
/// stays in the backlog, and retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How [`serve`] treats connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A connection that has not sent complete request headers this long
    /// after it opened (or after its previous response) is closed. This
    /// also bounds how long a keep-alive connection may sit idle, and with
    /// TLS, the handshake (then the headers get as long again). An HTTP/2
    /// connection is closed once no stream has run for this long.
    pub header_read_timeout: Duration,
    /// Open connections at most, WebSockets included. A new connection at
    /// the cap closes the oldest idle one (half-open or kept alive between
    /// requests); when none is idle, the new one is closed instead.
    pub max_connections: usize,
    /// After the shutdown future resolves: how long connections may take
    /// to finish their current request before they are closed.
    pub shutdown_grace: Duration,
    /// A connection whose writes make no progress this long (the client
    /// stopped reading a response or a WebSocket) is closed. Without it a
    /// client could keep connections busy, and so safe from eviction, by
    /// requesting segments and never reading them.
    pub write_stall_timeout: Duration,
    /// Serve HTTPS with this certificate ([`crate::load_tls`]): HTTP/2 when
    /// the client's ALPN offers `h2`, else HTTP/1.1 (WebSockets need it).
    /// `None` (the default): plain HTTP/1.1.
    pub tls: Option<TlsConfig>,
}

impl Default for ServeOptions {
    /// The defaults above; the cap from [`connection_budget`], so call
    /// [`raise_fd_limit`] before this.
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: connection_budget(DEFAULT_MAX_CONNECTIONS),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
            tls: None,
        }
    }
}

/// `configured` capped by the process's descriptor soft limit less
/// [`FD_RESERVE`], so that connections alone can never take the
/// descriptors a live session needs; the limit never takes the cap below
/// [`MIN_CONNECTIONS`] (a smaller `configured` is kept), nor below 1.
pub fn connection_budget(configured: usize) -> usize {
    budget(configured, getrlimit(Resource::Nofile).current)
}

fn budget(configured: usize, soft_limit: Option<u64>) -> usize {
    let by_fds = match soft_limit {
        // `None` is RLIM_INFINITY.
        None => usize::MAX,
        Some(n) => usize::try_from(n.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX),
    };
    configured.min(by_fds.max(MIN_CONNECTIONS)).max(1)
}

/// Raises the descriptor soft limit to the hard limit and returns the new
/// soft limit (`u64::MAX` for unlimited). Call it once at start, before
/// [`connection_budget`]: the default soft limit (often 1024) is far below
/// what a busy origin with live sessions needs.
pub fn raise_fd_limit() -> io::Result<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

/// The listen backlog [`bind`] asks for (the kernel caps it at
/// `net.core.somaxconn`, 4096 on current Linux).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener like `TcpListener::bind`, with a deeper accept queue.
///
/// Why: tokio's `bind` (mio 1.2) listens with a backlog of 128, as the
/// standard library does. When a thousand
/// clients reconnect at once (a slowloris wave cut by the header timeout,
/// or viewers after a network blip) the queue overflows, the kernel drops
/// SYNs, and every client behind them, health checks included, waits out
/// the one-second SYN retransmit before it is even accepted.
pub async fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        match listen_on(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As tokio's own bind does: a restarted daemon can listen again at once
    // while the old one's connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, lets connections finish their current request for at most
/// `opts.shutdown_grace`, closes the rest and returns. WebSockets are
/// closed when shutdown begins. Errors only if the listener itself is
/// broken; per-connection and resource errors are logged and survived.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    let shared = Arc::new(Shared {
        app,
        http1,
        header_timeout: opts.header_read_timeout,
        write_stall: opts.write_stall_timeout,
        tls: opts.tls.clone(),
        streams: TaskTracker::new(),
        graceful: CancellationToken::new(),
    });
    let registry = Registry::new(opts.max_connections);
    let mut tasks = JoinSet::new();
    let mut refusals = Refusals::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                reap(done);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(slot) = registry.admit() else {
                    refusals.note(peer);
                    continue;
                };
                // Small responses (playlists, JSON) should not wait for Nagle.
                let _ = stream.set_nodelay(true);
                let io = Tracked::new(stream, slot, opts.write_stall_timeout);
                tasks.spawn(connection(io, shared.clone(), peer.ip()));
            }
            Err(e) if is_fatal(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying shortly");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    drop(listener);
    drain(tasks, &registry, &shared, opts.shutdown_grace).await;
    Ok(())
}

/// Logs refused connections at most every [`REFUSAL_LOG_INTERVAL`]: under
/// a flood, one line per refusal would drown the log.
#[derive(Default)]
struct Refusals {
    last_logged: Option<Instant>,
    unlogged: u64,
}

const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Refusals {
    fn note(&mut self, peer: SocketAddr) {
        self.unlogged += 1;
        if self
            .last_logged
            .is_some_and(|t| t.elapsed() < REFUSAL_LOG_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            %peer,
            refused = self.unlogged,
            "connections refused: every connection is busy (max_connections reached)"
        );
        self.last_logged = Some(Instant::now());
        self.unlogged = 0;
    }
}

/// Errors that mean the listener is unusable, rather than one connection
/// failing or descriptors running short for a moment.
fn is_fatal(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let fatal = [Errno::BADF, Errno::INVAL, Errno::NOTSOCK, Errno::OPNOTSUPP];
    e.raw_os_error()
        .is_some_and(|n| fatal.iter().any(|f| f.raw_os_error() == n))
}

fn reap(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "a connection task panicked");
        }
    }
}

/// Graceful first (each connection finishes its request, idle ones close at
/// once), forced after `grace`. HTTP/2 stream tasks are waited for too:
/// they run beside their connection's task, not inside it.
async fn drain(mut tasks: JoinSet<()>, registry: &Registry, shared: &Shared, grace: Duration) {
    shared.graceful.cancel();
    registry.close_upgraded();
    shared.streams.close();
    let all_done = async {
        while let Some(done) = tasks.join_next().await {
            reap(done);
        }
        shared.streams.wait().await;
    };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        tracing::warn!(
            open = registry.len(),
            ?grace,
            "shutdown grace over: closing the remaining connections"
        );
        registry.close_all();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        // Each stream task ends as soon as it learns that its connection
        // is gone; the bound only guards against a future that never yields.
        let _ = tokio::time::timeout(STREAMS_AFTER_CLOSE, shared.streams.wait()).await;
    }
}

/// See [`drain`].
const STREAMS_AFTER_CLOSE: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_caps_by_the_descriptor_limit() {
        assert_eq!(budget(1024, Some(20_000)), 1024);
        assert_eq!(budget(1024, Some(1024)), 1024 - FD_RESERVE as usize);
        assert_eq!(budget(1024, None), 1024);
        // A tiny limit never takes the cap below the floor…
        assert_eq!(budget(1024, Some(100)), MIN_CONNECTIONS);
        assert_eq!(budget(1024, Some(0)), MIN_CONNECTIONS);
        // …but a smaller configured cap is kept, and 0 means 1.
        assert_eq!(budget(4, Some(100)), 4);
        assert_eq!(budget(0, Some(20_000)), 1);
    }

    #[test]
    fn connection_budget_reads_the_real_limit() {
        let soft = getrlimit(Resource::Nofile).current;
        assert_eq!(connection_budget(usize::MAX), budget(usize::MAX, soft));
        if let Some(soft) = soft {
            assert!(connection_budget(usize::MAX) as u64 <= soft.max(MIN_CONNECTIONS as u64));
        }
    }

    #[test]
    fn raise_fd_limit_reaches_the_hard_limit() {
        let before = getrlimit(Resource::Nofile);
        let Some(hard) = before.maximum else {
            return; // unlimited hard limit: nothing to raise to
        };
        // Lower the soft limit first (always allowed) so there is something
        // to raise even where soft already equals hard.
        let lowered = hard.min(before.current.unwrap_or(hard)).min(512);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(lowered),
                maximum: Some(hard),
            },
        )
        .unwrap();
        assert_eq!(raise_fd_limit().unwrap(), hard);
        assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
    }

    #[test]
    fn accept_errors_are_survived_unless_the_listener_is_broken() {
        use rustix::io::Errno;
        let err = |e: Errno| io::Error::from_raw_os_error(e.raw_os_error());
        assert!(!is_fatal(&err(Errno::MFILE)));
        assert!(!is_fatal(&err(Errno::NFILE)));
        assert!(!is_fatal(&err(Errno::CONNABORTED)));
        assert!(is_fatal(&err(Errno::BADF)));
        assert!(is_fatal(&err(Errno::INVAL)));
    }
}
