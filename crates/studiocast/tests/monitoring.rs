//! What the technician watches: the meters WebSocket (token, levels, close
//! at the end) and the disk-space guard (a start refused on a nearly full
//! disk; a recording stopped, not the stream, when the disk fills).

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn create(d: &Daemon, pipeline: &str) -> support::Response {
    api(
        d,
        "POST",
        "/api/v1/sessions",
        Some(&format!(r#"{{"pipeline":"{pipeline}","title":"Check"}}"#)),
    )
}

fn ws_connect(
    d: &Daemon,
    path: &str,
) -> Result<
    tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    tungstenite::Error,
> {
    tungstenite::connect(format!("ws://{}{path}", d.addr)).map(|(s, _)| s)
}

#[test]
fn meters_stream_levels_over_a_websocket_with_the_token() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = Daemon::start(&tmpdir("meters"));
    let r = create(&d, "demo");
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    wait_for("live", 30, || {
        api(&d, "GET", &format!("/api/v1/sessions/{id}"), None).json()["state"] == "live"
    });
    // Encoder load: the video leaves a steady, small lag behind the clock.
    wait_for("a video fragment", 20, || {
        api(&d, "GET", &format!("/api/v1/sessions/{id}"), None).json()["inputs"]["video_lag_ms"]
            .as_i64()
            .unwrap_or(0)
            > 0
    });
    // The README says about 40 ms for 720p30 here: five readings, one per
    // fragment; their median must be near that (a noisy machine gets a
    // margin, not an order of magnitude).
    let mut lags: Vec<i64> = (0..5)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_secs(2));
            api(&d, "GET", &format!("/api/v1/sessions/{id}"), None).json()["inputs"]["video_lag_ms"]
                .as_i64()
                .unwrap()
        })
        .collect();
    lags.sort();
    eprintln!("video lag readings {lags:?} ms");
    assert!(
        (10..=120).contains(&lags[2]),
        "median video lag {} ms",
        lags[2]
    );
    let path = format!("/api/v1/sessions/{id}/meters");
    // No token, a wrong one, an unknown session.
    match ws_connect(&d, &path) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    match ws_connect(&d, &format!("{path}?token=wrong")) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    match ws_connect(
        &d,
        &format!("/api/v1/sessions/0000000000000000/meters?token={TOKEN}"),
    ) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
        other => panic!("expected 404, got {other:?}"),
    }
    let mut ws = ws_connect(&d, &format!("{path}?token={TOKEN}")).expect("meters socket");
    let t0 = Instant::now();
    let mut frames = Vec::new();
    while frames.len() < 20 {
        match ws.read().expect("a reading") {
            tungstenite::Message::Text(t) => {
                frames.push(serde_json::from_str::<serde_json::Value>(&t).unwrap())
            }
            tungstenite::Message::Close(_) => panic!("closed early"),
            _ => {}
        }
    }
    let rate = frames.len() as f64 / t0.elapsed().as_secs_f64();
    eprintln!("meters: {rate:.1} readings/s; last {}", frames[19]);
    assert!((6.0..=14.0).contains(&rate), "about 10 Hz, got {rate:.1}");
    let seqs: Vec<u64> = frames.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    let last = &frames[19]["channels"];
    let names: Vec<&str> = last
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // The synthetic third-order scene: 16 bus channels, then the binaural pair.
    assert_eq!(names.len(), 18, "{names:?}");
    assert_eq!(names[0], "bus ACN 0");
    assert_eq!(&names[16..], &["binaural L", "binaural R"]);
    // The scene is audible on W and in both ears, and nothing reads above
    // full scale.
    let loudest = |i: usize| {
        frames
            .iter()
            .map(|f| f["channels"][i]["rms_dbfs"].as_f64().unwrap())
            .fold(f64::MIN, f64::max)
    };
    for i in [0, 16, 17] {
        assert!(
            loudest(i) > -50.0,
            "channel {} too quiet: {}",
            names[i],
            loudest(i)
        );
    }
    for f in &frames {
        for c in f["channels"].as_array().unwrap() {
            let (p, r) = (
                c["peak_dbfs"].as_f64().unwrap(),
                c["rms_dbfs"].as_f64().unwrap(),
            );
            assert!(p <= 0.01 && r <= p + 1e-3 && r >= -120.0, "{c}");
        }
    }
    // Also with the header instead of the query.
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}{path}",
        d.addr
    ))
    .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut ws2, _) = tungstenite::connect(req).expect("header auth");
    assert!(matches!(ws2.read().unwrap(), tungstenite::Message::Text(_)));
    // And as a browser would: the token as the second subprotocol.
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}{path}",
        d.addr
    ))
    .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("studiocast.bearer, {TOKEN}").parse().unwrap(),
    );
    let (mut ws3, resp) = tungstenite::connect(req).expect("subprotocol auth");
    assert_eq!(
        resp.headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok()),
        Some("studiocast.bearer")
    );
    assert!(matches!(ws3.read().unwrap(), tungstenite::Message::Text(_)));
    // Stopping the session closes the socket.
    let r = api(&d, "POST", &format!("/api/v1/sessions/{id}/stop"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(_))
            | Err(tungstenite::Error::ConnectionClosed)
            | Err(tungstenite::Error::AlreadyClosed) => break,
            Ok(_) => assert!(Instant::now() < deadline, "socket still open"),
            Err(e) => panic!("{e}"),
        }
    }
    d.terminate();
}

#[test]
fn a_nearly_full_disk_refuses_starts_and_stops_recording_not_streaming() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Demand more free space than any disk has: the start is refused.
    let root = tmpdir("disk");
    let d = Daemon::start_with(
        &root.join("a"),
        &repo().join("pipelines"),
        &[("STUDIOCAST_MIN_FREE_MB", "999999999")],
    );
    let r = create(&d, "demo");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("min_free_mb"), "{}", r.text());
    assert_eq!(
        api(&d, "GET", "/api/v1/sessions", None).json(),
        serde_json::json!([]),
        "no session record for a refused start"
    );
    d.terminate();

    // Enough to start, but "full" for recording: the recording stops with
    // an alarm and the stream goes on.
    let d = Daemon::start_with(
        &root.join("b"),
        &repo().join("pipelines"),
        &[
            ("STUDIOCAST_MIN_FREE_MB", "1"),
            ("STUDIOCAST_STOP_BELOW_MB", "999999999"),
        ],
    );
    let r = create(&d, "demo");
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let status = || api(&d, "GET", &format!("/api/v1/sessions/{id}"), None).json();
    wait_for("the recording alarm", 20, || {
        status()["inputs"]["recording"]["alarm"].is_string()
    });
    let s = status();
    assert_eq!(s["inputs"]["recording"]["recording"], false, "{s}");
    assert!(
        s["inputs"]["recording"]["alarm"]
            .as_str()
            .unwrap()
            .contains("disk nearly full"),
        "{s}"
    );
    let segs = |d: &Daemon| {
        media_playlist(&get(d, &format!("/live/{id}/720p/index.m3u8")).text())
            .1
            .len()
    };
    wait_for("segments", 30, || segs(&d) >= 1);
    let playlist = || get(&d, &format!("/live/{id}/720p/index.m3u8")).text();
    let before = playlist();
    wait_for("the stream to go on", 15, || playlist() != before);
    assert_eq!(status()["state"], "live");
    let r = api(&d, "POST", &format!("/api/v1/sessions/{id}/stop"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["state"], "ended");
    // The alarm stays in the record, and the session did not fail.
    assert!(j["error"].is_null(), "{j}");
    assert!(
        j["alarms"].to_string().contains("recording stopped early"),
        "{j}"
    );
    let side: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("b/sessions").join(&id).join("master.json")).unwrap(),
    )
    .unwrap();
    assert!(side["recording_stopped_early"].is_string(), "{side}");
    d.terminate();
}
