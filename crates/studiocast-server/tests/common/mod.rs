//! Shared by the integration tests: a scripted `SessionControl`, a
//! temporary data folder and a one-request helper.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod net;
pub mod views;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use studiocast_server::{
    router, BoxFuture, ChannelMeter, ControlError, CreateSession, DeviceEntry, Health, LiveView,
    MeterFrame, MeterSource, ServerConfig, SessionControl, SessionInfo, SessionState, SessionUrls,
};
use tokio::sync::watch;
use tower::ServiceExt;

type Views = watch::Receiver<Arc<LiveView>>;

pub const TOKEN: &str = "test-token-0123456789";

/// Answers as scripted and records every call.
#[derive(Default)]
pub struct Fake {
    /// Names of the methods called, in order.
    pub calls: Mutex<Vec<&'static str>>,
    /// When set, every session call fails with it.
    pub error: Mutex<Option<ControlError>>,
    /// Every session call sleeps this long first.
    pub delay: Mutex<Duration>,
    pub health: Mutex<Health>,
    /// `health()` never answers.
    pub health_hangs: Mutex<bool>,
    pub meters: Arc<FakeMeters>,
    /// The live registry: views by (session, rendition).
    pub live: Mutex<HashMap<(String, String), Views>>,
    /// Calls of `live()`, counted apart from `calls` (every playback
    /// request makes one).
    pub live_lookups: AtomicUsize,
    /// Session calls whose future is still alive: running, or neither
    /// finished nor dropped (a request the server left behind).
    pub in_flight: Arc<AtomicUsize>,
    pub filters: FakeFilters,
    /// The events stream's bus, when the test wants one.
    pub bus: Option<studiocast_server::events::EventBus>,
}

/// The engine's filters for the player: counts designs; fails when told.
#[derive(Default)]
pub struct FakeFilters {
    pub designs: AtomicUsize,
    pub fail: std::sync::atomic::AtomicBool,
}

impl studiocast_server::hrtf::FilterSource for FakeFilters {
    fn hrtf(
        &self,
        order: u32,
        rate: u32,
    ) -> BoxFuture<'_, Result<studiocast_server::hrtf::HrtfFilters, ControlError>> {
        self.designs.fetch_add(1, Ordering::SeqCst);
        let fail = self.fail.load(Ordering::SeqCst);
        Box::pin(async move {
            // A design takes a while: concurrent requests overlap it.
            tokio::time::sleep(Duration::from_millis(50)).await;
            if fail {
                return Err(ControlError::Unavailable("no such set".into()));
            }
            Ok(studiocast_server::hrtf::HrtfFilters {
                sofa: "kemar.sofa".into(),
                method: "magls".into(),
                max_re: false,
                headphone_eq: false,
                order,
                rate,
                left: vec![vec![0.5; 8]; 4],
                right: vec![vec![0.25; 8]; 4],
            })
        })
    }
}

/// Counts a call in [`Fake::in_flight`] until it is dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Fake {
    pub fn new() -> Arc<Fake> {
        Arc::new(Fake::unshared())
    }

    /// With an events bus.
    pub fn with_events() -> Arc<Fake> {
        let mut fake = Fake::unshared();
        fake.bus = Some(studiocast_server::events::EventBus::default());
        Arc::new(fake)
    }

    fn unshared() -> Fake {
        let fake = Fake::default();
        *fake.health.lock().unwrap() = Health {
            live: true,
            ready: true,
            reasons: vec![],
            sessions: 1,
            max_sessions: 4,
        };
        fake
    }

    /// Registers a live rendition starting at `first`; the test publishes
    /// the next views on the sender, and drops it to end the channel.
    pub fn publish(
        &self,
        id: &str,
        rendition: &str,
        first: LiveView,
    ) -> watch::Sender<Arc<LiveView>> {
        let (tx, rx) = watch::channel(Arc::new(first));
        self.live
            .lock()
            .unwrap()
            .insert((id.into(), rendition.into()), rx);
        tx
    }

    pub fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }

    fn begin(&self, name: &'static str) -> (Duration, Option<ControlError>) {
        self.calls.lock().unwrap().push(name);
        (
            *self.delay.lock().unwrap(),
            self.error.lock().unwrap().clone(),
        )
    }

    fn answer<T: Send + 'static>(
        &self,
        name: &'static str,
        ok: T,
    ) -> BoxFuture<'_, Result<T, ControlError>> {
        let (delay, error) = self.begin(name);
        let guard = InFlight::new(&self.in_flight);
        Box::pin(async move {
            let _guard = guard;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match error {
                Some(e) => Err(e),
                None => Ok(ok),
            }
        })
    }
}

pub fn session(id: &str) -> SessionInfo {
    SessionInfo {
        id: id.into(),
        state: SessionState::Live,
        pipeline: "demo".into(),
        title: "Lecture".into(),
        course: "".into(),
        visibility: Default::default(),
        started_at: "2025-01-01T00:00:00Z".into(),
        ended_at: None,
        error: None,
        urls: SessionUrls::for_id(id),
        inputs: None,
        alarms: Vec::new(),
    }
}

impl SessionControl for Fake {
    fn events(&self) -> Option<&studiocast_server::events::EventBus> {
        self.bus.as_ref()
    }

    fn health(&self, deep: bool) -> BoxFuture<'_, Health> {
        self.calls
            .lock()
            .unwrap()
            .push(if deep { "health(deep)" } else { "health" });
        let hangs = *self.health_hangs.lock().unwrap();
        let h = self.health.lock().unwrap().clone();
        Box::pin(async move {
            if hangs {
                std::future::pending::<()>().await;
            }
            h
        })
    }

    fn meters(&self, id: String) -> BoxFuture<'_, Result<Arc<dyn MeterSource>, ControlError>> {
        let _ = id;
        let m: Arc<dyn MeterSource> = self.meters.clone();
        self.answer("meters", m)
    }

    fn create(&self, req: CreateSession) -> BoxFuture<'_, Result<SessionInfo, ControlError>> {
        let mut s = session("s1");
        s.title = req.title;
        s.course = req.course;
        s.pipeline = req.pipeline;
        self.answer("create", s)
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionInfo>, ControlError>> {
        self.answer("list", vec![session("s1")])
    }

    fn get(&self, id: String) -> BoxFuture<'_, Result<SessionInfo, ControlError>> {
        self.answer("get", session(&id))
    }

    fn stop(&self, id: String) -> BoxFuture<'_, Result<SessionInfo, ControlError>> {
        let mut s = session(&id);
        s.state = SessionState::Ended;
        self.answer("stop", s)
    }

    fn devices(&self) -> BoxFuture<'_, Result<Vec<DeviceEntry>, ControlError>> {
        self.answer("devices", vec![])
    }

    fn filters(&self) -> Option<&dyn studiocast_server::hrtf::FilterSource> {
        Some(&self.filters)
    }

    fn live(&self, id: &str, rendition: &str) -> Option<watch::Receiver<Arc<LiveView>>> {
        self.live_lookups.fetch_add(1, Ordering::Relaxed);
        self.live
            .lock()
            .unwrap()
            .get(&(id.to_string(), rendition.to_string()))
            .cloned()
    }
}

/// A meter that counts up on every read, so every tick sends a frame.
#[derive(Default)]
pub struct FakeMeters {
    seq: AtomicU64,
}

impl MeterSource for FakeMeters {
    fn read(&self) -> Option<MeterFrame> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        Some(MeterFrame {
            seq,
            channels: vec![ChannelMeter {
                name: "in 1".into(),
                role: Some("W".into()),
                peak_dbfs: -12.0,
                rms_dbfs: -18.0,
                clip: false,
            }],
        })
    }

    fn running(&self) -> bool {
        true
    }
}

/// A folder under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!(
            "studiocast-server-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn config(data_dir: &Path) -> ServerConfig {
    ServerConfig::new(TOKEN, data_dir)
}

pub fn app(fake: &Arc<Fake>, data_dir: &Path) -> Router {
    router(config(data_dir), fake.clone())
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request through the router, in process; fails the test after 10 s.
pub async fn send(app: &Router, req: Request<Body>) -> Answer {
    let res = tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(req))
        .await
        .expect("the router did not answer within 10 s")
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub fn authed(method: &str, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
}
