//! `GET /metrics`: Prometheus metrics in the OpenMetrics text format
//! (`prometheus-client`), scope `metrics`, or without a token on the
//! separate listen address `[server] metrics_listen`.
//!
//! Two kinds of series. The HTTP layer's own (requests by route and status,
//! a latency histogram, bytes served, requests waiting on blocking
//! reloads, viewers) are counted as requests pass. Everything that lives
//! in sessions and jobs (sessions by state, each session's input health,
//! segments and parts published, disk free, the job queue) is read from
//! the supervisor at scrape time, through the same traits the API uses:
//! this module knows nothing of media internals.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::AppState;

pub use crate::viewers::VIEWER_WINDOW;

/// The peer's address, put in each request's extensions by the connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabel {
    session: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RenditionLabel {
    session: String,
    rendition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

type Hist = Family<RouteLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s: a part from memory, a blocking reload's wait.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// What the HTTP layer counts.
pub struct HttpMetrics {
    requests: Family<RouteStatus, Counter>,
    latency: Hist,
    bytes: Family<RouteLabel, Counter>,
    pub(crate) waiting: Gauge,
    viewers: crate::viewers::Viewers,
    /// Run time (start to finish) of each job seen finished, once.
    job_seconds: Family<StateLabel, Histogram, fn() -> Histogram>,
    jobs_seen: Mutex<std::collections::HashSet<String>>,
}

fn job_histogram() -> Histogram {
    // 1 s to about 4.5 h.
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            bytes: Family::default(),
            waiting: Gauge::default(),
            viewers: crate::viewers::Viewers::default(),
            job_seconds: Family::new_with_constructor(job_histogram),
            jobs_seen: Mutex::new(std::collections::HashSet::new()),
        }
    }
}

impl HttpMetrics {
    /// A playlist served to `client` for session `id`.
    pub(crate) fn viewer(&self, id: &str, client: crate::viewers::Client, now: Instant) {
        self.viewers.seen(id, client, now);
    }
}

impl HttpMetrics {
    /// Each finished job's run time, the first time a scrape sees it.
    fn observe_jobs(&self, list: &[crate::JobInfo]) {
        let mut seen = self.jobs_seen.lock().unwrap_or_else(|e| e.into_inner());
        for j in list {
            let (Some(a), Some(b)) = (&j.started, &j.finished) else {
                continue;
            };
            if seen.contains(&j.id) {
                continue;
            }
            let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
            if let (Some(a), Some(b)) = (t(a), t(b)) {
                let secs = (b - a).num_milliseconds().max(0) as f64 / 1e3;
                self.job_seconds
                    .get_or_create(&StateLabel {
                        state: j.state.clone(),
                    })
                    .observe(secs);
            }
            seen.insert(j.id.clone());
        }
        // Only ids still on the page are remembered: a job that left it
        // (newer ones pushed it off) never comes back, so it cannot be
        // counted twice, and the set stays as small as the page.
        let on_page: std::collections::HashSet<&str> = list.iter().map(|j| j.id.as_str()).collect();
        seen.retain(|id| on_page.contains(id.as_str()));
    }
}

/// While a blocking request waits: counted in the gauge.
pub(crate) struct Waiting<'a>(&'a Gauge);

impl<'a> Waiting<'a> {
    pub(crate) fn enter(g: &'a Gauge) -> Self {
        g.inc();
        Waiting(g)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Middleware on every route: count, time and size each answer, by the
/// route's pattern (never the raw path: ids would make a series each).
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let t0 = Instant::now();
    let res = next.run(req).await;
    let m = &st.0.metrics;
    let label = RouteLabel { route };
    m.latency
        .get_or_create(&label)
        .observe(t0.elapsed().as_secs_f64());
    // The length hyper will send: the header when a handler set it, else
    // the body's own exact size (memory bodies; hyper writes the header).
    let length = res
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| axum::body::HttpBody::size_hint(res.body()).exact());
    if let Some(n) = length {
        m.bytes.get_or_create(&label).inc_by(n);
    }
    m.requests
        .get_or_create(&RouteStatus {
            route: label.route,
            status: res.status().as_u16(),
        })
        .inc();
    res
}

/// `GET /metrics`: the Prometheus text format (0.0.4), or OpenMetrics for
/// a scraper whose `Accept` asks for it (Prometheus does; `promtool check
/// metrics` reads the former).
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text (OpenMetrics when `Accept` asks for it)", content(
            (String = "text/plain; version=0.0.4"),
            (String = "application/openmetrics-text; version=1.0.0"),
        )),
    ))]
pub async fn scrape(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let open = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    match render(&st).await {
        Ok(text) if open => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            prometheus_text(&text),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics not rendered");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn render(st: &AppState) -> Result<String, std::fmt::Error> {
    let m = &st.0.metrics;
    let mut reg = Registry::with_prefix("studiocast");
    reg.register(
        "http_requests",
        "HTTP requests answered, by route pattern and status",
        m.requests.clone(),
    );
    reg.register(
        "http_request_duration_seconds",
        "Time to the response's head, by route pattern",
        m.latency.clone(),
    );
    reg.register(
        "http_response_bytes",
        "Bytes of response bodies with a known length, by route pattern",
        m.bytes.clone(),
    );
    reg.register(
        "blocking_requests_waiting",
        "Playlist and part requests waiting on a blocking reload now",
        m.waiting.clone(),
    );
    let viewers = Family::<SessionLabel, Gauge>::default();
    for (session, n) in m.viewers.active(Instant::now()) {
        viewers
            .get_or_create(&SessionLabel { session })
            .set(n as i64);
    }
    reg.register(
        "viewers",
        "Distinct clients that fetched a playlist of the session in the last 30 s",
        viewers,
    );
    sessions(st, &mut reg).await;
    jobs(st, &mut reg).await;
    if let Some(free) = disk_free(&st.0.config.data_dir) {
        let g = Gauge::<i64>::default();
        g.set(free.min(i64::MAX as u64) as i64);
        reg.register("disk_free_bytes", "Free space under the data folder", g);
    }
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter family
/// `x` has samples `x_total` in both, but its `HELP` and `TYPE` lines name
/// `x_total` in the older format; `UNIT` and `EOF` lines are not part of
/// it. Everything else (gauges, histograms, labels, escaping) is the same.
pub fn prometheus_text(open: &str) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{p}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Sessions by state, and each running session's input health and
/// publication counts.
async fn sessions(st: &AppState, reg: &mut Registry) {
    let control = &st.0.control;
    let Ok(list) = control.list().await else {
        return;
    };
    let by_state = Family::<StateLabel, Gauge>::default();
    for s in [
        "starting",
        "live",
        "stopping",
        "ended",
        "failed",
        "interrupted",
    ] {
        by_state
            .get_or_create(&StateLabel { state: s.into() })
            .set(0);
    }
    let g = || Family::<SessionLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let (xruns, drift, offset, lag, recording) = (g(), g(), g(), g(), g());
    let segments = Family::<RenditionLabel, Gauge>::default();
    let parts = Family::<RenditionLabel, Gauge>::default();
    for s in &list {
        let state = serde_json::to_value(s.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        by_state.get_or_create(&StateLabel { state }).inc();
        if !matches!(
            s.state,
            crate::SessionState::Live
                | crate::SessionState::Starting
                | crate::SessionState::Stopping
        ) {
            continue;
        }
        for r in control.published(&s.id) {
            let l = RenditionLabel {
                session: s.id.clone(),
                rendition: r.rendition,
            };
            segments.get_or_create(&l).set(r.segments as i64);
            parts.get_or_create(&l).set(r.parts as i64);
        }
        let Ok(full) = control.get(s.id.clone()).await else {
            continue;
        };
        let Some(i) = full.inputs else {
            continue;
        };
        let l = SessionLabel {
            session: s.id.clone(),
        };
        xruns.get_or_create(&l).set(i.xruns as f64);
        drift.get_or_create(&l).set(i.drift_ppm);
        offset.get_or_create(&l).set(i.av_offset_ms / 1e3);
        lag.get_or_create(&l).set(i.video_lag_ms as f64 / 1e3);
        if let Some(r) = i.recording {
            recording
                .get_or_create(&l)
                .set(f64::from(u8::from(r.recording)));
        }
    }
    reg.register("sessions", "Sessions known, by state", by_state);
    reg.register(
        "session_xruns",
        "Times the audio interface lost time (xruns) since the session started",
        xruns,
    );
    reg.register(
        "session_drift_ppm",
        "The audio interface's clock error as the drift loop estimates it",
        drift,
    );
    reg.register(
        "session_av_offset_seconds",
        "Deviation of the capture delay from its target (the A/V offset being corrected)",
        offset,
    );
    reg.register(
        "session_video_lag_seconds",
        "How far the encoded video trails the wall clock",
        lag,
    );
    reg.register(
        "session_recording",
        "1 while the archival recording runs, 0 once it stopped",
        recording,
    );
    reg.register(
        "segments_published",
        "Segments published so far, by session and rendition",
        segments,
    );
    reg.register(
        "parts_published",
        "Low-latency parts published so far, by session and rendition",
        parts,
    );
}

/// The job queue's depth by state, when this daemon runs one.
async fn jobs(st: &AppState, reg: &mut Registry) {
    let Some(jobs) = st.0.control.jobs() else {
        return;
    };
    let by_state = Family::<StateLabel, Gauge>::default();
    for s in ["queued", "running", "succeeded", "failed", "cancelled"] {
        let q = crate::JobQuery {
            state: Some(s.into()),
            limit: Some(crate::MAX_PAGE),
            offset: None,
        };
        if let Ok(list) = jobs.list(q).await {
            by_state
                .get_or_create(&StateLabel { state: s.into() })
                .set(list.len() as i64);
            st.0.metrics.observe_jobs(&list);
        }
    }
    reg.register(
        "jobs",
        "Jobs by state (at most the API's page size each)",
        by_state,
    );
    reg.register(
        "job_duration_seconds",
        "Run time of the jobs this daemon saw finish, by how they ended",
        st.0.metrics.job_seconds.clone(),
    );
}

/// Free bytes on the data folder's file system.
fn disk_free(dir: &std::path::Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_becomes_the_prometheus_text_format() {
        let open = "# HELP x_requests Requests.\n# TYPE x_requests counter\n\
            x_requests_total{route=\"/a\"} 3\n# HELP x_up Up.\n# TYPE x_up gauge\n# UNIT x_up seconds\n\
            x_up 1\n# EOF\n";
        let text = prometheus_text(open);
        assert_eq!(
            text,
            "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\n\
             x_requests_total{route=\"/a\"} 3\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n"
        );
    }
}
