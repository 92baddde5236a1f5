//! `/metrics`: `promtool check metrics` (Debian's prometheus package,
//! unpacked by scripts/setup.sh) accepts the scrape, and the counters move
//! as a session runs and a viewer fetches its playlists and parts; on the
//! main address it takes a token of scope `metrics`, on `metrics_listen`
//! none.

mod support;

use std::process::{Command, Stdio};

use support::*;

fn promtool() -> std::path::PathBuf {
    let p = repo().join(".tools/prometheus/usr/bin/promtool");
    assert!(p.exists(), "promtool missing: run scripts/setup.sh");
    p
}

/// Every sample of `name` with all of `labels`, summed.
fn value(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let head = l.split([' ', '{']).next().unwrap_or("");
            head == name && labels.iter().all(|x| l.contains(x))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(addr: &str) -> String {
    let r = request(addr, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.contains("version=0.0.4")),
        "{:?}",
        r.headers
    );
    r.text()
}

fn check_with_promtool(text: &str) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_scrape_and_the_counters_move() {
    let dir = tmpdir("metrics");
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let (scraper, block) = {
        let out = Command::new(env!("CARGO_BIN_EXE_studiocast"))
            .args([
                "token",
                "new",
                "--name",
                "prometheus",
                "--scopes",
                "metrics",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (s, b) = text.split_once('\n').unwrap();
        (s.to_string(), b.to_string())
    };
    let d = Daemon::start_configured(
        &dir.join("data"),
        &repo().join("pipelines"),
        &[],
        None,
        Some(&format!(
            "[server]\nmetrics_listen = \"{metrics_addr}\"\n\n{block}"
        )),
    );
    // On the main address: the scope, not just any token.
    let r = request(&d.addr, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 401);
    let auth = format!("Bearer {scraper}");
    let r = request(&d.addr, "GET", "/metrics", &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let before = scrape(&metrics_addr);
    check_with_promtool(&before);
    let id = start_live(&d, "demo");
    wait_for("two segments", 30, || last_segment(&d, &id, "360p") >= 2);
    // A viewer: the master, a media playlist and its parts, twice.
    for _ in 0..2 {
        let master = get(&d, &format!("/live/{id}/master.m3u8"));
        assert_eq!(master.status, 200);
        let media = get(&d, &format!("/live/{id}/360p/index.m3u8")).text();
        for seg in media.lines().filter(|l| l.ends_with(".m4s")).take(2) {
            assert_eq!(get(&d, &format!("/live/{id}/360p/{seg}")).status, 200);
        }
    }
    // A playlist of a session that does not exist counts no viewer.
    assert_eq!(get(&d, "/live/ffff0000ffff0000/master.m3u8").status, 404);
    let first = scrape(&metrics_addr);
    check_with_promtool(&first);
    assert!(!first.contains("ffff0000ffff0000"), "{first}");
    let sid = format!("session=\"{id}\"");
    assert_eq!(
        value(&first, "studiocast_sessions", &["state=\"live\""]),
        1.0,
        "{first}"
    );
    assert_eq!(value(&first, "studiocast_viewers", &[&sid]), 1.0, "{first}");
    let segs = value(
        &first,
        "studiocast_segments_published",
        &[&sid, "rendition=\"360p\""],
    );
    assert!(segs >= 2.0, "{first}");
    assert!(
        value(
            &first,
            "studiocast_parts_published",
            &[&sid, "rendition=\"360p\""]
        ) >= 6.0
    );
    let live_route = "route=\"/live/{id}/{*path}\"";
    let served = value(
        &first,
        "studiocast_http_requests_total",
        &[live_route, "status=\"200\""],
    );
    assert!(served >= 6.0, "{first}");
    assert!(
        value(
            &first,
            "studiocast_http_response_bytes_total",
            &[live_route]
        ) > 10_000.0
    );
    assert!(
        value(
            &first,
            "studiocast_http_request_duration_seconds_count",
            &[live_route]
        ) >= 6.0
    );
    assert!(value(&first, "studiocast_disk_free_bytes", &[]) > 0.0);
    // The demo's synthetic audio has no interface: no xruns, but the
    // session's series are there.
    assert!(
        first.contains(&format!("studiocast_session_video_lag_seconds{{{sid}}}")),
        "{first}"
    );
    // A blocking reload waits meanwhile, and more segments come.
    // A part of the segment after the one in progress: seconds away.
    let next = last_segment(&d, &id, "360p") + 2;
    let waiter = {
        let addr = d.addr.clone();
        let path = format!("/live/{id}/360p/index.m3u8?_HLS_msn={next}&_HLS_part=0");
        std::thread::spawn(move || request(&addr, "GET", &path, &[], b"").status)
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let during = scrape(&metrics_addr);
    assert!(
        value(&during, "studiocast_blocking_requests_waiting", &[]) >= 1.0,
        "{during}"
    );
    assert_eq!(waiter.join().unwrap(), 200);
    wait_for("a later segment", 10, || {
        last_segment(&d, &id, "360p") > next
    });
    let later = scrape(&metrics_addr);
    assert!(
        value(
            &later,
            "studiocast_segments_published",
            &[&sid, "rendition=\"360p\""]
        ) > segs,
        "{later}"
    );
    assert_eq!(
        value(&later, "studiocast_blocking_requests_waiting", &[]),
        0.0
    );
    api(&d, "POST", &format!("/api/v1/sessions/{id}/stop"), None);
    let after = scrape(&metrics_addr);
    check_with_promtool(&after);
    assert_eq!(
        value(&after, "studiocast_sessions", &["state=\"ended\""]),
        1.0,
        "{after}"
    );
    d.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}
