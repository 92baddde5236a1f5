//! The technician's console (`/console`) end to end in headless Chromium:
//! a JACK dummy server with 64 capture channels feeds a 64-channel session
//! (third-order AmbiX on 1-16, 48 named spot microphones), a tick at full
//! scale every 3 s on channel 1 (the clip indicator must latch between
//! ticks), an SRT listener session fed by ffmpeg (killed mid-test: the
//! alarm must show), and the demo session started from the console's form,
//! watched, stopped, and played back from the past list. The screenshot is
//! kept in `target/artifacts/console.png`.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// 64 channels: third-order AmbiX on 1-16, named spot microphones on the
/// rest; audio only (the machine's two cores also run the demo's and the
/// SRT session's video, and Chromium).
fn jack64_preset() -> String {
    let mut t = String::from(
        "name = \"jack-64\"\ndescription = \"64-channel JACK desk\"\nsegment_seconds = 2\n\
         [audio]\nsample_rate = 48000\n\
         [audio.source]\nkind = \"device\"\nhost = \"JACK\"\nchannels = 64\n\
         ambisonic = { first_channel = 1, order = 3, normalisation = \"ambix\" }\n",
    );
    for c in 17..=64 {
        t += &format!(
            "[[audio.source.object]]\nchannel = {c}\nname = \"spot {c}\"\nazimuth = {}\n",
            (c * 7) % 360 - 180
        );
    }
    t += "[[audio.rendition]]\nid = \"binaural\"\nname = \"Binaural\"\nmix = \"binaural\"\ndefault = true\n\
          [[audio.rendition]]\nid = \"stereo\"\nname = \"Stereo\"\nmix = \"stereo\"\n";
    t
}

/// The shipped SRT listener on `port`, with its 360p rung only.
fn srt_preset(port: u16) -> String {
    let text = std::fs::read_to_string(repo().join("pipelines/srt-listener.toml")).unwrap();
    let text = text
        .split("[[video.rendition]]")
        .filter(|b| {
            !["1080p", "720p", "480p"]
                .iter()
                .any(|r| b.contains(&format!("id = \"{r}\"")))
        })
        .collect::<Vec<_>>()
        .join("[[video.rendition]]")
        .replace("port = 9000", &format!("port = {port}"))
        .replace("name = \"srt-listener\"", "name = \"srt-hall\"");
    assert!(text.contains("id = \"360p\"") && !text.contains("1080p"));
    text
}

/// One JACK client with 64 outputs: a full-scale tick (20 ms of 1 kHz)
/// every 3 s on the first, quiet pink noise on the others. (A second
/// client connected to the same input did not reach it here.)
fn desk_feeder(server: &str) -> Kill {
    let caps = "audio/x-raw,format=F32LE,rate=48000,channels=1";
    let mut args: Vec<String> = vec!["-q".into(), "interleave".into(), "name=i".into()];
    args.extend(
        "! audio/x-raw,channels=64 ! jackaudiosink connect=none client-name=desk buffer-time=2000000"
            .split(' ')
            .map(String::from),
    );
    for c in 0..64 {
        let src = if c == 0 {
            "audiotestsrc wave=ticks volume=1.0 tick-interval=3000000000 sine-periods-per-tick=20 freq=1000"
                .to_string()
        } else {
            "audiotestsrc wave=pink-noise volume=0.05".to_string()
        };
        args.extend(src.split(' ').map(String::from));
        args.extend(["!".into(), caps.into(), "!".into(), format!("i.sink_{c}")]);
    }
    Kill(
        Command::new("gst-launch-1.0")
            .args(&args)
            .env("JACK_DEFAULT_SERVER", server)
            .stdout(Stdio::null())
            .spawn()
            .expect("gst-launch-1.0"),
    )
}

#[test]
fn the_console_signs_in_starts_meters_alarms_stops_and_plays_back() {
    let server = format!("studiocast-console-{}", std::process::id());
    std::env::set_var("JACK_DEFAULT_SERVER", &server);
    let jackd =
        studiocast_capture::jack_server::JackServer::start_synchronous(&server, 48_000, 1024, 64)
            .expect("JACK dummy server");
    let root = tmpdir("console");
    let pipelines = root.join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::copy(
        repo().join("pipelines/demo.toml"),
        pipelines.join("demo.toml"),
    )
    .unwrap();
    std::fs::write(pipelines.join("jack-64.toml"), jack64_preset()).unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(pipelines.join("srt-hall.toml"), srt_preset(port)).unwrap();
    let d = Daemon::start_with(
        &root.join("data"),
        &pipelines,
        &[
            ("JACK_DEFAULT_SERVER", server.as_str()),
            ("STUDIOCAST_MAX_SESSIONS", "4"),
        ],
    );

    // The 64-channel session, fed noise on every channel and, on channel
    // 1, a full-scale tick every 3 s.
    let r = api(
        &d,
        "POST",
        "/api/v1/sessions",
        Some(r#"{"pipeline":"jack-64","title":"Desk"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let jack_id = r.json()["id"].as_str().unwrap().to_string();
    let _feeder = desk_feeder(&server);
    jackd
        .connect_in_order("desk:", "_in:", 64, Duration::from_secs(30))
        .expect("the feeder connected to the capture ports");

    // The SRT session, with an encoder to kill.
    let r = api(
        &d,
        "POST",
        "/api/v1/sessions",
        Some(r#"{"pipeline":"srt-hall","title":"Hall camera"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let srt_id = r.json()["id"].as_str().unwrap().to_string();
    let encoder = Kill(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
            .args(["testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i"])
            .args([
                "sine=frequency=1000:sample_rate=48000",
                "-g",
                "25",
                "-ac",
                "2",
            ])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args(["-c:a", "aac", "-f", "mpegts"])
            .arg(format!("srt://127.0.0.1:{port}?mode=caller"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg is required (apt-get install ffmpeg)"),
    );
    wait_for("the SRT signal", 30, || {
        let s = api(&d, "GET", &format!("/api/v1/sessions/{srt_id}"), None).json();
        s["inputs"]["video"]["signal_present"] == true
    });

    let artifacts = repo().join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("console.png");
    let pid = encoder.0.id().to_string();
    let base = d.url("");
    let base = base.trim_end_matches('/');
    let (report, _) = browser_report(
        "console.mjs",
        &[base, TOKEN, &jack_id, &pid, shot.to_str().unwrap()],
        &[],
        "console",
    );
    assert!(report["fatal"].is_null(), "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    // Signed in; the token in the tab's storage, never in the URL.
    assert_eq!(report["tokenInUrl"], false);
    assert_eq!(report["tokenStored"], TOKEN);
    let rows = report["presetRows"].to_string();
    assert!(rows.contains("jack-64") && rows.contains("JACK"), "{rows}");
    // The demo's meters moved: new readings with signal.
    let (a, b) = (
        &report["demoMeters"]["first"],
        &report["demoMeters"]["second"],
    );
    assert!(b["seq"].as_u64() > a["seq"].as_u64(), "{report}");
    // 64 inputs labelled by role, then the binaural pair.
    let labels: Vec<String> = serde_json::from_value(report["jack"]["labels"].clone()).unwrap();
    assert_eq!(labels.len(), 66, "{labels:?}");
    assert_eq!(
        labels[..16],
        ["W", "Y", "Z", "X", "V", "T", "R", "S", "U", "Q", "O", "M", "K", "L", "N", "P"]
    );
    assert_eq!(labels[16], "spot 17");
    assert_eq!(labels[64..], ["binaural L", "binaural R"]);
    // The clip latched between ticks, with a mark, and cleared by click
    // and by keyboard.
    assert_eq!(
        report["clip"]["latched"],
        serde_json::json!(["W"]),
        "{report}"
    );
    assert!(report["clip"]["text"].as_str().unwrap().contains("CLIP"));
    assert_eq!(report["clipAfterClick"], false, "{report}");
    assert_eq!(report["clipAfterKeyboard"], 0, "{report}");
    // Frame time: every reading drawn, and drawing is cheap.
    let ft = &report["frameTime"];
    eprintln!("console frame time: {ft}");
    assert_eq!(ft["channels"], 66);
    // The socket sends up to 10 readings a second; on this 2-core machine,
    // with three sessions' encoders and Chromium, 6 to 8 arrive. The page
    // draws at most once an animation frame, the latest reading: readings
    // that arrive while the main thread is busy (the previews' long tasks)
    // are drawn together, never queued.
    let (readings, draws) = (
        ft["readings"].as_u64().unwrap(),
        ft["draws"].as_u64().unwrap(),
    );
    assert!(readings >= 40, "{ft}");
    assert!(draws * 10 >= readings * 7, "{ft}");
    // The alarm, in the banner and the tab's title.
    assert!(
        report["alarm"].as_str().unwrap().contains("Hall camera"),
        "{report}"
    );
    assert!(
        report["title"].as_str().unwrap().starts_with('⚠'),
        "{report}"
    );
    // Stopped after a confirmation; its VOD plays; a private link minted.
    assert!(report["dialog"].as_str().unwrap().contains("Morning check"));
    let demo = report["demoId"].as_str().unwrap();
    assert_eq!(report["vod"], format!("/vod/{demo}/master.m3u8"));
    assert!(report["vodPlayed"].as_f64().unwrap() > 2.0);
    assert!(
        report["privateLink"]
            .as_str()
            .unwrap()
            .contains(&format!("/embed/{demo}?token=")),
        "{report}"
    );
    // Disk use per session, and the pin that keeps it from retention.
    assert!(report["disk"].as_str().unwrap().contains("HLS"), "{report}");
    assert_eq!(report["pinned"], true, "{report}");
    assert!(d.data.join("sessions").join(demo).join("pinned").exists());
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}
