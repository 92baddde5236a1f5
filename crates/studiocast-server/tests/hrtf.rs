//! `/api/v1/hrtf/order1.{json,wav}`: public, made once per rate however
//! many ask at once, a failure remembered (a client cannot make the
//! daemon design over and over), and only the rates a stream can have.

mod common;

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{send, Fake, TempDir};

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn the_filters_are_designed_once_and_a_failure_is_remembered() {
    let dir = TempDir::new("hrtf");
    let fake = Fake::new();
    let app = common::app(&fake, dir.path());
    // Twenty viewers choose 360° at once: one design.
    let all = (0..20).map(|_| send(&app, get("/api/v1/hrtf/order1.json")));
    for a in futures_util::future::join_all(all).await {
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert_eq!(a.header("cache-control"), Some("public, max-age=3600"));
        let v = a.json();
        assert_eq!(
            (v["order"].as_u64(), v["rate"].as_u64()),
            (Some(1), Some(48_000))
        );
        assert_eq!(v["left"][3][7], 0.5);
    }
    assert_eq!(fake.filters.designs.load(Ordering::SeqCst), 1);
    // The WAV is another body of the same kind of design.
    let w = send(&app, get("/api/v1/hrtf/order1.wav?rate=44100")).await;
    assert_eq!(w.status, StatusCode::OK);
    assert_eq!(&w.body[..4], b"RIFF");
    assert_eq!(fake.filters.designs.load(Ordering::SeqCst), 2);
    // A request given up mid-design (the request timeout): the design
    // goes on, and the next request finds it made.
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(10),
        send(&app, get("/api/v1/hrtf/order1.json?rate=88200")),
    )
    .await;
    assert!(gave_up.is_err());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(fake.filters.designs.load(Ordering::SeqCst), 3);
    let a = send(&app, get("/api/v1/hrtf/order1.json?rate=88200")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(fake.filters.designs.load(Ordering::SeqCst), 3);
    // A failure: 503, and asking again does not design again.
    fake.filters.fail.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        let a = send(&app, get("/api/v1/hrtf/order1.json?rate=96000")).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    }
    assert_eq!(fake.filters.designs.load(Ordering::SeqCst), 4);
    // Refused without designing: other orders, names, rates, keys.
    for bad in [
        "/api/v1/hrtf/order3.json",
        "/api/v1/hrtf/order1.txt",
        "/api/v1/hrtf/order1.json?rate=12345",
        "/api/v1/hrtf/order1.json?rate=-1",
        "/api/v1/hrtf/order1.json?x=1",
    ] {
        let a = send(&app, get(bad)).await;
        assert!(
            a.status == StatusCode::NOT_FOUND || a.status == StatusCode::BAD_REQUEST,
            "{bad}: {}",
            a.status
        );
    }
    assert_eq!(fake.filters.designs.load(Ordering::SeqCst), 4);
}
