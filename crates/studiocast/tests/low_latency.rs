//! Low-latency HLS end to end, on a live demo session (720p and 360p
//! video, binaural and stereo audio, parts of 1/3 s): playlists fetched
//! over HTTP with blocking and delta requests and parsed back with m3u8-rs,
//! the headers a CDN reads, the 400 and 503 of RFC 8216bis, the parts an
//! ended playlist lists still served after the session settles, and a
//! session whose live views freeze (the fault hook) getting 503, never an
//! unchanged 200.

mod support;

use std::time::{Duration, Instant};

use support::*;

const RENDITIONS: [&str; 4] = ["720p", "360p", "binaural", "stereo"];

fn create(d: &Daemon, pipeline: &str) -> String {
    let body = format!(r#"{{"pipeline":"{pipeline}","title":"Masterclass"}}"#);
    let r = api(d, "POST", "/api/v1/sessions", Some(&body));
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

/// A tag's attribute (`NAME=value`, quotes removed).
fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[at..];
    if let Some(quoted) = rest.strip_prefix('"') {
        return quoted.split('"').next();
    }
    Some(&rest[..rest.find(',').unwrap_or(rest.len())])
}

fn tag<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(name))
}

/// The newest listed part (msn, index) and the number of parts listed.
fn newest_part(text: &str) -> (u64, u32) {
    let mut msn: u64 = tag(text, "#EXT-X-MEDIA-SEQUENCE:")
        .and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
        .unwrap_or(0);
    if let Some(skip) = tag(text, "#EXT-X-SKIP:") {
        msn += attr(skip, "SKIPPED-SEGMENTS")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    let mut parts = 0u32;
    for l in text.lines() {
        if l.starts_with("#EXTINF") {
            msn += 1;
            parts = 0;
        } else if l.starts_with("#EXT-X-PART:") {
            parts += 1;
        }
    }
    // `parts` of segment `msn` are listed; the newest is index parts-1 (or
    // the previous segment's last when the open one has none yet).
    (msn, parts)
}

/// `(msn, part)` of the part after the newest listed.
fn next_part(text: &str) -> (u64, u32) {
    newest_part(text)
}

fn parses(text: &str) -> m3u8_rs::MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => m,
        other => panic!("not a media playlist ({other:?}): {text}"),
    }
}

#[test]
fn blocking_reload_parts_and_delta_updates_over_http() {
    let d = Daemon::start(&tmpdir("ll"));
    let id = create(&d, "demo");
    let path = |r: &str| format!("/live/{id}/{r}/index.m3u8");
    wait_for("four segments", 60, || {
        media_playlist(&get(&d, &path("720p")).text()).1.len() >= 4
    });

    for r in RENDITIONS {
        let res = get(&d, &path(r));
        assert_eq!(res.status, 200);
        // Plain reloads of an LL playlist must not be cached.
        assert!(
            res.header("cache-control")
                .unwrap_or("")
                .contains("no-cache"),
            "{r}: {:?}",
            res.headers
        );
        let text = res.text();
        let m = parses(&text);
        assert!(m.segments.len() >= 3, "{r}: {text}");
        let part_inf = tag(&text, "#EXT-X-PART-INF:").unwrap_or_else(|| panic!("{text}"));
        let part_target: f64 = attr(part_inf, "PART-TARGET").unwrap().parse().unwrap();
        // 1/3 s, on the AAC frame grid: 16 × 1024 samples at 48 kHz, + 1 ms.
        assert!((0.2..=0.345).contains(&part_target), "{part_inf}");
        let control = tag(&text, "#EXT-X-SERVER-CONTROL:").unwrap();
        assert_eq!(attr(control, "CAN-BLOCK-RELOAD"), Some("YES"));
        let hold: f64 = attr(control, "PART-HOLD-BACK").unwrap().parse().unwrap();
        assert!(hold >= 3.0 * part_target, "{control}");
        assert!(attr(control, "CAN-SKIP-UNTIL").is_some(), "{control}");
        assert!(
            tag(&text, "#EXT-X-PRELOAD-HINT:TYPE=PART").is_some(),
            "{text}"
        );
        // A report for each sibling rendition, none for itself.
        for other in RENDITIONS {
            let report = format!("#EXT-X-RENDITION-REPORT:URI=\"../{other}/index.m3u8\"");
            assert_eq!(text.contains(&report), other != r, "{r} / {other}: {text}");
        }
        // Parts: INDEPENDENT on video parts that start with a key frame
        // (each segment's first), every one listed no longer than the target.
        for l in text.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
            let dur: f64 = attr(l, "DURATION").unwrap().parse().unwrap();
            assert!(dur <= part_target + 1e-3, "{l}");
            if r.ends_with('p') && attr(l, "URI").unwrap().ends_with(".p0.m4s") {
                assert_eq!(attr(l, "INDEPENDENT"), Some("YES"), "{l}");
            }
        }
    }

    // A blocking reload for the next part returns as soon as it is out: at
    // most a part (1/3 s) away, with slack for a debug build and a busy
    // machine; never the playlist without it.
    let text = get(&d, &path("720p")).text();
    let (msn, part) = next_part(&text);
    let t = Instant::now();
    let res = get(
        &d,
        &format!("{}?_HLS_msn={msn}&_HLS_part={part}", path("720p")),
    );
    let waited = t.elapsed();
    assert_eq!(res.status, 200);
    let got = res.text();
    let (msn2, parts2) = newest_part(&got);
    assert!(
        (msn2, parts2) > (msn, part),
        "asked for {msn}.{part}, got a playlist up to {msn2}.{parts2}"
    );
    assert!(waited < Duration::from_millis(1500), "{waited:?}");
    // Blocking responses may be cached briefly (the spec's CDN advice).
    assert!(
        res.header("cache-control")
            .unwrap_or("")
            .contains("max-age"),
        "{:?}",
        res.headers
    );
    eprintln!("blocking reload for the next part answered after {waited:?}");

    // The part itself: immutable, with its length.
    let uri = format!("seg{msn:06}.p{part}.m4s");
    let part_res = get(&d, &format!("/live/{id}/720p/{uri}"));
    assert_eq!(part_res.status, 200, "{uri}");
    assert!(part_res
        .header("cache-control")
        .unwrap()
        .contains("immutable"));
    assert_eq!(
        part_res
            .header("content-length")
            .map(|v| v.parse::<usize>().unwrap()),
        Some(part_res.body.len())
    );
    assert!(part_res.body.len() > 100);

    // The preload hint's part, asked before it exists, arrives when it does.
    let text = get(&d, &path("binaural")).text();
    let hint = tag(&text, "#EXT-X-PRELOAD-HINT:").unwrap();
    let hinted = attr(hint, "URI").unwrap().to_string();
    let t = Instant::now();
    let res = get(&d, &format!("/live/{id}/binaural/{hinted}"));
    assert_eq!(res.status, 200, "{hinted}");
    assert!(res.body.len() > 50);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );

    // Three segments ahead: 400, at once.
    let t = Instant::now();
    let res = get(
        &d,
        &format!("{}?_HLS_msn={}&_HLS_part=0", path("720p"), msn + 3),
    );
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(t.elapsed() < Duration::from_secs(1));

    // Delta update: once segments end more than CAN-SKIP-UNTIL (12 s)
    // before the live edge, `_HLS_skip=YES` replaces them with EXT-X-SKIP
    // (VERSION 9): a small reload however long the DVR window grows.
    wait_for("nine segments", 40, || {
        media_playlist(&get(&d, &path("720p")).text()).1.len() >= 9
    });
    let full = get(&d, &path("720p")).text();
    let res = get(&d, &format!("{}?_HLS_skip=YES", path("720p")));
    assert_eq!(res.status, 200);
    let delta = res.text();
    parses(&delta);
    let skip = tag(&delta, "#EXT-X-SKIP:").unwrap_or_else(|| panic!("no skip: {delta}"));
    let skipped: u64 = attr(skip, "SKIPPED-SEGMENTS").unwrap().parse().unwrap();
    assert!(skipped >= 1, "{skip}");
    assert!(delta.contains("#EXT-X-VERSION:9"), "{delta}");
    assert!(
        delta.len() < full.len(),
        "{} >= {}",
        delta.len(),
        full.len()
    );
    // The delta lists the same live edge (its newest part).
    let (m1, p1) = newest_part(&full);
    let (m2, p2) = newest_part(&delta);
    assert!((m2, p2) >= (m1, p1), "{m2}.{p2} < {m1}.{p1}");

    // The master playlist: both rungs with their bandwidth (the preset's
    // bitrates while live; the VOD master has the measured ones), exact
    // codecs from each encoder's avcC, resolution and frame rate.
    let master = get(&d, &format!("/live/{id}/master.m3u8")).text();
    let variants: Vec<&str> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    // Any player's master: each rung with the AAC group; the embedded
    // player's: then once more with the head-tracked (Opus) one.
    assert_eq!(variants.len(), 2, "{master}");
    let player = get(&d, &format!("/live/{id}/master-player.m3u8")).text();
    let all: Vec<&str> = player
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    assert_eq!(all.len(), 4, "{player}");
    assert_eq!(&all[..2], &variants[..], "{player}");
    for (i, v) in all.iter().enumerate() {
        let codecs = attr(v, "CODECS").unwrap();
        let (audio, group) = match i {
            0 | 1 => ("mp4a.40.2", "audio"),
            _ => ("opus", "audio-opus-4ch"),
        };
        assert!(codecs.contains("avc1.") && codecs.ends_with(audio), "{v}");
        assert_eq!(attr(v, "AUDIO"), Some(group), "{v}");
        assert!(attr(v, "RESOLUTION").is_some() && attr(v, "FRAME-RATE").is_some());
        assert!(attr(v, "BANDWIDTH").unwrap().parse::<u64>().unwrap() > 0);
    }
    assert!(master.contains("RESOLUTION=1280x720") && master.contains("RESOLUTION=640x360"));
    // The head-tracked rendition, live: four channels of Opus in order
    // (W, Y, Z, X as mapping family 255: no pair of them coupled).
    let streams = ffprobe_streams(&d.url(&format!("/live/{id}/ambisonic/index.m3u8")));
    let a = &streams[0];
    assert_eq!(
        (a["codec_name"].as_str(), a["channels"].as_u64()),
        (Some("opus"), Some(4)),
        "{a}"
    );

    // The end. A player that read the playlist just before the stop, and
    // one that reads the ended playlist after it, fetch the parts these
    // list once the session has settled: from memory (the disk holds no
    // parts) for three target durations (6 s), then the disk's ended
    // playlists, which list none.
    let before = get(&d, &path("720p")).text();
    let newest_uri = |text: &str| {
        let l = text.lines().rfind(|l| l.starts_with("#EXT-X-PART:"));
        attr(l.unwrap_or_else(|| panic!("no part: {text}")), "URI")
            .unwrap()
            .to_string()
    };
    let held = newest_uri(&before);
    let stop = api(&d, "POST", &format!("/api/v1/sessions/{id}/stop"), None);
    assert_eq!(stop.status, 200, "{}", stop.text());
    // The stop answers once the session has settled.
    let state = api(&d, "GET", &format!("/api/v1/sessions/{id}"), None).json();
    assert_eq!(state["state"], "ended", "{state}");
    let settled = Instant::now();
    let part = |uri: &str| {
        let res = get(&d, &format!("/live/{id}/720p/{uri}"));
        assert_eq!(res.status, 200, "{uri} after the end: {}", res.text());
    };
    part(&held);
    let ended = get(&d, &path("720p")).text();
    assert!(ended.contains("#EXT-X-ENDLIST"), "{ended}");
    parses(&ended);
    part(&newest_uri(&ended));
    assert!(
        settled.elapsed() < Duration::from_secs(5),
        "{:?}",
        settled.elapsed()
    );
    wait_for("the disk's ended playlist", 15, || {
        !get(&d, &path("720p")).text().contains("#EXT-X-PART:")
    });
    let disk = get(&d, &path("720p")).text();
    assert!(disk.contains("#EXT-X-ENDLIST"), "{disk}");
    assert!(
        settled.elapsed() >= Duration::from_secs(5),
        "the views went after {:?}",
        settled.elapsed()
    );
    d.terminate();
}

#[test]
fn a_reload_that_cannot_be_met_gets_503_not_an_unchanged_playlist() {
    let dir = tmpdir("ll-freeze");
    let pipelines = presets_with(&dir, &[("frozen", demo_named("frozen"))]);
    let d = Daemon::start_with(
        &dir.join("data"),
        &pipelines,
        &[("STUDIOCAST_FAULT_FREEZE_LIVE", "frozen:9")],
    );
    let id = create(&d, "frozen");
    let path = format!("/live/{id}/720p/index.m3u8");
    wait_for("two segments", 40, || {
        media_playlist(&get(&d, &path).text()).1.len() >= 2
    });
    // Wait for the freeze: the playlist stops changing.
    let mut last = get(&d, &path).text();
    wait_for("the live views to freeze", 30, || {
        std::thread::sleep(Duration::from_millis(1000));
        let now = get(&d, &path).text();
        let same = now == last;
        last = now;
        same
    });
    let (msn, part) = next_part(&last);
    let t = Instant::now();
    let res = get(&d, &format!("{path}?_HLS_msn={msn}&_HLS_part={part}"));
    let waited = t.elapsed();
    assert_eq!(
        res.status,
        503,
        "a blocking reload that cannot be met: {}",
        res.text()
    );
    // About three target durations (2 s), as the README says.
    assert!(
        waited >= Duration::from_secs(5) && waited <= Duration::from_secs(8),
        "{waited:?}"
    );
    assert!(res
        .header("cache-control")
        .unwrap_or("")
        .contains("no-store"));
    // The session itself is still there (only its live views froze).
    let s = api(&d, "GET", &format!("/api/v1/sessions/{id}"), None).json();
    assert_eq!(s["state"], "live", "{s}");
}
