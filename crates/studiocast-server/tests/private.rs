//! Private lessons through the router, in process: every URL of a private
//! lesson (live from memory, live and VOD from disk, the poster, a
//! download) is 403 without a valid token for it, plays with one, and its
//! playlists hand the token on; public lessons need none; tokens are
//! minted by the control API only.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::views::{part_bytes, part_name, VIDEO};
use common::{authed, send, Answer, Fake, TempDir, TOKEN};
use studiocast_server::access::{write_access, Visibility};
use studiocast_server::{router, PlaybackKey};

const SECRET: &[u8] = b"a playback secret of some length";

struct Rig {
    fake: Arc<Fake>,
    app: Router,
    dir: TempDir,
}

impl Rig {
    fn new(tag: &str) -> Rig {
        let dir = TempDir::new(tag);
        let fake = Fake::new();
        let mut cfg = common::config(dir.path());
        cfg.playback_key = PlaybackKey::new(SECRET);
        let app = router(cfg, fake.clone());
        Rig { fake, app, dir }
    }

    /// A lesson folder with a master, a media playlist, an init, a
    /// segment, a poster and a download, as the packager leaves them.
    fn lesson(&self, id: &str, visibility: Option<Visibility>) {
        let hls = self.dir.path().join("sessions").join(id).join("hls");
        let put = |rel: &str, body: &str| {
            let p = hls.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        };
        let master = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"B\",URI=\"binaural/index.m3u8\"\n\
                      #EXT-X-STREAM-INF:BANDWIDTH=1000,AUDIO=\"a\"\nvideo/index.m3u8\n";
        put("master.m3u8", master);
        put("master-vod.m3u8", master);
        let media = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.0,\nseg000001.m4s\n";
        put("video/live.m3u8", media);
        put("video/vod.m3u8", &format!("{media}#EXT-X-ENDLIST\n"));
        put("video/init.mp4", "init");
        put("video/seg000001.m4s", "segment one");
        put("poster.jpg", "jpeg");
        put("downloads/binaural.m4a", "m4a");
        if let Some(v) = visibility {
            write_access(&hls, v).unwrap();
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        send(&self.app, Request::get(uri).body(Body::empty()).unwrap()).await
    }

    async fn mint(&self, what: &str, id: &str, body: &str) -> Answer {
        let req = authed("POST", &format!("/api/v1/{what}/{id}/playback-token"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        send(&self.app, req).await
    }
}

fn key() -> PlaybackKey {
    PlaybackKey::new(SECRET).unwrap()
}

fn now() -> u64 {
    studiocast_server::access::unix_now()
}

const URLS: [&str; 8] = [
    "/live/{id}/master.m3u8",
    "/live/{id}/video/index.m3u8",
    "/live/{id}/video/init.mp4",
    "/live/{id}/video/seg000001.m4s",
    "/vod/{id}/master.m3u8",
    "/vod/{id}/video/index.m3u8",
    "/vod/{id}/poster.jpg",
    "/vod/{id}/download/binaural.m4a",
];

fn with(url: &str, id: &str, token: Option<&str>) -> String {
    let u = url.replace("{id}", id);
    match token {
        Some(t) => format!("{u}?token={t}"),
        None => u,
    }
}

#[tokio::test]
async fn a_private_lesson_needs_its_own_valid_token_on_every_url() {
    let rig = Rig::new("private-urls");
    rig.lesson("priv1", Some(Visibility::Private));
    rig.lesson("priv2", Some(Visibility::Private));
    let good = key().mint("priv1", now() + 600);
    let expired = key().mint("priv1", now() - 1);
    let other_lesson = key().mint("priv2", now() + 600);
    let other_key = PlaybackKey::new(b"not the daemon's secret at all!!")
        .unwrap()
        .mint("priv1", now() + 600);
    let mut tampered = good.clone().into_bytes();
    tampered[0] = if tampered[0] == b'9' { b'8' } else { b'9' };
    let tampered = String::from_utf8(tampered).unwrap();
    for url in URLS {
        for (what, token) in [
            ("no token", None),
            ("an expired token", Some(expired.as_str())),
            ("another lesson's token", Some(other_lesson.as_str())),
            ("another key's token", Some(other_key.as_str())),
            ("a tampered expiry", Some(tampered.as_str())),
            ("rubbish", Some("12.zz")),
        ] {
            let a = rig.get(&with(url, "priv1", token)).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{url} with {what}");
            assert_eq!(a.text(), "forbidden\n", "{url}: no detail");
            assert_eq!(a.header("cache-control"), Some("no-store"));
        }
        let a = rig.get(&with(url, "priv1", Some(&good))).await;
        assert_eq!(a.status, StatusCode::OK, "{url} with its token");
        // Never kept by a shared cache.
        let cc = a.header("cache-control").unwrap_or("");
        assert!(!cc.contains("public"), "{url}: {cc}");
    }
    // The same URLs of a public lesson, and of one from before access
    // files: no token needed.
    rig.lesson("pub1", Some(Visibility::Public));
    rig.lesson("old1", None);
    for id in ["pub1", "old1"] {
        for url in URLS {
            let a = rig.get(&with(url, id, None)).await;
            assert_eq!(a.status, StatusCode::OK, "{url} of {id}");
        }
    }
    // A damaged access file closes the lesson.
    rig.lesson("bad1", None);
    let hls = rig.dir.path().join("sessions/bad1/hls/access.json");
    std::fs::write(hls, "{\"visibility\":\"everyone\"}").unwrap();
    let a = rig.get("/vod/bad1/master.m3u8").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn private_playlists_hand_the_token_to_every_uri() {
    let rig = Rig::new("private-playlists");
    rig.lesson("priv1", Some(Visibility::Private));
    let t = key().mint("priv1", now() + 600);
    let a = rig.get(&format!("/vod/priv1/master.m3u8?token={t}")).await;
    let text = a.text();
    assert!(
        text.contains(&format!("URI=\"binaural/index.m3u8?token={t}\"")),
        "{text}"
    );
    assert!(
        text.contains(&format!("\nvideo/index.m3u8?token={t}\n")),
        "{text}"
    );
    assert_eq!(
        a.header("content-length"),
        Some(text.len().to_string().as_str())
    );
    let a = rig
        .get(&format!("/live/priv1/video/index.m3u8?token={t}"))
        .await;
    let text = a.text();
    assert!(
        text.contains(&format!("URI=\"init.mp4?token={t}\"")),
        "{text}"
    );
    assert!(
        text.contains(&format!("\nseg000001.m4s?token={t}\n")),
        "{text}"
    );
    // A range of a private playlist is the whole rewritten playlist.
    let req = Request::get(format!("/vod/priv1/video/index.m3u8?token={t}"))
        .header("range", "bytes=0-9")
        .body(Body::empty())
        .unwrap();
    let a = send(&rig.app, req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text().contains("?token="), "{}", a.text());
    // HEAD gives the rewritten length.
    let req = Request::head(format!("/vod/priv1/video/index.m3u8?token={t}"))
        .body(Body::empty())
        .unwrap();
    let h = send(&rig.app, req).await;
    let full = rig
        .get(&format!("/vod/priv1/video/index.m3u8?token={t}"))
        .await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(
        h.header("content-length"),
        Some(full.body.len().to_string().as_str())
    );
    // A public lesson's playlist is served as it is.
    rig.lesson("pub1", Some(Visibility::Public));
    let a = rig
        .get(&format!("/vod/pub1/video/index.m3u8?token={t}"))
        .await;
    assert!(!a.text().contains("token"), "{}", a.text());
}

#[tokio::test]
async fn a_private_live_rendition_from_memory_checks_the_token_and_blocks_with_it() {
    let rig = Rig::new("private-live");
    rig.lesson("s1", Some(Visibility::Private));
    let _tx = rig.fake.publish("s1", "video", VIDEO.at(12, 1));
    let t = key().mint("s1", now() + 600);
    let pl = "/live/s1/video/index.m3u8";
    assert_eq!(rig.get(pl).await.status, StatusCode::FORBIDDEN);
    let part = format!("/live/s1/video/{}", part_name(12, 1));
    assert_eq!(rig.get(&part).await.status, StatusCode::FORBIDDEN);
    let a = rig.get(&format!("{pl}?token={t}")).await;
    assert_eq!(a.status, StatusCode::OK);
    let text = a.text();
    assert!(text.contains("## view 12.1"), "from memory: {text}");
    assert!(
        text.contains(&format!("URI=\"{}?token={t}\"", part_name(12, 1))),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "PRELOAD-HINT:TYPE=PART,URI=\"{}?token={t}\"",
            part_name(12, 2)
        )),
        "{text}"
    );
    let a = rig.get(&format!("{part}?token={t}")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, part_bytes(12, 1));
    // A blocking reload with the token (the directives and the token mix).
    let a = rig
        .get(&format!("{pl}?_HLS_msn=12&_HLS_part=1&token={t}"))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.header("cache-control").unwrap().starts_with("private"),
        "{:?}",
        a.header("cache-control")
    );
}

#[tokio::test]
async fn tokens_are_minted_by_the_control_api_only() {
    let rig = Rig::new("mint");
    rig.lesson("s1", Some(Visibility::Private));
    // Without the API token: 401, and nothing minted.
    let req = Request::post("/api/v1/sessions/s1/playback-token")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&rig.app, req).await.status, StatusCode::UNAUTHORIZED);
    let a = rig.mint("sessions", "s1", r#"{"ttl_s": 120}"#).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let j = a.json();
    let token = j["token"].as_str().unwrap();
    let expires = j["expires_at"].as_u64().unwrap();
    assert!((now() + 118..=now() + 121).contains(&expires), "{j}");
    assert_eq!(key().verify("s1", Some(token), now()), Ok(()));
    assert_eq!(j["hls"], format!("/live/s1/master.m3u8?token={token}"));
    assert_eq!(j["vod"], format!("/vod/s1/master.m3u8?token={token}"));
    assert_eq!(a.header("cache-control"), Some("no-store"));
    let hls = j["hls"].as_str().unwrap().to_string();
    assert_eq!(rig.get(&hls).await.status, StatusCode::OK);
    // No body: the default lifetime (4 h).
    let a = rig.mint("sessions", "s1", "").await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    assert!(a.json()["expires_at"].as_u64().unwrap() >= now() + 4 * 3600 - 2);
    // `null` is the defaults too; a whole number may be written `60.0`.
    for (body, ttl) in [("null", 4 * 3600), (r#"{"ttl_s": 60.0}"#, 60)] {
        let a = rig.mint("sessions", "s1", body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{body}: {}", a.text());
        assert_eq!(a.json()["ttl_s"], ttl, "{body}");
    }
    for bad in [
        r#"{"ttl_s": 0}"#,
        r#"{"ttl_s": 604801}"#,
        r#"{"ttl_s": 60.5}"#,
        r#"{"ttl": 5}"#,
        "nope",
        // serde reads a struct from an array: `[null]` is not the defaults.
        "[null]",
        // White space alone is not JSON (and a form feed is not JSON's).
        " ",
        "\u{c}",
    ] {
        let a = rig.mint("sessions", "s1", bad).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {}", a.text());
    }
    // An unknown session: 404 from the control.
    *rig.fake.error.lock().unwrap() = Some(studiocast_server::ControlError::SessionNotFound(
        "s9".into(),
    ));
    let a = rig.mint("sessions", "s9", "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // The fake runs no jobs.
    let a = rig.mint("jobs", "job-1", "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let _ = TOKEN;
}
