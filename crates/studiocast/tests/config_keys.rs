//! Every documented config key does something, and this shows it: the
//! filter keys change the filters a live session uses; a daemon started
//! from a config file alone obeys each `[server]` key and `[spatial]
//! block` and `headphone_eq` on its live path.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use studiocast::config::{Config, SpatialConfig};
use studiocast::filters::{filters, FilterRequest};
use support::*;

fn filters_for(spatial: &SpatialConfig) -> studiocast_spatial::ShFilters {
    std::env::set_var("STUDIOCAST_CACHE_DIR", tmpdir("keys-cache"));
    filters(&FilterRequest::for_session(spatial, 3, 48_000).unwrap()).unwrap()
}

fn energy(f: &studiocast_spatial::ShFilters) -> f64 {
    f.left
        .iter()
        .chain(&f.right)
        .flatten()
        .map(|x| (*x as f64).powi(2))
        .sum()
}

/// A mono FIR of one tap with gain `g`, at 48 kHz.
fn eq_file(dir: &Path, g: f32) -> std::path::PathBuf {
    let p = dir.join(format!("eq-{g}.wav"));
    let mut w = studiocast_audiofile::pcm::PcmWriter::create(
        &p,
        1,
        48_000,
        studiocast_audiofile::pcm::SampleFormat::F32,
    )
    .unwrap();
    w.write_planar(&[&[g]]).unwrap();
    w.finalize().unwrap();
    p
}

#[test]
fn the_spatial_keys_change_the_session_filters() {
    let base = SpatialConfig::default();
    let plain = filters_for(&base);
    // method
    let ls = filters_for(&SpatialConfig {
        method: "ls".into(),
        ..base.clone()
    });
    assert_eq!(ls.method, studiocast_spatial::DecoderMethod::Ls);
    assert_ne!(ls.left, plain.left);
    // max_re
    let re = filters_for(&SpatialConfig {
        max_re: true,
        ..base.clone()
    });
    assert_ne!(re.left, plain.left, "max_re changed nothing");
    // headphone_eq: a half-gain EQ quarters the filter energy.
    let dir = tmpdir("keys-eq");
    let half = filters_for(&SpatialConfig {
        headphone_eq: Some(eq_file(&dir, 0.5)),
        ..base.clone()
    });
    let ratio = energy(&half) / energy(&plain);
    assert!((ratio - 0.25).abs() < 1e-3, "energy ratio {ratio}");
    // hrtf: another file is read (and a missing one named).
    let e = FilterRequest::for_session(
        &SpatialConfig {
            hrtf: "/nonexistent/set.sofa".into(),
            ..base.clone()
        },
        3,
        48_000,
    )
    .map(|r| filters(&r))
    .unwrap()
    .unwrap_err();
    assert!(format!("{e:#}").contains("/nonexistent/set.sofa"), "{e:#}");
    // block: refused outside its range, naming the key.
    let e = Config::parse("[spatial]\nblock = 10\n")
        .unwrap()
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("[spatial] block = 10"), "{e}");
}

/// A daemon from a config file alone (no flags, no token variable).
struct FileDaemon {
    child: std::process::Child,
    addr: String,
}

impl Drop for FileDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_from_file(config: &Path, cache: &Path) -> FileDaemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_studiocast"))
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env_remove("STUDIOCAST_API_TOKEN")
        .env("STUDIOCAST_CACHE_DIR", cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "daemon exited early");
        let l = line.trim();
        if let Some(a) = l
            .strip_prefix("studiocast listening on http://")
            .or_else(|| l.strip_prefix("studiocast listening on https://"))
        {
            break a.to_string();
        }
    };
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    FileDaemon { child, addr }
}

#[test]
fn a_daemon_obeys_every_key_of_its_config_file() {
    let dir = tmpdir("keys-daemon");
    let data = dir.join("media");
    let pipelines = dir.join("presets");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::write(pipelines.join("custom.toml"), demo_named("custom")).unwrap();
    let silent_eq = eq_file(&dir, 0.0);
    let cfg = dir.join("studiocast.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[spatial]
block = 256
headphone_eq = "{}"
[server]
listen = "127.0.0.1:0"
data_dir = "{}"
pipelines_dir = "{}"
api_token = "from-the-file"
cors_origins = ["https://campus.example.org"]
max_sessions = 1
max_connections = 32
playback_secret = "the file's playback secret, 40 bytes"
embed_origins = ["https://campus.example.org"]
public_url = "https://media.example.org/studio"
[recording]
min_free_mb = 1
"#,
            silent_eq.display(),
            data.display(),
            pipelines.display()
        ),
    )
    .unwrap();
    let d = start_from_file(&cfg, &tmpdir("keys-daemon-cache"));
    let auth = |t: &str| format!("Bearer {t}");
    let post = |token: &str, body: &str| {
        let a = auth(token);
        request(
            &d.addr,
            "POST",
            "/api/v1/sessions",
            &[
                ("Authorization", a.as_str()),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    };
    // api_token, pipelines_dir
    assert_eq!(
        post(TOKEN, r#"{"pipeline":"custom","title":"x"}"#).status,
        401
    );
    assert_eq!(
        post("from-the-file", r#"{"pipeline":"demo","title":"x"}"#).status,
        404
    );
    let r = post("from-the-file", r#"{"pipeline":"custom","title":"Keys"}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    // data_dir
    assert!(data
        .join("sessions")
        .join(&id)
        .join("session.json")
        .exists());
    // max_sessions
    let second = post("from-the-file", r#"{"pipeline":"custom","title":"y"}"#);
    assert_eq!(second.status, 503, "{}", second.text());
    let a = auth("from-the-file");
    let status = || {
        request(
            &d.addr,
            "GET",
            &format!("/api/v1/sessions/{id}"),
            &[("Authorization", a.as_str())],
            b"",
        )
        .json()
    };
    wait_for("live", 40, || status()["state"] == "live");
    // block
    assert_eq!(status()["inputs"]["block_frames"], 256, "{}", status());
    // cors_origins
    let pl = format!("/live/{id}/master.m3u8");
    let ok = request(
        &d.addr,
        "GET",
        &pl,
        &[("Origin", "https://campus.example.org")],
        b"",
    );
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://campus.example.org")
    );
    let other = request(
        &d.addr,
        "GET",
        &pl,
        &[("Origin", "https://elsewhere.example")],
        b"",
    );
    assert_eq!(other.status, 200);
    assert_eq!(other.header("access-control-allow-origin"), None);
    // playback_secret: the tokens the daemon mints are signed with it, and
    // it makes no key of its own.
    let minted = request(
        &d.addr,
        "POST",
        &format!("/api/v1/sessions/{id}/playback-token"),
        &[("Authorization", a.as_str())],
        b"",
    );
    assert_eq!(minted.status, 201, "{}", minted.text());
    let key = studiocast_server::PlaybackKey::new(b"the file's playback secret, 40 bytes").unwrap();
    let token = minted.json()["token"].as_str().unwrap().to_string();
    let now = studiocast_server::access::unix_now();
    assert_eq!(key.verify(&id, Some(&token), now), Ok(()));
    assert!(!data.join("playback.key").exists());
    // embed_origins: the player's API talks to them (a public lesson may be
    // framed anywhere); public_url: oEmbed's absolute URLs.
    let page = request(&d.addr, "GET", &format!("/embed/{id}"), &[], b"");
    assert_eq!(page.status, 200);
    assert!(
        page.text()
            .contains(r#""origins":["https://campus.example.org"]"#),
        "{}",
        page.text()
    );
    let o = request(
        &d.addr,
        "GET",
        &format!("/oembed?url=https%3A%2F%2Fmedia.example.org%2Fstudio%2Fembed%2F{id}"),
        &[],
        b"",
    );
    assert_eq!(o.status, 200, "{}", o.text());
    assert!(
        o.json()["html"].as_str().unwrap().contains(&format!(
            "src=\"https://media.example.org/studio/embed/{id}\""
        )),
        "{}",
        o.text()
    );
    // headphone_eq: a zero EQ silences the binaural rendition on the live
    // path (the stereo downmix does not go through the filters).
    let url = |r: &str| format!("http://{}/live/{id}/{r}/index.m3u8", d.addr);
    let rms = |x: &[f32]| {
        (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    };
    let bin = decode_audio(&url("binaural"), 4);
    let st = decode_audio(&url("stereo"), 4);
    assert!(rms(&bin) < 1e-4, "binaural rms {}", rms(&bin));
    assert!(rms(&st) > 1e-3, "stereo rms {}", rms(&st));
    // max_connections: 100 half-open connections, at most 32 held.
    let conns: Vec<TcpStream> = (0..100)
        .filter_map(|_| {
            let mut s = TcpStream::connect(&d.addr).ok()?;
            s.write_all(b"GET /hea").ok()?;
            Some(s)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let fds = std::fs::read_dir(format!("/proc/{}/fd", d.child.id()))
        .unwrap()
        .count();
    let open_socks = conns
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 1];
            matches!((&**s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    eprintln!(
        "max_connections = 32: {open_socks} of 100 half-open connections held; daemon fds {fds}"
    );
    assert!(open_socks <= 32, "{open_socks} held");
    assert_eq!(request(&d.addr, "GET", "/healthz", &[], b"").status, 200);
}

/// `[server] tls_cert` and `tls_key`: HTTPS, and HTTP/2 to a client that
/// offers it (curl); one without the other, or a key that is not one, stops
/// the start naming what is wrong.
#[test]
fn the_tls_keys_turn_on_https_and_http2() {
    let dir = tmpdir("keys-tls");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\npipelines_dir = \"{}\"\n",
        dir.join("data").display(),
        repo().join("pipelines").display()
    );
    let config = dir.join("tls.toml");
    std::fs::write(
        &config,
        format!(
            "{base}tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let d = start_from_file(&config, &dir.join("cache"));
    let out = Command::new("curl")
        .args(["-sS", "--insecure", "--http2", "--max-time", "10"])
        .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
        .arg(format!("https://{}/healthz", d.addr))
        .output()
        .expect("curl is required (apt-get install curl)");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
    drop(d);
    // Half a pair, or a key that is not a key: the start fails, naming it.
    for (extra, says) in [
        (
            format!("tls_cert = \"{}\"\n", cert.display()),
            "tls_cert and tls_key go together",
        ),
        (
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                cert.display(),
                cert.display()
            ),
            "key",
        ),
    ] {
        std::fs::write(&config, format!("{base}{extra}")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_studiocast"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("STUDIOCAST_CACHE_DIR", dir.join("cache"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(says), "{err}");
    }
}

/// `[jobs] import_dir`: path jobs resolve inside it (and are refused when
/// it is unset); `webhooks`, `webhook_secret` and `public_url`: the job's
/// end is posted there, signed with that key, with URLs under that
/// address; `shared_dir`: the lesson is written and served from there;
/// `max_upload_mb`: a larger upload is refused; `database`: the queue is
/// that server (one that does not answer stops the start, naming it);
/// `workers = 0`: this daemon runs no jobs (503).
#[test]
fn the_jobs_keys_set_the_import_folder_the_webhooks_and_the_workers() {
    let dir = tmpdir("keys-jobs");
    let import = dir.join("import");
    std::fs::create_dir_all(&import).unwrap();
    support::write_foa(&import.join("x.wav"), 1.0);
    let rx = support::hook::Receiver::start(0, vec![200]);
    let secret = "the-secret-from-the-config-file";
    let base = |jobs: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\npipelines_dir = \"{}\"\napi_token = \"{TOKEN}\"\n\n[jobs]\n{jobs}",
            dir.join("data").display(),
            repo().join("pipelines").display()
        )
    };
    let auth = format!("Bearer {TOKEN}");
    let submit = |addr: &str| {
        request(
            addr,
            "POST",
            "/api/v1/jobs",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            br#"{"path": "x.wav", "input_format": "ambix", "order": 1}"#,
        )
    };
    let cache = dir.join("cache");
    let config = dir.join("jobs.toml");
    // With the folder: accepted, and its end is posted.
    std::fs::write(
        &config,
        base(&format!(
            "import_dir = \"{}\"\nwebhooks = [\"{}\"]\nwebhook_secret = \"{secret}\"\npublic_url = \"https://media.example.org/\"\nmax_upload_mb = 2\nshared_dir = \"{}\"\n",
            import.display(),
            rx.url(),
            dir.join("shared").display()
        )),
    )
    .unwrap();
    let d = start_from_file(&config, &cache);
    let r = submit(&d.addr);
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let got = rx.wait(1, 120);
    let event = got[0].json();
    assert_eq!(event["type"], "job.succeeded", "{event}");
    assert!(got[0].signed_by(secret));
    assert_eq!(
        event["job"]["outputs"]["master"],
        format!("https://media.example.org/vod/{id}/master.m3u8")
    );
    let lesson = dir
        .join("shared/sessions")
        .join(&id)
        .join("hls/master.m3u8");
    assert!(lesson.is_file(), "no lesson in the shared folder");
    assert!(!dir.join("data/sessions").join(&id).exists());
    let r = request(&d.addr, "GET", &format!("/vod/{id}/master.m3u8"), &[], b"");
    assert_eq!(r.status, 200);
    // max_upload_mb = 2: a 3 MiB upload is refused by its declared length
    // (the answer comes with only the head sent).
    let mut s = TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n",
        3 << 20
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = s.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("limit of 2 MB"), "{head}");
    drop(d);
    // Without it: refused, saying why.
    std::fs::write(&config, base("")).unwrap();
    let d = start_from_file(&config, &cache);
    let r = submit(&d.addr);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("import_dir"), "{}", r.text());
    drop(d);
    // No workers: no job API at all.
    std::fs::write(
        &config,
        base(&format!(
            "workers = 0\nimport_dir = \"{}\"\n",
            import.display()
        )),
    )
    .unwrap();
    let d = start_from_file(&config, &cache);
    assert_eq!(submit(&d.addr).status, 503);
    drop(d);
    // A queue server that is not there: the start fails, naming it (and
    // not its password).
    std::fs::write(
        &config,
        base("database = \"postgres://studiocast:hunter2@127.0.0.1:1/queue\"\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_studiocast"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("STUDIOCAST_CACHE_DIR", &cache)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("cannot open the job queue at postgres://studiocast:…@127.0.0.1:1/queue"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}
