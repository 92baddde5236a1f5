//! A server on 127.0.0.1:0 and a minimal HTTP/1.1 client, for the tests
//! that need real sockets.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use studiocast_server::{router, serve, ServeOptions, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Fake, TempDir};

pub struct Server {
    pub addr: SocketAddr,
    pub fake: Arc<Fake>,
    pub dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Server {
    pub async fn start(opts: ServeOptions, tweak: impl FnOnce(&mut ServerConfig)) -> Server {
        let dir = TempDir::new("net");
        let fake = Fake::new();
        let mut cfg = super::config(dir.path());
        tweak(&mut cfg);
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
            fake,
            dir,
            stop: Some(stop),
            task,
        }
    }

    /// Fires the shutdown future and says how long `serve` took to return.
    pub async fn shut_down(&mut self, limit: Duration) -> Duration {
        let t = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(limit, &mut self.task)
            .await
            .unwrap_or_else(|_| panic!("serve did not return within {limit:?}"))
            .unwrap()
            .unwrap();
        t.elapsed()
    }
}

pub fn opts(header_read_timeout: Duration, max_connections: usize) -> ServeOptions {
    ServeOptions {
        header_read_timeout,
        max_connections,
        shutdown_grace: Duration::from_secs(2),
        write_stall_timeout: Duration::from_secs(60),
        tls: None,
    }
}

/// One parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The head as text, status line included, lower-cased names kept as
    /// sent (hyper sends lower case).
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends a GET on a kept-alive connection.
pub async fn send_get<S: AsyncWrite + Unpin>(s: &mut S, path: &str) -> io::Result<()> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    s.write_all(req.as_bytes()).await
}

/// Reads one response with a `Content-Length` body (all ours have one).
pub async fn read_reply<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<Reply> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line: {head}")))?;
    let mut reply = Reply {
        status,
        head,
        body: buf[head_end..].to_vec(),
    };
    let len: usize = reply
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("no content-length"))?;
    while reply.body.len() < len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        reply.body.extend_from_slice(&chunk[..n]);
    }
    Ok(reply)
}

/// Reads until the server closes; `None` if it is still open at `limit`.
pub async fn read_until_closed<S: AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Option<Vec<u8>> {
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

/// p-th percentile (0–100) of sorted durations.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let i = (sorted.len() * p / 100).min(sorted.len() - 1);
    sorted[i]
}

/// CPU time (user + system) of the whole process so far.
pub fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
