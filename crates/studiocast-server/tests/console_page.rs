//! `/console`: served without a token (it holds no secret), with a policy
//! that allows only this origin and forbids framing; its script and style;
//! and the hls.js it loads is the one the player serves.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{send, Fake, TempDir};
use studiocast_server::router;

fn get(path: &str) -> Request<Body> {
    Request::builder().uri(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn the_console_page_and_its_assets() {
    let dir = TempDir::new("console-page");
    let app = router(common::config(dir.path()), Fake::new());
    let page = send(&app, get("/console")).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    for want in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(want), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    let html = page.text();
    // No inline script or style (the policy would block them).
    assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains(" style="));
    assert!(html.contains("console/console.js") && html.contains("console/console.css"));
    // The hls.js it loads is served.
    let hls = html
        .split('"')
        .find(|s| s.starts_with("player/hls-"))
        .expect("an hls.js script")
        .to_string();
    let lib = send(&app, get(&format!("/{hls}"))).await;
    assert_eq!(lib.status, StatusCode::OK, "{hls}");
    for (file, ctype) in [
        ("console.js", "text/javascript"),
        ("console.css", "text/css"),
    ] {
        let a = send(&app, get(&format!("/console/{file}"))).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with(ctype));
    }
    assert_eq!(
        send(&app, get("/console/../secret")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, get("/console/other.js")).await.status,
        StatusCode::NOT_FOUND
    );
    // The script keeps the token in session storage, never in a URL.
    let js = send(&app, get("/console/console.js")).await.text();
    assert!(js.contains("sessionStorage") && !js.contains("?token=${token}"));
}
