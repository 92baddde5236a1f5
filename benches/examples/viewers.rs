//! N simulated viewers against an HLS origin, the way players load it.
//!
//! Each viewer opens its own HTTP/1.1 connections (one for the video
//! playlist and its media, one for the audio), reads the master playlist,
//! takes a variant (viewers are spread over the ladder) and its default
//! audio, then follows both media playlists until the run ends:
//!
//! - `--mode ll`: blocking playlist reload (`_HLS_msn`/`_HLS_part` for the
//!   part after the newest, with `_HLS_skip=YES` when the server offers
//!   delta updates), then every new part, as hls.js does in low-latency
//!   mode;
//! - `--mode poll`: plain reloads every half target duration and every new
//!   whole segment, as any player does against a plain file server;
//! - `--mode flood`: a capacity test, not a viewer: each connection fetches
//!   its rendition's playlist and two recent segments over and over, with
//!   no pause (the same URLs against any server, so two servers compare by
//!   requests per second).
//!
//! Reported: requests, errors, bytes, response times of media fetches
//! (p50/p99/max), the time from a part's publication (the first time any
//! viewer saw it listed) to each viewer's delivery of it (p50/p99), how far behind live each viewer's newest media is when it
//! has arrived (now minus the capture time at the media's end, from
//! EXT-X-PROGRAM-DATE-TIME), and with `--pid` the server's CPU (cores) and
//! peak resident memory over the run. One JSON line on stdout.
//!
//!   cargo run --release -p studiocast-bench --example viewers -- \
//!       --url http://127.0.0.1:8080/live/<id>/master.m3u8 --viewers 1000

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use studiocast_bench::hls_client::{parse_master, parse_media, Media};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The generator shares the machine with the server: the leaner it runs,
/// the less it takes from what is measured.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// The master playlist.
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 100)]
    viewers: usize,
    /// Seconds of measurement after every viewer has joined.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Viewers join over this many seconds.
    #[arg(long, default_value_t = 5)]
    ramp: u64,
    /// `ll` (blocking reload, parts) or `poll` (plain reloads, segments).
    #[arg(long, default_value = "ll")]
    mode: String,
    /// The server's processes (repeat for several), for CPU and memory.
    #[arg(long)]
    pid: Vec<u32>,
    /// A label for the JSON line.
    #[arg(long, default_value = "origin")]
    label: String,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    errors: u64,
    /// Each kind of error (a status, or what failed) and how often.
    error_kinds: std::collections::BTreeMap<String, u64>,
    bytes: u64,
    /// Media fetch times, µs.
    fetch_us: Vec<u64>,
    /// How far behind live the newest media was on arrival, ms.
    behind_ms: Vec<i64>,
    /// Earliest time any viewer saw each media URI listed.
    first_seen: std::collections::HashMap<String, Instant>,
    /// From that first sighting (about the publication) to each delivery, µs.
    delivery_us: Vec<u64>,
    /// Viewers that never got going.
    failed_viewers: u64,
}

impl Stats {
    /// Count a media fetch started at `t`; true if it succeeded.
    fn media(&mut self, r: Result<(u16, u64), String>, t: Instant) -> bool {
        self.requests += 1;
        match r {
            Ok((200, len)) => {
                self.bytes += len;
                self.fetch_us.push(t.elapsed().as_micros() as u64);
                true
            }
            other => {
                self.error(other.map(|(status, _)| status));
                false
            }
        }
    }

    fn error(&mut self, what: Result<u16, String>) {
        self.errors += 1;
        let kind = match what {
            Ok(status) => format!("HTTP {status}"),
            Err(e) => e,
        };
        *self.error_kinds.entry(kind).or_default() += 1;
    }
}

type Shared = Arc<Mutex<Stats>>;

/// One keep-alive HTTP/1.1 connection that reconnects after an error: the
/// request written in one piece, the answer read in place by its
/// `Content-Length` (which every origin measured here sends: studiocast
/// on every answer, nginx for files). hyper's client runs a connection as
/// a second task fed through a channel, two task switches a request; on a
/// machine shared with the server that overhead was measured, not the
/// server.
struct Conn {
    authority: String,
    /// Each simulated viewer names itself, as browsers differ.
    agent: String,
    /// Against a loopback server, each viewer connects from its own
    /// loopback address (all of 127/8 is local on Linux): the origin counts
    /// at most 256 viewers per address, as real viewers mostly have their
    /// own.
    source: Option<std::net::SocketAddr>,
    stream: Option<TcpStream>,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
}

/// A whole body, or only its length (media, as a player's buffer takes it).
enum Body {
    Keep(Bytes),
    Counted(u64),
}

impl Conn {
    fn new(authority: &str, viewer: usize) -> Self {
        Conn {
            authority: authority.to_string(),
            agent: format!("studiocast-viewers/1 (viewer {viewer})"),
            source: authority.starts_with("127.").then(|| {
                let v = viewer as u32 + 1;
                let ip = std::net::Ipv4Addr::new(127, 1, (v >> 8) as u8, v as u8);
                std::net::SocketAddr::from((ip, 0))
            }),
            stream: None,
            buf: Vec::with_capacity(16 << 10),
        }
    }

    async fn exchange(&mut self, path: &str, keep: bool) -> Result<(u16, Body), String> {
        let r = self.try_exchange(path, keep).await;
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    async fn try_exchange(&mut self, path: &str, keep: bool) -> Result<(u16, Body), String> {
        if self.stream.is_none() {
            let tcp = match self.source {
                Some(src) => {
                    let dst: std::net::SocketAddr = self
                        .authority
                        .parse()
                        .map_err(|e| format!("address: {e}"))?;
                    let s = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
                    s.bind(src).map_err(|e| format!("bind {src}: {e}"))?;
                    s.connect(dst).await
                }
                None => TcpStream::connect(&self.authority).await,
            }
            .map_err(|e| format!("connect: {e}"))?;
            tcp.set_nodelay(true).ok();
            self.stream = Some(tcp);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().ok_or("no connection")?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\n\r\n",
            self.authority, self.agent
        );
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > 64 << 10 {
                return Err("response head too long".into());
            }
            read_more(stream, &mut self.buf).await?;
        };
        let head = Head::parse(&self.buf[..head_end])?;
        self.buf.drain(..head_end);
        let mut body = Vec::new();
        let mut left = head.length;
        loop {
            let take = (left as usize).min(self.buf.len());
            if keep {
                body.extend_from_slice(&self.buf[..take]);
            }
            self.buf.drain(..take);
            left -= take as u64;
            if left == 0 {
                break;
            }
            read_more(stream, &mut self.buf).await?;
        }
        if head.close {
            self.stream = None;
        }
        let body = if keep {
            Body::Keep(Bytes::from(body))
        } else {
            Body::Counted(head.length)
        };
        Ok((head.status, body))
    }

    /// A playlist: the whole body.
    async fn get(&mut self, path: &str) -> Result<(u16, Bytes), String> {
        match self.exchange(path, true).await? {
            (status, Body::Keep(b)) => Ok((status, b)),
            (status, Body::Counted(_)) => Ok((status, Bytes::new())),
        }
    }

    /// Media: read to the end and count.
    async fn fetch(&mut self, path: &str) -> Result<(u16, u64), String> {
        match self.exchange(path, false).await? {
            (status, Body::Counted(n)) => Ok((status, n)),
            (status, Body::Keep(b)) => Ok((status, b.len() as u64)),
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    buf.reserve(16 << 10);
    match stream.read_buf(buf).await {
        Ok(0) => Err("connection closed".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// What the generator needs of a response head.
struct Head {
    status: u16,
    length: u64,
    close: bool,
}

impl Head {
    fn parse(head: &[u8]) -> Result<Head, String> {
        let text = std::str::from_utf8(head).map_err(|_| "head is not UTF-8")?;
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or("bad status line")?;
        let (mut length, mut close) = (None, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().ok();
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err("chunked answers are not read here".into());
            }
        }
        // A 304 or 204 has no body; anything else must say its length.
        let length = match (status, length) {
            (204 | 304, _) => 0,
            (_, Some(n)) => n,
            (_, None) => return Err("no Content-Length".into()),
        };
        Ok(Head {
            status,
            length,
            close,
        })
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `base` is a path ending in a playlist; `uri` is relative to it.
fn join(base: &str, uri: &str) -> String {
    if uri.starts_with('/') {
        return uri.to_string();
    }
    let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
    format!("{dir}{uri}")
}

/// Follow one media playlist until `end`.
async fn follow(mut conn: Conn, playlist: String, ll: bool, end: Instant, stats: Shared) {
    let mut fetched: std::collections::HashSet<String> = Default::default();
    let mut media: Option<Media> = None;
    let mut first = true;
    while Instant::now() < end {
        let path = match (&media, ll) {
            // hls.js asks for a delta update whenever the server offers
            // one: reloads stay small however long the DVR window grows.
            (Some(m), true) if m.can_block => match m.next_part() {
                Some((msn, part)) if m.can_skip => {
                    format!("{playlist}?_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES")
                }
                Some((msn, part)) => format!("{playlist}?_HLS_msn={msn}&_HLS_part={part}"),
                None => playlist.clone(),
            },
            _ => playlist.clone(),
        };
        let r = conn.get(&path).await;
        let text = {
            let mut s = stats.lock().unwrap();
            s.requests += 1;
            match r {
                Ok((200, body)) => {
                    s.bytes += body.len() as u64;
                    Some(String::from_utf8_lossy(&body).into_owned())
                }
                other => {
                    s.error(other.map(|(status, _)| status));
                    None
                }
            }
        };
        let Some(text) = text else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let listed_at = Instant::now();
        let m = parse_media(&text);
        if m.ended {
            break;
        }
        // New media: parts in low-latency mode, whole segments otherwise.
        // A joining viewer starts near the live edge, as players do.
        let mut new: Vec<(String, i64)> = if ll && m.part_target.is_some() {
            m.part_ends()
        } else {
            m.segment_ends()
        };
        if first {
            let keep = if ll { 3 } else { 1 };
            for (u, _) in new.iter().take(new.len().saturating_sub(keep)) {
                fetched.insert(u.clone());
            }
            first = false;
        }
        new.retain(|(u, _)| !fetched.contains(u));
        {
            // The first viewer told of a part learns of it within a fraction
            // of a millisecond of its publication (its blocking reload was
            // waiting): the earliest sighting over all viewers stands for the
            // publication time.
            let mut s = stats.lock().unwrap();
            for (uri, _) in &new {
                let key = join(&playlist, uri);
                let e = s.first_seen.entry(key).or_insert(listed_at);
                *e = (*e).min(listed_at);
            }
        }
        for (uri, end_ms) in new {
            let t = Instant::now();
            let key = join(&playlist, &uri);
            let r = conn.fetch(&key).await;
            let mut s = stats.lock().unwrap();
            if s.media(r, t) {
                if let Some(seen) = s.first_seen.get(&key).copied() {
                    s.delivery_us.push(seen.elapsed().as_micros() as u64);
                }
                s.behind_ms.push(now_ms() - end_ms);
            }
            fetched.insert(uri);
        }
        let target = m.target_duration.max(1.0);
        let blocking = ll && m.can_block;
        media = Some(m);
        if !blocking {
            tokio::time::sleep(Duration::from_secs_f64(target / 2.0)).await;
        }
    }
}

/// Fetch `playlist` and two of its recent segments in a loop until `end`.
async fn flood(mut conn: Conn, playlist: String, end: Instant, stats: Shared) {
    let mut urls = vec![playlist.clone()];
    if let Ok((200, body)) = conn.get(&playlist).await {
        let m = parse_media(&String::from_utf8_lossy(&body));
        let segs = m.segment_ends();
        // Not the newest: in the window for the whole run on any server.
        for (uri, _) in segs.iter().rev().skip(1).take(2) {
            urls.push(join(&playlist, uri));
        }
    }
    let mut i = 0;
    while Instant::now() < end {
        let url = &urls[i % urls.len()];
        i += 1;
        let t = Instant::now();
        let r = conn.fetch(url).await;
        stats.lock().unwrap().media(r, t);
    }
}

async fn viewer(args: Arc<Args>, index: usize, end: Instant, stats: Shared) {
    let (authority, master) = split_url(&args.url);
    let mut conn = Conn::new(&authority, index);
    let variants = match conn.get(&master).await {
        Ok((200, body)) => parse_master(&String::from_utf8_lossy(&body)),
        _ => Vec::new(),
    };
    if variants.is_empty() {
        stats.lock().unwrap().failed_viewers += 1;
        return;
    }
    let v = &variants[index % variants.len()];
    if args.mode == "flood" {
        let audio = v.audio.as_ref().map(|a| join(&master, a));
        let playlist = match (index / variants.len() % 2, audio) {
            (1, Some(a)) => a,
            _ => join(&master, &v.uri),
        };
        flood(conn, playlist, end, stats).await;
        return;
    }
    let ll = args.mode == "ll";
    let video = tokio::spawn(follow(conn, join(&master, &v.uri), ll, end, stats.clone()));
    if let Some(a) = &v.audio {
        follow(
            Conn::new(&authority, index),
            join(&master, a),
            ll,
            end,
            stats,
        )
        .await;
    }
    let _ = video.await;
}

fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    }
}

/// utime + stime of a process, seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn percentile(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let stats: Shared = Arc::default();
    let ramp = Duration::from_secs(args.ramp);
    let start = Instant::now();
    let measure_from = start + ramp + Duration::from_secs(2);
    let end = measure_from + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for i in 0..args.viewers {
        let at = start + ramp.mul_f64(i as f64 / args.viewers.max(1) as f64);
        let (args, stats) = (args.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            viewer(args, i, end, stats).await;
        }));
    }
    // Count only what happens once everyone has joined.
    tokio::time::sleep_until(measure_from.into()).await;
    {
        let mut s = stats.lock().unwrap();
        let failed = s.failed_viewers;
        *s = Stats {
            failed_viewers: failed,
            ..Stats::default()
        };
    }
    // Summed over the server's processes (nginx: its workers).
    let sum = |f: fn(u32) -> Option<f64>| -> Option<f64> {
        (!args.pid.is_empty()).then(|| args.pid.iter().filter_map(|&p| f(p)).sum())
    };
    let cpu0 = sum(cpu_seconds);
    let own0 = cpu_seconds(std::process::id());
    let mut peak_rss: f64 = 0.0;
    while Instant::now() < end {
        if let Some(r) = sum(rss_mb) {
            peak_rss = peak_rss.max(r);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu1 = sum(cpu_seconds);
    let own1 = cpu_seconds(std::process::id());
    let seconds = args.seconds as f64;
    let mut s = std::mem::take(&mut *stats.lock().unwrap());
    for t in tasks {
        t.abort();
    }
    let server_cores = cpu0.zip(cpu1).map(|(a, b)| (b - a) / seconds);
    let own_cores = own0.zip(own1).map(|(a, b)| (b - a) / seconds);
    let mut behind: Vec<u64> = s.behind_ms.iter().map(|&b| b.max(0) as u64).collect();
    let line = serde_json::json!({
        "label": args.label,
        "mode": args.mode,
        "viewers": args.viewers,
        "failed_viewers": s.failed_viewers,
        "seconds": seconds,
        "requests_per_s": s.requests as f64 / seconds,
        "errors": s.errors,
        "error_kinds": s.error_kinds,
        "mbit_per_s": s.bytes as f64 * 8.0 / seconds / 1e6,
        "fetch_ms_p50": percentile(&mut s.fetch_us, 0.5) as f64 / 1000.0,
        "fetch_ms_p99": percentile(&mut s.fetch_us, 0.99) as f64 / 1000.0,
        "fetch_ms_max": percentile(&mut s.fetch_us, 1.0) as f64 / 1000.0,
        "delivery_ms_p50": percentile(&mut s.delivery_us, 0.5) as f64 / 1000.0,
        "delivery_ms_p99": percentile(&mut s.delivery_us, 0.99) as f64 / 1000.0,
        "behind_live_ms_p50": percentile(&mut behind, 0.5),
        "behind_live_ms_p99": percentile(&mut behind, 0.99),
        "server_cores": server_cores,
        "server_peak_rss_mb": (!args.pid.is_empty()).then_some(peak_rss),
        "client_cores": own_cores,
    });
    println!("{line}");
}
