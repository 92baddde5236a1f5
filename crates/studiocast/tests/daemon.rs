//! The capture daemon end to end, on 127.0.0.1 with real GStreamer, ffmpeg
//! and ffprobe as the HLS client.

mod support;

use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use support::*;

/// Sessions use real encoders; on two cores, run the daemon tests one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn create_demo(d: &Daemon) -> String {
    let r = api(
        d,
        "POST",
        "/api/v1/sessions",
        Some(r#"{"pipeline":"demo","title":"Counterpoint live","course":"Harmony 2"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let j = r.json();
    assert_eq!(j["pipeline"], "demo");
    assert_eq!(j["title"], "Counterpoint live");
    assert!(j["started_at"].as_str().unwrap().ends_with('Z'));
    let id = j["id"].as_str().unwrap().to_string();
    assert_eq!(j["urls"]["hls"], format!("/live/{id}/master.m3u8"));
    id
}

fn rms(x: impl Iterator<Item = f32>) -> f64 {
    let (mut s, mut n) = (0.0f64, 0usize);
    for v in x {
        s += (v as f64).powi(2);
        n += 1;
    }
    (s / n.max(1) as f64).sqrt()
}

#[test]
fn live_session_then_vod_and_restart() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tmpdir("live");
    let d = Daemon::start(&data);
    assert_eq!(get(&d, "/healthz").status, 200);
    let t0 = Instant::now();
    let id = create_demo(&d);
    let master = format!("/live/{id}/master.m3u8");

    // Time to the first playable segment of every rendition.
    wait_for("first segments", 30, || {
        ["720p", "binaural", "stereo"].iter().all(|r| {
            let p = get(&d, &format!("/live/{id}/{r}/index.m3u8"));
            p.status == 200 && !media_playlist(&p.text()).1.is_empty()
        }) && get(&d, &master).status == 200
    });
    eprintln!(
        "first playable segment after {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        api(&d, "GET", &format!("/api/v1/sessions/{id}"), None).json()["state"],
        "live"
    );
    let st = api(&d, "GET", &format!("/api/v1/sessions/{id}"), None).json();
    assert_eq!(st["inputs"]["audio_source"], "synthetic", "{st}");
    assert!(
        st["inputs"]["last_block_age_s"].as_f64().unwrap() < 1.0,
        "{st}"
    );

    // About ten seconds in: at least three segments everywhere.
    wait_for("three segments", 30, || {
        ["720p", "binaural", "stereo"].iter().all(|r| {
            media_playlist(&get(&d, &format!("/live/{id}/{r}/index.m3u8")).text())
                .1
                .len()
                >= 3
        })
    });

    // The multivariant playlist as served.
    let m = get(&d, &master);
    assert_eq!(
        m.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(m.header("access-control-allow-origin"), Some("*"));
    let mt = m.text();
    assert!(
        mt.contains("TYPE=AUDIO")
            && mt.contains("NAME=\"Binaural (headphones)\"")
            && mt.contains("DEFAULT=YES"),
        "{mt}"
    );
    assert!(
        mt.contains("NAME=\"Stereo\"") && mt.matches("CHANNELS=\"2\"").count() == 2,
        "{mt}"
    );
    assert!(
        mt.contains("CODECS=\"avc1.64001f,mp4a.40.2\"")
            && mt.contains("RESOLUTION=1280x720")
            && mt.contains("FRAME-RATE=30"),
        "{mt}"
    );

    // Media playlists: PDT with milliseconds, EXTINF within target, window.
    for r in ["720p", "binaural", "stereo"] {
        let p = get(&d, &format!("/live/{id}/{r}/index.m3u8"));
        assert_eq!(p.header("cache-control"), Some("no-cache"));
        let t = p.text();
        let pdt = t
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
            .expect("PDT");
        assert!(pdt.ends_with('Z') && pdt.len() == 24, "PDT {pdt}");
        assert!(
            t.contains("#EXT-X-INDEPENDENT-SEGMENTS") && t.contains("#EXT-X-MAP:URI=\"init.mp4\""),
            "{t}"
        );
        let (td, durs) = media_playlist(&t);
        assert_eq!(td, 2);
        assert!(durs.iter().all(|x| x.round() as u64 <= td), "{r}: {durs:?}");
        let seg = get(&d, &format!("/live/{id}/{r}/seg000001.m4s"));
        assert_eq!(seg.status, 200);
        assert_eq!(seg.header("content-type"), Some("video/iso.segment"));
        assert!(seg.header("cache-control").unwrap().contains("immutable"));
    }

    // A real HLS client sees H.264 1280×720 and two AAC stereo renditions.
    let streams = ffprobe_streams(&d.url(&master));
    let video: Vec<_> = streams
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .collect();
    let audio: Vec<_> = streams
        .iter()
        .filter(|s| s["codec_type"] == "audio")
        .collect();
    assert!(
        video
            .iter()
            .any(|v| v["codec_name"] == "h264" && v["width"] == 1280 && v["height"] == 720),
        "{streams:?}"
    );
    // Two AAC stereo renditions (the head-tracked mode's 4-channel Opus is
    // in the embedded player's master only).
    assert_eq!(audio.len(), 2, "{streams:?}");
    assert!(audio
        .iter()
        .all(|a| a["codec_name"] == "aac" && a["channels"] == 2 && a["sample_rate"] == "48000"));
    let player = ffprobe_streams(&d.url(&format!("/live/{id}/master-player.m3u8")));
    let opus: Vec<_> = player
        .iter()
        .filter(|a| a["codec_name"] == "opus")
        .collect();
    assert_eq!(opus.len(), 1, "{player:?}");
    assert_eq!(opus[0]["channels"], 4, "{player:?}");

    // The binaural rendition is really binaural: not silent, not dual mono,
    // and not the stereo downmix.
    let bin = decode_audio(&d.url(&format!("/live/{id}/binaural/index.m3u8")), 6);
    let st = decode_audio(&d.url(&format!("/live/{id}/stereo/index.m3u8")), 6);
    assert!(bin.len() > 48_000 * 2 * 3, "decoded {} samples", bin.len());
    let (l, r): (Vec<f32>, Vec<f32>) = bin.chunks_exact(2).map(|c| (c[0], c[1])).unzip();
    let level = rms(bin.iter().copied());
    assert!(level > 1e-3, "binaural rendition is silent (rms {level})");
    let diff = rms(l.iter().zip(&r).map(|(a, b)| a - b));
    assert!(
        diff > 0.1 * level,
        "binaural is (nearly) dual mono: side rms {diff}, level {level}"
    );
    let n = bin.len().min(st.len());
    let vs_stereo = rms(bin[..n].iter().zip(&st[..n]).map(|(a, b)| a - b));
    assert!(
        vs_stereo > 0.1 * level,
        "binaural equals the stereo rendition"
    );

    // Stop: drains, ENDLIST, VOD complete.
    let live_secs: f64 = media_playlist(&get(&d, &format!("/live/{id}/720p/index.m3u8")).text())
        .1
        .iter()
        .sum();
    let s = api(&d, "POST", &format!("/api/v1/sessions/{id}/stop"), None);
    assert_eq!(s.status, 200, "{}", s.text());
    assert_eq!(s.json()["state"], "ended");
    assert!(s.json()["ended_at"].is_string());
    assert_eq!(
        api(&d, "POST", &format!("/api/v1/sessions/{id}/stop"), None).status,
        409
    );
    for r in ["720p", "binaural", "stereo"] {
        assert!(get(&d, &format!("/live/{id}/{r}/index.m3u8"))
            .text()
            .trim_end()
            .ends_with("#EXT-X-ENDLIST"));
    }
    let vod_pl = get(&d, &format!("/vod/{id}/720p/index.m3u8")).text();
    assert!(vod_pl.contains("#EXT-X-PLAYLIST-TYPE:VOD") && vod_pl.contains("#EXT-X-ENDLIST"));
    let vod_secs: f64 = media_playlist(&vod_pl).1.iter().sum();
    assert!(
        vod_secs >= live_secs,
        "VOD {vod_secs} s shorter than the live window {live_secs} s"
    );
    // Decode the whole VOD end to end and compare its duration.
    let out = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-i",
            &d.url(&format!("/vod/{id}/master.m3u8")),
            "-map",
            "0",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "VOD does not decode: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dur = ffprobe_duration(&d.url(&format!("/vod/{id}/master.m3u8")));
    assert!(
        (dur - vod_secs).abs() <= 1.0,
        "VOD lasts {dur} s, playlist says {vod_secs} s"
    );
    vod_through_real_clients(&d, &id);

    // Restart: the recording is still listed and served.
    assert!(d.terminate().success());
    let d = Daemon::start(&data);
    let rec = listed(&d, &id);
    assert_eq!(rec["state"], "ended");
    assert_eq!(get(&d, &format!("/vod/{id}/master.m3u8")).status, 200);
    assert_eq!(
        get(&d, &format!("/vod/{id}/binaural/seg000001.m4s")).status,
        200
    );
}

#[test]
fn sigterm_finalises_live_sessions() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = tmpdir("sigterm");
    let d = Daemon::start(&data);
    let id = create_demo(&d);
    wait_for("first segment", 30, || {
        !media_playlist(&get(&d, &format!("/live/{id}/720p/index.m3u8")).text())
            .1
            .is_empty()
    });
    assert!(d.terminate().success(), "daemon exit status");
    let hls = data.join("sessions").join(&id).join("hls");
    for r in ["720p", "binaural", "stereo"] {
        let t = std::fs::read_to_string(hls.join(r).join("live.m3u8")).unwrap();
        assert!(t.trim_end().ends_with("#EXT-X-ENDLIST"), "{r}: {t}");
        assert!(hls.join(r).join("vod.m3u8").exists());
    }
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("sessions").join(&id).join("session.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["state"], "ended");
}

#[test]
fn bad_requests_get_the_right_status() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = Daemon::start(&tmpdir("bad"));
    let body = br#"{"pipeline":"demo","title":"x"}"#;
    // 401: no token, wrong token, wrong scheme.
    for h in [
        vec![],
        vec![("Authorization", "Bearer wrong")],
        vec![("Authorization", "Basic dGVzdA==")],
    ] {
        let mut hh = h.clone();
        hh.push(("Content-Type", "application/json"));
        let r = request(&d.addr, "POST", "/api/v1/sessions", &hh, body);
        assert_eq!(r.status, 401, "{h:?}");
        assert_eq!(r.json()["code"], "unauthorized");
        assert_eq!(
            request(&d.addr, "GET", "/api/v1/sessions", &h, b"").status,
            401
        );
        assert_eq!(
            request(&d.addr, "GET", "/api/v1/devices", &h, b"").status,
            401
        );
    }
    // 400: bad JSON, missing or invalid fields, unknown fields.
    for b in [
        r#"{"pipeline":"demo""#,
        r#"{"title":"x"}"#,
        r#"{"pipeline":"demo","title":""}"#,
        r#"{"pipeline":"demo","title":"x","extra":1}"#,
        "[]",
    ] {
        let r = api(&d, "POST", "/api/v1/sessions", Some(b));
        assert_eq!(r.status, 400, "{b}: {}", r.text());
        assert_eq!(r.json()["code"], "bad_request");
    }
    // 404: unknown pipeline, unknown session.
    let r = api(
        &d,
        "POST",
        "/api/v1/sessions",
        Some(r#"{"pipeline":"no-such","title":"x"}"#),
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "not_found");
    assert_eq!(
        api(&d, "GET", "/api/v1/sessions/ffff0000ffff0000", None).status,
        404
    );
    assert_eq!(
        api(&d, "POST", "/api/v1/sessions/ffff0000ffff0000/stop", None).status,
        404
    );
    // Path traversal on the playback routes. The bait sits where a naive
    // join of the URL path would land: next to the data folder's
    // `sessions`, inside it, and inside a real session's folder above its
    // `hls` (the session record is bait too).
    let id = create_demo(&d);
    let sdir = d.data.join("sessions").join(&id);
    std::fs::write(d.data.join("secret.m4s"), "BAIT-ROOT").unwrap();
    std::fs::write(d.data.join("sessions/secret.m4s"), "BAIT-SESSIONS").unwrap();
    std::fs::write(sdir.join("secret.m4s"), "BAIT-SESSION").unwrap();
    std::fs::write(sdir.join("hls/secret.txt"), "BAIT-HLS").unwrap();
    let targets = [
        "secret.m4s",
        "../secret.m4s",
        "../../secret.m4s",
        "../../../secret.m4s",
        "../session.json",
        "../hls/secret.txt",
        "video/../../secret.m4s",
        "video/../../../secret.m4s",
        "secret.txt",
    ];
    let encode = |t: &str, how: usize| match how {
        0 => t.to_string(),
        1 => t.replace("../", "..%2f"),
        2 => t.replace("../", "%2e%2e%2f"),
        3 => t.replace("../", "%252e%252e%252f"),
        4 => t.replace("../", "..\\"),
        5 => t.replace("../", "..%5c"),
        _ => format!("{t}%00.m4s"),
    };
    let mut probes = 0;
    for listing in ["live", "vod"] {
        for session in [id.as_str(), "..", "%2e%2e", "x"] {
            for t in targets {
                for how in 0..7 {
                    let p = format!("/{listing}/{session}/{}", encode(t, how));
                    let r = get(&d, &p);
                    let body = r.text();
                    assert!(
                        !body.contains("BAIT") && !body.contains("\"state\""),
                        "{p} leaked: {body}"
                    );
                    assert!(r.status == 400 || r.status == 404, "{p}: {}", r.status);
                    probes += 1;
                }
            }
        }
    }
    eprintln!("{probes} traversal probes, none reached a file");
    // The real files are still served.
    wait_for("the master playlist", 30, || {
        get(&d, &format!("/live/{id}/master.m3u8")).status == 200
    });
    api(&d, "POST", &format!("/api/v1/sessions/{id}/stop"), None);
    // 401 on every control route, without a token and with a wrong one.
    for (method, path) in [
        ("GET", "/api/v1/sessions".to_string()),
        ("POST", "/api/v1/sessions".to_string()),
        ("GET", format!("/api/v1/sessions/{id}")),
        ("POST", format!("/api/v1/sessions/{id}/stop")),
        ("GET", "/api/v1/devices".to_string()),
        ("GET", format!("/api/v1/sessions/{id}/meters")),
    ] {
        for h in [vec![], vec![("Authorization", "Bearer wrong")]] {
            let r = request(&d.addr, method, &path, &h, b"");
            assert_eq!(r.status, 401, "{method} {path} {h:?}");
        }
    }
    // 413 for a body over the limit; 400 for a title that forges log lines.
    let big = format!(r#"{{"pipeline":"demo","title":"{}"}}"#, "x".repeat(100_000));
    assert_eq!(api(&d, "POST", "/api/v1/sessions", Some(&big)).status, 413);
    let forged = api(
        &d,
        "POST",
        "/api/v1/sessions",
        Some("{\"pipeline\":\"demo\",\"title\":\"ok\\nINFO forged line\"}"),
    );
    assert_eq!(forged.status, 400, "{}", forged.text());
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is required");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The VOD as real clients use it: curl with ranges, HEAD and a
/// conditional GET; ffprobe seeking into the middle of the recording.
fn vod_through_real_clients(d: &Daemon, id: &str) {
    let seg = d.url(&format!("/vod/{id}/720p/seg000002.m4s"));
    let full = get(d, &format!("/vod/{id}/720p/seg000002.m4s")).body;
    let head = curl(&["-D", "-", "-o", "/dev/null", "-r", "100-199", &seg]);
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-range: bytes 100-199/{}", full.len())),
        "{head}"
    );
    let part = Command::new("curl")
        .args(["-s", "-r", "100-199", &seg])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(part, full[100..200], "the range holds the right bytes");
    let head = curl(&["-I", &seg]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let etag = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("etag: ")
                .or_else(|| l.strip_prefix("ETag: "))
        })
        .expect("an ETag")
        .trim()
        .to_string();
    let code = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &format!("If-None-Match: {etag}"),
        &seg,
    ]);
    assert_eq!(code, "304", "conditional GET");
    // Out of range: 416.
    let code = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-r",
        "999999999-",
        &seg,
    ]);
    assert_eq!(code, "416");
    // ffprobe seeks into the VOD's media over HTTP: the init segment and a
    // segment through ffmpeg's concat protocol, read from 5.5 s, which
    // ffmpeg does with a Range request (its HLS demuxer cannot seek in
    // fMP4 in Debian's ffmpeg 5.1, even on its own output).
    let v = d.url(&format!("/vod/{id}/720p"));
    let out = Command::new("ffprobe")
        .args(["-protocol_whitelist", "concat,http,tcp", "-v", "debug"])
        .args(["-read_intervals", "5.5%+0.2", "-select_streams", "v"])
        .args(["-show_entries", "frame=pts_time", "-of", "csv=p=0"])
        .arg(format!("concat:{v}/init.mp4|{v}/seg000003.m4s"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let ranged = log
        .lines()
        .filter_map(|l| l.strip_prefix("Range: bytes="))
        .any(|r| !r.starts_with("0-"));
    assert!(
        out.status.success() && ranged,
        "ffprobe did not seek with a Range request: {log}"
    );
    assert!(
        !log.contains("Invalid NAL") && !log.contains("partial file"),
        "{log}"
    );
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    eprintln!(
        "ffprobe seeking with a Range request: {} frames from {:?} s",
        times.len(),
        times.first()
    );
    assert!(
        times.len() >= 5 && (4.0..6.0).contains(&times[0]),
        "{times:?}"
    );
}
