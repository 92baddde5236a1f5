//! Test support: a real daemon on 127.0.0.1 and a tiny HTTP client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod hook;
pub mod pg;
mod tmp;
pub use tmp::tmpdir;

pub const TOKEN: &str = "test-token-123";

pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub data: PathBuf,
    /// "http" or "https" (the tiny client here speaks only the former; TLS
    /// tests use curl).
    pub scheme: &'static str,
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Daemon {
    /// Start `studiocast serve` on a free port with its own data folder.
    pub fn start(data: &Path) -> Daemon {
        Self::start_with(data, &repo().join("pipelines"), &[])
    }

    /// The same, with another presets folder and extra environment.
    pub fn start_with(data: &Path, pipelines: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::start_limited(data, pipelines, env, None)
    }

    /// The same, with the daemon's file-descriptor limit (soft and hard)
    /// set to `nofile` (what a small systemd `LimitNOFILE` gives it).
    pub fn start_limited(
        data: &Path,
        pipelines: &Path,
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Daemon {
        Self::start_configured(data, pipelines, env, nofile, None)
    }

    /// The same, reading `config` (a TOML text) as its config file.
    pub fn start_configured(
        data: &Path,
        pipelines: &Path,
        env: &[(&str, &str)],
        nofile: Option<u64>,
        config: Option<&str>,
    ) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_studiocast"));
        if let Some(text) = config {
            let path = data.with_extension("toml");
            std::fs::write(&path, text).unwrap();
            cmd.arg("--config").arg(path);
        }
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is a plain system call in the forked child.
            unsafe {
                cmd.pre_exec(move || {
                    let l = rustix::process::Rlimit {
                        current: Some(n),
                        maximum: Some(n),
                    };
                    rustix::process::setrlimit(rustix::process::Resource::Nofile, l)
                        .map_err(std::io::Error::from)
                });
            }
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .arg("--pipelines")
            .arg(pipelines)
            .env("STUDIOCAST_API_TOKEN", TOKEN)
            .env("STUDIOCAST_CACHE_DIR", data.join("cache"))
            .env("STUDIOCAST_LOG", "info,sofar=warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start daemon");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let (scheme, addr) = loop {
            line.clear();
            assert!(Instant::now() < deadline, "daemon did not start");
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("daemon exited early");
            }
            if let Some(a) = line.trim().strip_prefix("studiocast listening on http://") {
                break ("http", a.to_string());
            }
            if let Some(a) = line.trim().strip_prefix("studiocast listening on https://") {
                break ("https", a.to_string());
            }
        };
        // Keep draining stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        Daemon {
            child,
            addr,
            data: data.to_path_buf(),
            scheme,
        }
    }

    /// Open file descriptors of the daemon process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`; the raw path is sent as
/// given (so traversal attempts reach the server unnormalised).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < nl + 4 + n {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 4 + n..];
    }
    out
}

pub fn api(d: &Daemon, method: &str, path: &str, body: Option<&str>) -> Response {
    let auth = format!("Bearer {TOKEN}");
    let mut h = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        h.push(("Content-Type", "application/json"));
    }
    request(&d.addr, method, path, &h, body.unwrap_or("").as_bytes())
}

pub fn get(d: &Daemon, path: &str) -> Response {
    request(&d.addr, "GET", path, &[], b"")
}

/// Raise this process's descriptor limit to its hard limit (tests that
/// hold many sockets).
pub fn raise_own_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let l = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        rustix::process::Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        },
    );
}

/// A copy of the shipped presets in `dir`, plus `extra` (name, text).
pub fn presets_with(dir: &Path, extra: &[(&str, String)]) -> PathBuf {
    let p = dir.join("pipelines");
    std::fs::create_dir_all(&p).unwrap();
    for e in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let e = e.unwrap().path();
        std::fs::copy(&e, p.join(e.file_name().unwrap())).unwrap();
    }
    for (name, text) in extra {
        std::fs::write(p.join(format!("{name}.toml")), text).unwrap();
    }
    p
}

/// The demo preset under another name.
pub fn demo_named(name: &str) -> String {
    std::fs::read_to_string(repo().join("pipelines/demo.toml"))
        .unwrap()
        .replace("name = \"demo\"", &format!("name = \"{name}\""))
}

/// The live media sequence of a rendition (0 when there is none yet).
pub fn media_sequence(d: &Daemon, id: &str, rendition: &str) -> u64 {
    get(d, &format!("/live/{id}/{rendition}/index.m3u8"))
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The number of the newest segment a live playlist lists (0: none).
pub fn last_segment(d: &Daemon, id: &str, rendition: &str) -> u64 {
    let text = get(d, &format!("/live/{id}/{rendition}/index.m3u8")).text();
    let n = text.lines().filter(|l| l.ends_with(".m4s")).count() as u64;
    if n == 0 {
        return 0;
    }
    media_sequence(d, id, rendition) + n - 1
}

/// Create a demo-like session of `pipeline` and wait until it is live.
pub fn start_live(d: &Daemon, pipeline: &str) -> String {
    let r = api(
        d,
        "POST",
        "/api/v1/sessions",
        Some(&format!(r#"{{"pipeline":"{pipeline}","title":"Lesson"}}"#)),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    wait_for("session live", 40, || {
        api(d, "GET", &format!("/api/v1/sessions/{id}"), None).json()["state"] == "live"
    });
    id
}

/// The session `id` as the list shows it.
pub fn listed(d: &Daemon, id: &str) -> serde_json::Value {
    let list = api(d, "GET", "/api/v1/sessions", None).json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("session {id} is not listed: {list}"))
        .clone()
}

/// Poll until `f` is true or the time is up.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Segments (EXTINF durations) and tags of a media playlist.
pub fn media_playlist(text: &str) -> (u64, Vec<f64>) {
    let td = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let d = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|v| {
            v.trim_end_matches(',')
                .split(',')
                .next()
                .and_then(|x| x.parse().ok())
        })
        .collect();
    (td, d)
}

/// Decode `secs` seconds of an HLS audio rendition to interleaved stereo f32.
pub fn decode_audio(url: &str, secs: u32) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-i",
            url,
            "-t",
            &secs.to_string(),
            "-f",
            "f32le",
            "-ac",
            "2",
            "-",
        ])
        .output()
        .expect("ffmpeg is required (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The streams ffprobe finds at `url`.
pub fn ffprobe_streams(url: &str) -> Vec<serde_json::Value> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-of", "json", url])
        .output()
        .expect("ffprobe is required (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["streams"].as_array().cloned().unwrap_or_default()
}

/// The duration ffprobe reads for a file or URL, seconds (0 if unreadable).
pub fn ffprobe_duration(what: &str) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            what,
        ])
        .output()
        .expect("ffprobe is required (apt-get install ffmpeg)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0)
}

/// A recovered (or finished) VOD rendition lists whole segments only (no
/// parts, no hint), and ffprobe decodes every frame it lists: the decoded
/// frame count matches the listed duration within one frame per segment.
/// `frame_rate`: video fps, or the AAC frame rate (48000 / 1024).
pub fn assert_whole_segments(d: &Daemon, id: &str, rendition: &str, frame_rate: f64) {
    let url = d.url(&format!("/vod/{id}/{rendition}/index.m3u8"));
    let text = get(d, &format!("/vod/{id}/{rendition}/index.m3u8")).text();
    assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"), "{text}");
    assert!(
        !text.contains("#EXT-X-PART") && !text.contains("#EXT-X-PRELOAD-HINT"),
        "a VOD lists whole segments only: {text}"
    );
    let (_, durations) = media_playlist(&text);
    assert!(!durations.is_empty(), "{text}");
    let listed: f64 = durations.iter().sum();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries"])
        .args(["stream=nb_read_frames", "-of", "csv=p=0", &url])
        .output()
        .expect("ffprobe is required (apt-get install ffmpeg)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffprobe on {rendition}: {stderr}"
    );
    // One line per program and per stream: the same count.
    let frames: f64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .trim_end_matches(',')
        .parse()
        .unwrap_or_else(|_| panic!("frames: {:?}", String::from_utf8_lossy(&out.stdout)));
    let expected = listed * frame_rate;
    assert!(
        (frames - expected).abs() <= durations.len() as f64 + 1.0,
        "{rendition}: {frames} frames decoded, {expected:.1} listed ({} segments)",
        durations.len()
    );
    eprintln!(
        "{rendition}: {} whole segments, {listed:.2} s, {frames} frames decoded",
        durations.len()
    );
}

/// A first-order AmbiX recording: noise to the left, a tone ahead.
#[allow(clippy::needless_range_loop)] // four planes written per frame
pub fn write_foa(path: &Path, secs: f64) {
    let rate = 48_000u32;
    let n = (rate as f64 * secs) as usize;
    let mut planes = vec![vec![0.0f32; n]; 4];
    let mut seed = 7u32;
    let mut lp = 0.0f32;
    for i in 0..n {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let white = (seed >> 8) as f32 / (1 << 24) as f32 * 2.0 - 1.0;
        lp = 0.9 * lp + 0.1 * white;
        let tone = (2.0 * std::f64::consts::PI * 440.0 * i as f64 / rate as f64).sin() as f32;
        planes[0][i] = 0.05 * (lp + tone);
        planes[1][i] = 0.05 * lp;
        planes[3][i] = 0.05 * tone;
    }
    let mut w = studiocast_audiofile::pcm::PcmWriter::create(
        path,
        4,
        rate,
        studiocast_audiofile::pcm::SampleFormat::F32,
    )
    .unwrap();
    let refs: Vec<&[f32]> = planes.iter().map(|p| p.as_slice()).collect();
    w.write_planar(&refs).unwrap();
    w.finalize().unwrap();
}

/// Run a script of `tests/browser` with node (headless Chromium behind
/// it) and return the JSON report it prints last; `what` names it in the
/// log. Panics, with its output, when there is no report.
pub fn browser_report(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
    what: &str,
) -> (serde_json::Value, std::process::ExitStatus) {
    let dir = repo().join("tests/browser");
    assert!(
        dir.join("node_modules/hls.js").exists() && dir.join("node_modules/playwright-core").exists(),
        "browser test dependencies missing: run `npm ci --prefix tests/browser` (scripts/setup.sh does)"
    );
    let out = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("node is required (apt-get install nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| {
            panic!(
                "no report ({e}): {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("{what} report: {report}");
    (report, out.status)
}
