//! Live renditions from memory, in process: playlists and files from the
//! published `LiveView`, blocking reloads, delta updates, preload-hint
//! parts, headers, and the fallback to disk.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::views::{part_bytes, part_name, segment_bytes, standard, VIDEO};
use common::{send, Answer, Fake, TempDir};
use studiocast_server::{router, LiveView, PartRef, ServerConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const PL: &str = "/live/s1/video/index.m3u8";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

struct Live {
    fake: Arc<Fake>,
    app: Router,
    dir: TempDir,
}

impl Live {
    /// A router whose blocking waits end after 1 s (playback timeout 1.5 s
    /// less the margin), so that timeouts are quick to test.
    fn new(tag: &str) -> Live {
        Live::with(tag, |cfg| {
            cfg.playback_timeout = Duration::from_millis(1500)
        })
    }

    fn with(tag: &str, tweak: impl FnOnce(&mut ServerConfig)) -> Live {
        let dir = TempDir::new(tag);
        let fake = Fake::new();
        let mut cfg = common::config(dir.path());
        tweak(&mut cfg);
        let app = router(cfg, fake.clone());
        Live { fake, app, dir }
    }

    fn publish(&self, first: LiveView) -> watch::Sender<Arc<LiveView>> {
        self.fake.publish("s1", "video", first)
    }

    async fn get(&self, uri: &str) -> Answer {
        send(&self.app, with_origin(uri)).await
    }

    /// A request left running, to be answered later.
    fn spawn(&self, uri: &str) -> JoinHandle<Answer> {
        let app = self.app.clone();
        let req = with_origin(uri);
        tokio::spawn(async move { send(&app, req).await })
    }

    fn disk(&self, rel: &str, body: &[u8]) {
        let path = self.dir.path().join("sessions/s1/hls").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
}

fn with_origin(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("origin", "https://player.example")
        .body(Body::empty())
        .unwrap()
}

fn blocking(msn: u64, part: Option<u32>) -> String {
    match part {
        Some(p) => format!("{PL}?_HLS_msn={msn}&_HLS_part={p}"),
        None => format!("{PL}?_HLS_msn={msn}"),
    }
}

/// Headers every answer from memory carries: type, length, CORS.
fn assert_common(a: &Answer, ctype: &str, what: &str) {
    assert_eq!(a.header("content-type"), Some(ctype), "{what}");
    let len = a.body.len().to_string();
    assert_eq!(a.header("content-length"), Some(len.as_str()), "{what}");
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("*"),
        "{what}: CORS"
    );
}

/// Gives a spawned request time to park, then checks it has not answered.
async fn assert_waiting(h: &JoinHandle<Answer>, what: &str) {
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!h.is_finished(), "{what}: answered without waiting");
}

async fn answered(h: JoinHandle<Answer>, within: Duration) -> Answer {
    tokio::time::timeout(within, h)
        .await
        .unwrap_or_else(|_| panic!("no answer within {within:?}"))
        .unwrap()
}

#[tokio::test]
async fn playlists_and_files_come_from_memory_with_their_headers() {
    let lv = Live::new("mem-headers");
    let _tx = lv.publish(VIDEO.at(12, 1));
    let a = lv.get(PL).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text().contains("## view 12.1"), "{}", a.text());
    assert_common(&a, "application/vnd.apple.mpegurl", "playlist");
    assert_eq!(a.header("cache-control"), Some("no-cache"));

    let cases = [
        (part_name(12, 1), "video/iso.segment", part_bytes(12, 1)),
        (
            "seg000011.m4s".to_string(),
            "video/iso.segment",
            segment_bytes(11),
        ),
        ("init.mp4".to_string(), "video/mp4", "ftyp-moov-init".into()),
    ];
    for (name, ctype, bytes) in cases {
        let a = lv.get(&format!("/live/s1/video/{name}")).await;
        assert_eq!(a.status, StatusCode::OK, "{name}");
        assert_eq!(a.body, bytes, "{name}");
        assert_common(&a, ctype, &name);
        assert_eq!(a.header("cache-control"), Some(IMMUTABLE), "{name}");
        assert_eq!(a.header("accept-ranges"), Some("bytes"), "{name}");
        assert!(
            a.header("etag").is_some_and(|t| t.starts_with('"')),
            "{name}"
        );
    }
    // HEAD: the same headers, no body.
    let req = Request::head(format!("/live/s1/video/{}", part_name(12, 0)))
        .body(Body::empty())
        .unwrap();
    let a = send(&lv.app, req).await;
    assert_eq!(a.status, StatusCode::OK);
    let len = part_bytes(12, 0).len().to_string();
    assert_eq!(a.header("content-length"), Some(len.as_str()));
    assert!(a.body.is_empty());
}

#[tokio::test]
async fn a_blocking_reload_waits_for_the_part_and_answers_when_it_is_published() {
    let lv = Live::new("block-part");
    let tx = lv.publish(VIDEO.at(12, 1));
    let h = lv.spawn(&blocking(12, Some(2)));
    assert_waiting(&h, "_HLS_part=2").await;
    // Another part of no interest does not answer it either… (here: none
    // can come between 1 and 2, so publish the same view again).
    tx.send_replace(Arc::new(VIDEO.at(12, 1)));
    assert_waiting(&h, "the same view again").await;
    let t = Instant::now();
    tx.send_replace(Arc::new(VIDEO.at(12, 2)));
    let a = answered(h, Duration::from_secs(1)).await;
    eprintln!("answered {:?} after the publish", t.elapsed());
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text().contains("## view 12.2"), "{}", a.text());
    assert_common(&a, "application/vnd.apple.mpegurl", "blocking");
    // Part target 0.5 s: three of them, rounded up.
    assert_eq!(a.header("cache-control"), Some("public, max-age=2"));

    // `_HLS_msn` alone waits for the whole segment.
    let h = lv.spawn(&blocking(12, None));
    assert_waiting(&h, "_HLS_msn=12").await;
    tx.send_replace(Arc::new(VIDEO.at(12, 2)));
    assert_waiting(&h, "_HLS_msn=12 with part 2 of 4").await;
    tx.send_replace(Arc::new(VIDEO.at(12, 3)));
    let a = answered(h, Duration::from_secs(1)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text().contains("## view 12.3"));
}

#[tokio::test]
async fn what_is_already_there_answers_at_once() {
    let lv = Live::new("block-done");
    let _tx = lv.publish(VIDEO.at(12, 1));
    for uri in [
        blocking(11, None),
        blocking(12, Some(1)),
        blocking(12, Some(0)),
        blocking(10, Some(9)),
    ] {
        let t = Instant::now();
        let a = lv.get(&uri).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "{uri}: {:?}",
            t.elapsed()
        );
        assert!(a.text().contains("## view 12.1"));
        assert_eq!(
            a.header("cache-control"),
            Some("public, max-age=2"),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn bad_directives_are_400_at_once() {
    let lv = Live::new("block-400");
    let _tx = lv.publish(VIDEO.at(12, 1));
    let cases = [
        // Three segments past the last part's segment (12): too far ahead.
        format!("{PL}?_HLS_msn=15"),
        format!("{PL}?_HLS_msn=15&_HLS_part=0"),
        format!("{PL}?_HLS_msn=99999999"),
        format!("{PL}?_HLS_part=2"),
        format!("{PL}?_HLS_msn=abc"),
        format!("{PL}?_HLS_msn=-1"),
        format!("{PL}?_HLS_msn=13&_HLS_part=x"),
        format!("{PL}?_HLS_msn=99999999999999999999999"),
        format!("{PL}?_HLS_msn=13&_HLS_msn=14"),
        format!("{PL}?_HLS_skip=NO"),
    ];
    for uri in cases {
        let t = Instant::now();
        let a = lv.get(&uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}: {}", a.text());
        assert!(t.elapsed() < Duration::from_millis(200), "{uri}");
        assert_eq!(a.header("cache-control"), Some("no-store"), "{uri}");
        assert_common(&a, "text/plain; charset=utf-8", &uri);
    }
}

#[tokio::test]
async fn nothing_published_gives_503_after_the_wait_never_a_stale_200() {
    let lv = Live::new("block-503");
    let tx = lv.publish(VIDEO.at(12, 1));
    // Two segments ahead is allowed (not 400): it waits, and nothing comes.
    for uri in [blocking(14, Some(0)), blocking(12, Some(2))] {
        let t = Instant::now();
        let a = lv.get(&uri).await;
        let took = t.elapsed();
        eprintln!("{uri}: {} after {took:?}", a.status);
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert!(took >= Duration::from_millis(950), "{uri}: {took:?}");
        assert!(took < Duration::from_millis(1400), "{uri}: {took:?}");
        assert_eq!(a.header("cache-control"), Some("no-store"));
        assert_common(&a, "text/plain; charset=utf-8", &uri);
    }
    // Views that do not satisfy it do not end the wait early either.
    let h = lv.spawn(&blocking(13, None));
    for p in 2..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send_replace(Arc::new(VIDEO.at(12, p)));
    }
    let a = answered(h, Duration::from_secs(2)).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// The limit is three target durations, and stays below the playback
/// timeout (paused time: the test runs in an instant).
#[tokio::test(start_paused = true)]
async fn the_wait_is_three_target_durations_and_ends_before_the_playback_timeout() {
    for (target, expected) in [(1, 3_000), (2, 6_000), (5, 9_500)] {
        let lv = Live::with("block-limit", |_| {});
        let stream = common::views::Stream { target, ..VIDEO };
        let _tx = lv.publish(stream.at(12, 1));
        let t = tokio::time::Instant::now();
        let a = lv.get(&blocking(13, None)).await;
        let waited = t.elapsed();
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "target {target}");
        assert_eq!(waited, Duration::from_millis(expected), "target {target}");
    }
}

#[tokio::test]
async fn a_publisher_that_goes_away_gives_503_at_once() {
    let lv = Live::new("block-gone");
    let tx = lv.publish(VIDEO.at(12, 1));
    let h = lv.spawn(&blocking(13, None));
    assert_waiting(&h, "_HLS_msn=13").await;
    let t = Instant::now();
    drop(tx);
    let a = answered(h, Duration::from_millis(500)).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    eprintln!("publisher gone: 503 after {:?}", t.elapsed());
}

#[tokio::test]
async fn an_ended_stream_answers_at_once() {
    let lv = Live::new("block-ended");
    let tx = lv.publish(VIDEO.at(12, 1));
    // A request waiting when the stream ends gets the last playlist.
    let h = lv.spawn(&blocking(13, Some(1)));
    assert_waiting(&h, "before the end").await;
    tx.send_replace(Arc::new(VIDEO.ended_at(12, 2)));
    let a = answered(h, Duration::from_millis(500)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text().contains("#EXT-X-ENDLIST"), "{}", a.text());
    // Afterwards every request answers at once, however far ahead.
    for uri in [
        blocking(13, Some(1)),
        blocking(14, Some(0)),
        blocking(99, None),
    ] {
        let t = Instant::now();
        let a = lv.get(&uri).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert!(a.text().contains("#EXT-X-ENDLIST"), "{uri}");
        assert!(t.elapsed() < Duration::from_millis(200), "{uri}");
    }
    // And no hinted part is waited for.
    let t = Instant::now();
    let a = lv
        .get(&format!("/live/s1/video/{}", part_name(12, 3)))
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(t.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn delta_updates_when_asked_and_available() {
    let lv = Live::new("skip");
    let tx = lv.publish(VIDEO.at(14, 1));
    for q in ["_HLS_skip=YES", "_HLS_skip=v2"] {
        let a = lv.get(&format!("{PL}?{q}")).await;
        assert_eq!(a.status, StatusCode::OK, "{q}");
        assert!(
            a.text().contains("#EXT-X-SKIP:SKIPPED-SEGMENTS="),
            "{q}: {}",
            a.text()
        );
        assert!(a.text().contains("## delta"), "{q}");
        assert_eq!(a.header("cache-control"), Some("no-cache"), "{q}");
        assert_common(&a, "application/vnd.apple.mpegurl", q);
    }
    // Without the directive: the full playlist.
    assert!(lv.get(PL).await.text().contains("## full"));
    // Combined with a blocking reload: waits, then the delta.
    let h = lv.spawn(&format!("{PL}?_HLS_msn=14&_HLS_part=2&_HLS_skip=YES"));
    assert_waiting(&h, "skip + block").await;
    tx.send_replace(Arc::new(VIDEO.at(14, 2)));
    let a = answered(h, Duration::from_secs(1)).await;
    assert!(a.text().contains("## delta") && a.text().contains("## view 14.2"));
    assert_eq!(a.header("cache-control"), Some("public, max-age=2"));
    // A view too short for a delta answers the full playlist.
    tx.send_replace(Arc::new(VIDEO.at(11, 0)));
    let a = lv.get(&format!("{PL}?_HLS_skip=YES")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text().contains("## full"), "{}", a.text());
}

#[tokio::test]
async fn standard_renditions_ignore_blocking_directives() {
    let lv = Live::new("standard");
    let _tx = lv.fake.publish("s1", "audio", standard(5, 8));
    let pl = "/live/s1/audio/index.m3u8";
    for q in [
        "",
        "?_HLS_msn=99&_HLS_part=3",
        "?_HLS_msn=9",
        "?_HLS_part=1",
        "?_HLS_msn=abc",
        "?_HLS_skip=YES",
        "?_HLS_skip=bogus",
    ] {
        let t = Instant::now();
        let a = lv.get(&format!("{pl}{q}")).await;
        assert_eq!(a.status, StatusCode::OK, "{q}");
        assert!(t.elapsed() < Duration::from_millis(200), "{q}: waited");
        assert!(a.text().contains("## standard 8"), "{q}");
        assert_eq!(a.header("cache-control"), Some("no-cache"), "{q}");
        assert_common(&a, "application/vnd.apple.mpegurl", q);
    }
    let a = lv.get("/live/s1/audio/seg000008.m4s").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, segment_bytes(8));
    // Nothing is hinted: the next segment is not waited for.
    let t = Instant::now();
    let a = lv.get("/live/s1/audio/seg000009.m4s").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(t.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn the_hinted_part_waits_for_its_publication() {
    let lv = Live::new("hint");
    let tx = lv.publish(VIDEO.at(12, 1));
    let next = format!("/live/s1/video/{}", part_name(12, 2));
    let h = lv.spawn(&next);
    assert_waiting(&h, "hinted part").await;
    let t = Instant::now();
    tx.send_replace(Arc::new(VIDEO.at(12, 2)));
    let a = answered(h, Duration::from_secs(1)).await;
    eprintln!(
        "hinted part answered {:?} after its publication",
        t.elapsed()
    );
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, part_bytes(12, 2));
    assert_common(&a, "video/iso.segment", "hinted part");
    assert_eq!(a.header("cache-control"), Some(IMMUTABLE));

    // The first part of the next segment may come instead of the next
    // part of this one: it waits too, across several publications.
    let first_of_next = format!("/live/s1/video/{}", part_name(13, 0));
    let h = lv.spawn(&first_of_next);
    assert_waiting(&h, "first part of the next segment").await;
    tx.send_replace(Arc::new(VIDEO.at(12, 3)));
    assert_waiting(&h, "after the segment's last part").await;
    tx.send_replace(Arc::new(VIDEO.at(13, 0)));
    let a = answered(h, Duration::from_secs(1)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, part_bytes(13, 0));
}

#[tokio::test]
async fn a_hinted_part_that_never_comes() {
    let lv = Live::new("hint-gone");
    let tx = lv.publish(VIDEO.at(12, 1));
    // Nothing published: 503 after the wait.
    let t = Instant::now();
    let a = lv
        .get(&format!("/live/s1/video/{}", part_name(12, 2)))
        .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(1400),
        "{took:?}"
    );
    // The segment ends early (at part 1) and the next one starts: the
    // awaited part will never exist, so the wait ends with the disk's 404.
    let h = lv.spawn(&format!("/live/s1/video/{}", part_name(12, 2)));
    assert_waiting(&h, "hinted part").await;
    let mut early = VIDEO.at(13, 0);
    let files = Arc::make_mut(&mut early.files);
    files.remove(&part_name(12, 2));
    files.remove(&part_name(12, 3));
    tx.send_replace(Arc::new(early));
    let a = answered(h, Duration::from_millis(500)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_first_part_of_a_stream_is_waited_for() {
    let lv = Live::new("hint-first");
    // Nothing published yet but the hint: the stream's very first part.
    let mut v = LiveView::empty("video", 2, Some(0.5));
    v.first_msn = 10;
    v.preload_hint = Some(PartRef { msn: 10, part: 0 });
    let tx = lv.publish(v);
    let h = lv.spawn(&format!("/live/s1/video/{}", part_name(10, 0)));
    assert_waiting(&h, "the first part").await;
    tx.send_replace(Arc::new(VIDEO.at(10, 0)));
    let a = answered(h, Duration::from_secs(1)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, part_bytes(10, 0));
}

#[tokio::test]
async fn unknown_files_go_to_disk_at_once() {
    let lv = Live::new("unknown");
    let _tx = lv.publish(VIDEO.at(12, 1));
    for name in [
        part_name(12, 3),
        part_name(14, 0),
        "seg000099.m4s".into(),
        "seg000013.m4s".into(),
    ] {
        let t = Instant::now();
        let a = lv.get(&format!("/live/s1/video/{name}")).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{name}");
        assert!(t.elapsed() < Duration::from_millis(200), "{name}: waited");
    }
}

#[tokio::test]
async fn the_disk_serves_what_memory_does_not_hold() {
    let lv = Live::new("fallback");
    lv.disk("master.m3u8", b"#EXTM3U\n#disk-master\n");
    lv.disk("video/live.m3u8", b"#EXTM3U\n#disk-media\n");
    lv.disk("video/seg000001.m4s", b"old DVR segment");
    lv.disk("audio/live.m3u8", b"#EXTM3U\n#disk-audio\n");
    // No view yet: everything from disk, as before.
    assert!(lv.get(PL).await.text().contains("#disk-media"));
    // An empty view (nothing published) still leaves the disk in charge.
    let tx = lv.publish(LiveView::empty("video", 2, Some(0.5)));
    assert!(lv.get(PL).await.text().contains("#disk-media"));
    tx.send_replace(Arc::new(VIDEO.at(12, 1)));
    // The view answers the playlist; the multivariant playlist, an old
    // segment and another rendition come from disk.
    assert!(lv.get(PL).await.text().contains("## view 12.1"));
    let a = lv.get("/live/s1/master.m3u8").await;
    assert!(a.text().contains("#disk-master"));
    let a = lv.get("/live/s1/video/seg000001.m4s").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, b"old DVR segment");
    assert_eq!(a.header("content-type"), Some("video/iso.segment"));
    assert_eq!(a.header("cache-control"), Some(IMMUTABLE));
    assert!(lv
        .get("/live/s1/audio/index.m3u8")
        .await
        .text()
        .contains("#disk-audio"));
    // Another session has no view: disk (none here).
    assert_eq!(
        lv.get("/live/s2/video/index.m3u8").await.status,
        StatusCode::NOT_FOUND
    );
    // VOD never asks for a view.
    let before = lv
        .fake
        .live_lookups
        .load(std::sync::atomic::Ordering::Relaxed);
    let _ = lv.get("/vod/s1/video/index.m3u8").await;
    let after = lv
        .fake
        .live_lookups
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(before, after);
}

#[tokio::test]
async fn memory_files_honour_ranges_and_validators() {
    let lv = Live::new("mem-range");
    let _tx = lv.publish(VIDEO.at(12, 1));
    let uri = format!("/live/s1/video/{}", part_name(12, 0));
    let whole = part_bytes(12, 0);
    let req = |name: &str, value: &str| {
        Request::get(&uri)
            .header(name, value)
            .body(Body::empty())
            .unwrap()
    };
    let a = send(&lv.app, req("range", "bytes=2-5")).await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(a.body, whole[2..=5]);
    let cr = format!("bytes 2-5/{}", whole.len());
    assert_eq!(a.header("content-range"), Some(cr.as_str()));
    assert_eq!(a.header("content-length"), Some("4"));
    let a = send(&lv.app, req("range", "bytes=9999-")).await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let cr = format!("bytes */{}", whole.len());
    assert_eq!(a.header("content-range"), Some(cr.as_str()));

    let etag = lv.get(&uri).await.header("etag").unwrap().to_string();
    let a = send(&lv.app, req("if-none-match", &etag)).await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    assert!(a.body.is_empty());
    assert_eq!(a.header("etag"), Some(etag.as_str()));
    assert_eq!(a.header("cache-control"), Some(IMMUTABLE));
    let a = send(&lv.app, req("if-none-match", "\"other\"")).await;
    assert_eq!(a.status, StatusCode::OK);
    // A stale If-Range gets the whole body rather than the range.
    let stale = Request::get(&uri)
        .header("range", "bytes=0-1")
        .header("if-range", "\"stale\"")
        .body(Body::empty())
        .unwrap();
    let a = send(&lv.app, stale).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, whole);
}
