//! The viewer's player page (`/embed/{id}`) and oEmbed, end to end: the
//! page's answers for every state (private without a token, unknown,
//! ended with no recording), its headers, oEmbed's answers, then headless
//! Chromium framing a private live lesson from the Campus's origin (on the
//! daemon's `embed_origins`) and from another site's (blocked), driving it
//! through the postMessage API, the audio and quality selectors and the
//! keyboard, with sound measured in the page.

mod support;

use support::*;

fn embed_report(args: &[&str]) -> serde_json::Value {
    embed_report_with(args, &[])
}

fn embed_report_with(args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let (report, _) = browser_report("embed.mjs", args, env, "embed");
    assert!(report["fatal"].is_null(), "{report}");
    report
}

fn selected(options: &serde_json::Value) -> String {
    options
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["selected"] == true)
        .map(|o| o["text"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn the_player_page_plays_a_private_lesson_for_the_campus_only() {
    let data = tmpdir("embed");
    let free_port = support::hook::Receiver::free_port;
    let (campus, other) = (free_port(), free_port());
    let campus_origin = format!("http://127.0.0.1:{campus}");
    let d = Daemon::start_with(
        &data,
        &repo().join("pipelines"),
        &[("STUDIOCAST_EMBED_ORIGINS", campus_origin.as_str())],
    );
    let r = api(
        &d,
        "POST",
        "/api/v1/sessions",
        Some(
            r#"{"pipeline":"demo","title":"Fugue </script><b>in</b> C","course":"Counterpoint 2","visibility":"private"}"#,
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let m = api(
        &d,
        "POST",
        &format!("/api/v1/sessions/{id}/playback-token"),
        None,
    );
    let token = m.json()["token"].as_str().unwrap().to_string();
    wait_for("three segments", 40, || {
        media_playlist(&get(&d, &format!("/live/{id}/720p/index.m3u8?token={token}")).text())
            .1
            .len()
            >= 3
    });

    // Without the token: a page that says so, and nothing of the lesson.
    let page = get(&d, &format!("/embed/{id}"));
    assert_eq!(page.status, 403);
    let text = page.text();
    assert!(text.contains("This lesson is private"), "{text}");
    for leak in ["Counterpoint", "Fugue", "/live/", "/vod/"] {
        assert!(!text.contains(leak), "{leak} leaked: {text}");
    }
    assert!(text.contains(r#""src":null"#), "{text}");
    // A public lesson beside it, for the other site to frame.
    let public = api(
        &d,
        "POST",
        "/api/v1/sessions",
        Some(r#"{"pipeline":"demo","title":"Open rehearsal"}"#),
    );
    assert_eq!(public.status, 201, "{}", public.text());
    let public_id = public.json()["id"].as_str().unwrap().to_string();
    let public_page = get(&d, &format!("/embed/{public_id}"));
    assert_eq!(public_page.status, 200);
    assert!(
        public_page
            .header("content-security-policy")
            .unwrap()
            .ends_with("frame-ancestors *"),
        "a public lesson may be framed anywhere"
    );
    // With it: the page, its title escaped, framed only by the Campus.
    let page = get(&d, &format!("/embed/{id}?token={token}"));
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();
    assert!(
        !html.contains("</script><b>"),
        "the title broke out: {html}"
    );
    assert!(
        html.contains("<title>Fugue &lt;/script&gt;&lt;b&gt;in&lt;/b&gt; C</title>"),
        "{html}"
    );
    assert!(
        html.contains("application/json+oembed"),
        "no oEmbed discovery link"
    );
    let csp = page.header("content-security-policy").unwrap().to_string();
    assert!(
        csp.contains(&format!("frame-ancestors 'self' {campus_origin}")),
        "{csp}"
    );
    // Unknown: 404 with a message, not a broken player.
    let gone = get(&d, "/embed/0123456789abcdef");
    assert_eq!(gone.status, 404);
    assert!(gone.text().contains("There is no lesson at this address"));
    // The page's own assets: hls.js as pinned, compressed once.
    let hls = get(&d, "/player/hls-1.6.19.min.js");
    assert_eq!(hls.status, 200);
    assert_eq!(
        hls.body,
        std::fs::read(repo().join("tests/browser/node_modules/hls.js/dist/hls.min.js")).unwrap(),
        "the served hls.js is not the one package-lock.json pins"
    );
    let gz = request(
        &d.addr,
        "GET",
        "/player/hls-1.6.19.min.js",
        &[("Accept-Encoding", "gzip, deflate, br")],
        b"",
    );
    assert_eq!(gz.header("content-encoding"), Some("deflate"));
    eprintln!(
        "hls.js: {} bytes, {} on the wire",
        hls.body.len(),
        gz.body.len()
    );
    assert!(gz.body.len() < hls.body.len() / 2);
    // Every asset's compressed form is its own (each is compressed once and
    // kept: a mix-up would serve one file's bytes for another).
    for file in [
        "player.js",
        "player.css",
        "spatial.js",
        "rotator.js",
        "hls-1.6.19.min.js",
    ] {
        let path = format!("/player/{file}");
        let raw = get(&d, &path);
        assert_eq!(raw.status, 200, "{file}");
        let z = request(
            &d.addr,
            "GET",
            &path,
            &[("Accept-Encoding", "deflate")],
            b"",
        );
        assert_eq!(z.header("content-encoding"), Some("deflate"), "{file}");
        let inflated = miniz_oxide::inflate::decompress_to_vec_zlib(&z.body).unwrap();
        assert!(
            inflated == raw.body,
            "{file}: the compressed body is another file's"
        );
    }

    // oEmbed.
    let page_url = d.url(&format!("/embed/{id}"));
    let enc = |s: &str| {
        s.replace(':', "%3A")
            .replace('/', "%2F")
            .replace('?', "%3F")
            .replace('=', "%3D")
    };
    let oembed = |url: &str, extra: &str| get(&d, &format!("/oembed?url={}{extra}", enc(url)));
    assert_eq!(oembed(&page_url, "").status, 401, "private without a token");
    let o = oembed(
        &format!("{page_url}?token={token}"),
        "&maxwidth=480&format=json",
    );
    assert_eq!(o.status, 200, "{}", o.text());
    let oj = o.json();
    assert_eq!(oj["version"], "1.0");
    assert_eq!(oj["type"], "video");
    assert_eq!(
        (oj["width"].as_u64(), oj["height"].as_u64()),
        (Some(480), Some(270))
    );
    assert_eq!(oj["title"], "Fugue </script><b>in</b> C");
    let iframe = oj["html"].as_str().unwrap().to_string();
    assert!(
        iframe.contains(&format!("src=\"{page_url}?token={token}\"")),
        "{iframe}"
    );
    assert!(iframe.contains("title=\"Fugue &lt;/script&gt;"), "{iframe}");
    assert_eq!(oembed(&page_url, "&format=xml").status, 501);
    let with_token = format!("{page_url}?token={token}");
    assert_eq!(oembed(&with_token, "&format=").status, 200, "empty is json");
    assert_eq!(oembed(&with_token, "&format=yaml").status, 400);
    assert_eq!(oembed(&d.url("/embed/0123456789abcdef"), "").status, 404);
    assert_eq!(oembed("http://elsewhere.example/embed/x", "").status, 404);

    // Chromium: the Campus frames it and drives it; another site cannot.
    let frag = data.join("oembed.html");
    std::fs::write(&frag, &iframe).unwrap();
    let report = embed_report(&[
        &d.url(""),
        &id,
        &token,
        &campus.to_string(),
        &other.to_string(),
        frag.to_str().unwrap(),
        &public_id,
    ]);
    assert_eq!(report["campusFramed"], true, "{report}");
    assert_eq!(
        report["otherFramed"], false,
        "a site not on the list framed it"
    );
    assert_eq!(report["otherPublicFramed"], true, "{report}");
    assert_eq!(
        report["otherEvents"], 0,
        "the API talked to a site off the list"
    );
    let daemon_origin = format!("http://{}", d.addr);
    assert_eq!(report["eventOrigins"], serde_json::json!([daemon_origin]));
    for e in ["ready", "play", "pause", "timeupdate", "audiochange"] {
        assert!(
            report["events"].as_array().unwrap().iter().any(|x| x == e),
            "no {e} event: {report}"
        );
    }
    let rate = report["maxTimeupdatesPerSecond"].as_u64().unwrap();
    assert!((1..=4).contains(&rate), "timeupdate at {rate}/s");
    // Sound all along: first, after the switch to stereo, after the
    // quality switch.
    for k in ["levelFirst", "levelStereo", "levelQuality"] {
        assert!(report[k].as_f64().unwrap() > 1e-3, "{k}: {report}");
    }
    let ttff = &report["ttff"];
    let (asked, shown) = (
        ttff["playAt"].as_f64().unwrap(),
        ttff["firstFrameAt"].as_f64().unwrap(),
    );
    eprintln!(
        "measured: live first frame {:.0} ms after play, {shown:.0} ms after navigation",
        shown - asked
    );
    let before = &report["before"];
    let names: Vec<&str> = before["audio"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["text"].as_str().unwrap())
        .collect();
    // The demo's three renditions across its two audio groups (the 360°
    // mode itself is head_tracking.rs's).
    assert_eq!(
        names,
        ["Binaural (headphones)", "Stereo", "360° head-tracked"],
        "{report}"
    );
    assert_eq!(selected(&before["audio"]), "Binaural (headphones)");
    assert_eq!(selected(&report["afterStereo"]["audio"]), "Stereo");
    let quality: Vec<&str> = before["quality"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["text"].as_str().unwrap())
        .collect();
    assert!(quality[0].starts_with("Auto"), "{quality:?}");
    assert_eq!(&quality[1..], ["720p", "360p"]);
    let after_q = &report["afterQuality"];
    assert!(
        !selected(&after_q["quality"]).starts_with("Auto"),
        "{report}"
    );
    assert_eq!(after_q["level"], report["qualityAsked"], "{report}");
    // The menu shows the viewer's choice at once, not the level still
    // playing until the new one's first fragment arrives.
    let shown = report["menuAfterQuality"]["quality"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["selected"] == true)
        .map(|o| o["value"].as_str().unwrap_or("").to_string());
    assert_eq!(
        shown,
        Some(report["qualityAsked"].to_string()),
        "the menu went back to the level playing: {report}"
    );
    // Live: a latency in the badge, as measured against the PDT.
    let lat = before["latency"].as_f64().unwrap();
    assert!(lat > 0.0 && lat < 10.0, "latency {lat} s");
    assert!(
        before["live"].as_str().unwrap().starts_with("LIVE"),
        "{report}"
    );
    // Shift+K on the focused player paused it; the API seek went back 6 s
    // in the DVR window.
    assert_eq!(report["afterSpace"]["paused"], true, "{report}");
    let from = report["seekFrom"].as_f64().unwrap();
    let to = report["afterSeek"]["t"].as_f64().unwrap();
    assert!(
        (from - 6.0 - to).abs() < 1.5,
        "seek from {from} landed at {to}"
    );
    // Every control is labelled.
    assert!(
        before["labels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l.is_string()),
        "{report}"
    );
    // The Campus's own frame and oEmbed's.
    assert_eq!(report["oembedPlayers"], 2, "{report}");

    // Ended with no recording: the page says so.
    let r = api(&d, "POST", &format!("/api/v1/sessions/{id}/stop"), None);
    assert_eq!(r.status, 200);
    let vod = get(&d, &format!("/embed/{id}?token={token}"));
    assert_eq!(vod.status, 200, "the recording plays: {}", vod.text());
    assert!(vod.text().contains("/vod/"), "{}", vod.text());
    // The recording in the Campus's frame: it plays, with sound.
    let report = embed_report_with(
        &[
            &d.url(""),
            &id,
            &token,
            &campus.to_string(),
            &other.to_string(),
        ],
        &[("EMBED_VOD", "1")],
    );
    assert_eq!(report["vod"]["live"], false, "{report}");
    assert!(report["vod"]["t"].as_f64().unwrap() > 1.0, "{report}");
    assert!(report["vodLevel"].as_f64().unwrap() > 1e-3, "{report}");
    assert!(
        report["vod"]["src"].as_str().unwrap().contains("/vod/"),
        "{report}"
    );
    std::fs::remove_file(data.join(format!("sessions/{id}/hls/master-vod.m3u8"))).unwrap();
    let ended = get(&d, &format!("/embed/{id}?token={token}"));
    assert_eq!(ended.status, 404);
    assert!(ended.text().contains("has ended and has no recording"));
    d.terminate();
    let _ = std::fs::remove_dir_all(&data);
}
