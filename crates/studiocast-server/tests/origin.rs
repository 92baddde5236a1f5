//! The HLS origin in process against a temporary data folder: headers,
//! ranges, validators, symlinks and traversal.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{get, send, Answer, Fake, TempDir};
use studiocast_server::router;

const SEGMENT: &[u8] = b"0123456789abcdefghij";

/// A data folder with one session's live and VOD files, below a parent
/// that also holds a secret outside the data folder.
struct Fixture {
    root: TempDir,
    app: axum::Router,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let root = TempDir::new(tag);
        let data = root.path().join("data");
        let hls = data.join("sessions/s1/hls");
        std::fs::create_dir_all(hls.join("video")).unwrap();
        let files: [(&str, &[u8]); 6] = [
            ("master.m3u8", b"#EXTM3U\n#live-master\n"),
            ("master-vod.m3u8", b"#EXTM3U\n#vod-master\n"),
            ("video/live.m3u8", b"#EXTM3U\n#live-media\n"),
            ("video/vod.m3u8", b"#EXTM3U\n#vod-media\n#EXT-X-ENDLIST\n"),
            ("video/init.mp4", b"ftyp-init"),
            ("video/seg1.m4s", SEGMENT),
        ];
        for (name, body) in files {
            std::fs::write(hls.join(name), body).unwrap();
        }
        let app = router(common::config(&data), Fake::new());
        Fixture { root, app }
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn hls(&self) -> PathBuf {
        self.data().join("sessions/s1/hls")
    }

    async fn get(&self, uri: &str) -> Answer {
        send(&self.app, get(uri)).await
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        send(&self.app, req).await
    }
}

fn with_header(uri: &str, name: &str, value: &str) -> Request<Body> {
    Request::get(uri)
        .header(name, value)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn content_types_and_cache_headers() {
    let fx = Fixture::new("types");
    let immutable = "public, max-age=31536000, immutable";
    let cases = [
        (
            "/live/s1/master.m3u8",
            "application/vnd.apple.mpegurl",
            "no-cache",
            "#live-master",
        ),
        (
            "/live/s1/video/index.m3u8",
            "application/vnd.apple.mpegurl",
            "no-cache",
            "#live-media",
        ),
        (
            "/vod/s1/master.m3u8",
            "application/vnd.apple.mpegurl",
            "public, max-age=300",
            "#vod-master",
        ),
        (
            "/vod/s1/video/index.m3u8",
            "application/vnd.apple.mpegurl",
            "public, max-age=300",
            "#vod-media",
        ),
        (
            "/live/s1/video/init.mp4",
            "video/mp4",
            immutable,
            "ftyp-init",
        ),
        (
            "/vod/s1/video/init.mp4",
            "video/mp4",
            immutable,
            "ftyp-init",
        ),
        (
            "/live/s1/video/seg1.m4s",
            "video/iso.segment",
            immutable,
            "0123",
        ),
        (
            "/vod/s1/video/seg1.m4s",
            "video/iso.segment",
            immutable,
            "0123",
        ),
    ];
    for (uri, ctype, cache, content) in cases {
        let a = fx.get(uri).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert_eq!(a.header("content-type"), Some(ctype), "{uri}");
        assert_eq!(a.header("cache-control"), Some(cache), "{uri}");
        assert_eq!(a.header("accept-ranges"), Some("bytes"), "{uri}");
        assert!(a.header("etag").is_some(), "{uri}");
        assert!(a.text().contains(content), "{uri}: {}", a.text());
    }
    for uri in [
        "/live/s1/nothing.m3u8",
        "/live/s2/master.m3u8",
        "/vod/s1/audio/seg1.m4s",
    ] {
        assert_eq!(fx.get(uri).await.status, StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn ranges_get_206_or_416() {
    let fx = Fixture::new("range");
    let uri = "/vod/s1/video/seg1.m4s";
    let a = fx.send(with_header(uri, "range", "bytes=2-5")).await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(a.header("content-range"), Some("bytes 2-5/20"));
    assert_eq!(a.header("content-length"), Some("4"));
    assert_eq!(a.body, b"2345");
    assert_eq!(a.header("content-type"), Some("video/iso.segment"));
    assert!(a.header("etag").is_some());

    let a = fx.send(with_header(uri, "range", "bytes=-3")).await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(a.body, b"hij");

    for bad in ["bytes=100-200", "bytes=20-"] {
        let a = fx.send(with_header(uri, "range", bad)).await;
        assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(a.header("content-range"), Some("bytes */20"), "{bad}");
        assert!(!a.text().contains("0123"), "{bad}");
    }
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let fx = Fixture::new("head");
    let req = Request::head("/live/s1/video/seg1.m4s")
        .body(Body::empty())
        .unwrap();
    let a = fx.send(req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-length"), Some("20"));
    assert_eq!(a.header("content-type"), Some("video/iso.segment"));
    assert!(a.header("etag").is_some());
    assert!(a.body.is_empty(), "HEAD sent {} bytes", a.body.len());
}

#[tokio::test]
async fn etag_and_if_none_match_give_304() {
    let fx = Fixture::new("etag");
    let uri = "/live/s1/video/index.m3u8";
    let first = fx.get(uri).await;
    let etag = first.header("etag").unwrap().to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );

    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".into(),
    ] {
        let a = fx.send(with_header(uri, "if-none-match", &inm)).await;
        assert_eq!(a.status, StatusCode::NOT_MODIFIED, "{inm}");
        assert!(a.body.is_empty());
        assert_eq!(a.header("etag"), Some(etag.as_str()));
        assert_eq!(a.header("cache-control"), Some("no-cache"));
    }
    // A different tag is a full answer, even with a date that alone would
    // say "not modified" (the tag decides, RFC 9110 §13.2.2).
    let req = Request::get(uri)
        .header("if-none-match", "\"other\"")
        .header("if-modified-since", "Sun, 06 Nov 2044 08:49:37 GMT")
        .body(Body::empty())
        .unwrap();
    let a = fx.send(req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text().contains("#live-media"));

    // The packager rewrites the playlist: the tag changes, the old one misses.
    std::fs::write(fx.hls().join("video/live.m3u8"), "#EXTM3U\n#live-media-2\n").unwrap();
    let a = fx.send(with_header(uri, "if-none-match", &etag)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_ne!(a.header("etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn if_range_honours_the_range_only_for_the_current_tag() {
    let fx = Fixture::new("if-range");
    let uri = "/vod/s1/video/seg1.m4s";
    let etag = fx.get(uri).await.header("etag").unwrap().to_string();
    let ranged = |if_range: &str| {
        Request::get(uri)
            .header("range", "bytes=0-3")
            .header("if-range", if_range)
            .body(Body::empty())
            .unwrap()
    };
    let a = fx.send(ranged(&etag)).await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(a.body, b"0123");
    let a = fx.send(ranged("\"stale\"")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, SEGMENT);
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[tokio::test]
async fn symlinks_below_the_session_folder_are_never_followed() {
    let fx = Fixture::new("symlink");
    let inside = fx.data().join("inside-secret.txt");
    let outside = fx.root.path().join("outside-secret.txt");
    std::fs::write(&inside, "SECRET-INSIDE").unwrap();
    std::fs::write(&outside, "SECRET-OUTSIDE").unwrap();
    let hls = fx.hls();
    // Segment files pointing at secrets.
    symlink(&inside, &hls.join("video/seg2.m4s"));
    symlink(&outside, &hls.join("video/seg3.m4s"));
    symlink(
        Path::new("../../../inside-secret.txt"),
        &hls.join("video/seg4.m4s"),
    );
    // A playlist pointing at a secret.
    std::fs::remove_file(hls.join("master-vod.m3u8")).unwrap();
    symlink(&outside, &hls.join("master-vod.m3u8"));
    // Folders pointing elsewhere: a rendition, a session's hls/, a session.
    let elsewhere = fx.root.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("hls/video")).unwrap();
    std::fs::write(elsewhere.join("hls/video/seg1.m4s"), "SECRET-DIR").unwrap();
    std::fs::write(elsewhere.join("hls/master.m3u8"), "SECRET-DIR").unwrap();
    symlink(&elsewhere.join("hls/video"), &hls.join("audio"));
    let s2 = fx.data().join("sessions/s2");
    std::fs::create_dir_all(&s2).unwrap();
    symlink(&elsewhere.join("hls"), &s2.join("hls"));
    symlink(&elsewhere, &fx.data().join("sessions/s3"));

    for uri in [
        "/live/s1/video/seg2.m4s",
        "/live/s1/video/seg3.m4s",
        "/vod/s1/video/seg4.m4s",
        "/vod/s1/master.m3u8",
        "/live/s1/audio/seg1.m4s",
        "/live/s2/video/seg1.m4s",
        "/live/s2/master.m3u8",
        "/live/s3/video/seg1.m4s",
        "/vod/s3/master.m3u8",
    ] {
        for req in [get(uri), Request::head(uri).body(Body::empty()).unwrap()] {
            let a = fx.send(req).await;
            assert_eq!(a.status, StatusCode::NOT_FOUND, "{uri}");
            assert!(!a.text().contains("SECRET"), "{uri} leaked: {}", a.text());
        }
    }
    // The real files next to them are still served.
    assert_eq!(
        fx.get("/live/s1/video/seg1.m4s").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_symlinked_data_dir_is_the_operators_choice() {
    let fx = Fixture::new("linked-data");
    let link = fx.root.path().join("data-link");
    symlink(&fx.data(), &link);
    let app = router(common::config(&link), Fake::new());
    let a = send(&app, get("/live/s1/video/seg1.m4s")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, SEGMENT);
}

#[tokio::test]
async fn a_fifo_in_place_of_a_segment_is_refused_at_once() {
    use rustix::fs::{mknodat, open, FileType, Mode, OFlags, CWD};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let fx = Fixture::new("fifo");
    let fifo = fx.hls().join("video/seg9.m4s");
    mknodat(CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
    // Opening a FIFO for reading blocks until a writer comes: served, it
    // would hang the request and a blocking thread forever. Should the
    // server ever open it, this thread plays the writer, so that the test
    // fails on the answer instead of hanging the runtime's shutdown.
    let done = Arc::new(AtomicBool::new(false));
    let unstick = {
        let (done, fifo) = (done.clone(), fifo.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                // Non-blocking: fails (ENXIO) until somebody reads.
                if open(&fifo, OFlags::WRONLY | OFlags::NONBLOCK, Mode::empty()).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        })
    };
    let t = Instant::now();
    let a = fx.get("/live/s1/video/seg9.m4s").await;
    let took = t.elapsed();
    done.store(true, Ordering::Relaxed);
    let opened = unstick.join().unwrap();
    assert!(
        !opened,
        "the server opened the FIFO (answered {} after {took:?})",
        a.status
    );
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(took < Duration::from_secs(2), "{took:?}");
}

const BAIT: &str = "BAIT-SECRET";

/// Bait files exactly where a naive join of the request path would land.
fn plant_bait(fx: &Fixture) {
    let data = fx.data();
    let hls = fx.hls();
    let places = [
        data.join("secret.m4s"),
        data.join("sessions/secret.m4s"),
        data.join("sessions/s1/secret.m4s"),
        data.join("sessions/s1/session.json"),
        hls.join("secret.m4s"),
        hls.join("video/notes.txt"),
        hls.join("video/.hidden.m4s"),
        fx.root.path().join("outside.m4s"),
    ];
    for p in places {
        std::fs::write(&p, format!("{BAIT} {}", p.display())).unwrap();
    }
}

/// Request paths (below `/live/s1/` and the like) that name the bait.
fn probes() -> Vec<String> {
    let ups = [
        "../",
        "..%2f",
        "..%2F",
        "%2e%2e%2f",
        "%2E%2E%2F",
        "%2e%2e/",
        ".%2e/",
        "%2e./",
        "%252e%252e%252f",
        "..%252f",
        "..\\",
        "..%5c",
        "..%5C",
        "%2e%2e%5c",
        "..%255c",
        "..%c0%af",
        "....//",
    ];
    let targets = [
        "secret.m4s",
        "session.json",
        "sessions/secret.m4s",
        "sessions/s1/session.json",
        "sessions/s1/hls/secret.m4s",
        "outside.m4s",
        "data/secret.m4s",
    ];
    let mut out: Vec<String> = vec![
        // Names a naive `join` would serve without any traversal.
        "secret.m4s".into(),
        "session.json".into(),
        "video/notes.txt".into(),
        "video/.hidden.m4s".into(),
        "sessions/s1/session.json".into(),
        "sessions/secret.m4s".into(),
        "/secret.m4s".into(),
        "%2fsecret.m4s".into(),
        "video//secret.m4s".into(),
        "./secret.m4s".into(),
        "video/./notes.txt".into(),
    ];
    for up in ups {
        for depth in 1..=5 {
            for t in targets {
                let climb = up.repeat(depth);
                out.push(format!("{climb}{t}"));
                out.push(format!("video/{climb}{t}"));
                // NUL tricks: a name that ends like a segment after a NUL.
                out.push(format!("{climb}{t}%00.m4s"));
                out.push(format!("video/{climb}{t}%00/init.mp4"));
            }
        }
    }
    out
}

#[tokio::test]
async fn traversal_never_reaches_the_bait() {
    let fx = Fixture::new("traversal");
    plant_bait(&fx);
    let prefixes = [
        "/live/s1/",
        "/vod/s1/",
        "/live/s1/./",
        "/live/%2e%2e/",
        "/vod/..%2f/",
        "/live/s1%2f..%2f..%2f/",
        "/vod/s1%00/",
    ];
    let mut tried = 0;
    let mut unparsable = 0;
    let mut leaks = Vec::new();
    for prefix in prefixes {
        for p in probes() {
            let uri = format!("{prefix}{p}");
            // Some of these are not even valid URIs (a raw backslash);
            // hyper would refuse them before any route, so skip them here.
            let Ok(req) = Request::get(uri.as_str()).body(Body::empty()) else {
                unparsable += 1;
                continue;
            };
            tried += 1;
            let a = fx.send(req).await;
            if a.text().contains(BAIT) || a.status.is_success() {
                leaks.push(format!("{uri} -> {} {}", a.status, a.text()));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} of {tried} probes leaked:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    eprintln!("{tried} traversal probes, all refused ({unparsable} not valid URIs)");
    // The fixture is live: the same session's real files are served.
    assert_eq!(
        fx.get("/live/s1/video/seg1.m4s").await.status,
        StatusCode::OK
    );
}
