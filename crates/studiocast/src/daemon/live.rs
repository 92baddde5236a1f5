//! The in-memory live views the origin serves: one watch channel per
//! rendition of each running session. The packaging worker publishes a new
//! snapshot after every change (a part, a segment, the end); HTTP requests
//! read the latest one or wait for the next without asking any actor.
//!
//! A session's start adds its views (with its record, before the pipeline
//! runs); the supervisor's actor removes them once the session settles:
//! three target durations later if its streams ended ([`Retiring`]), at
//! once if they did not. The HTTP layer only looks up, under a read lock
//! held for one lookup.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use studiocast_hls::LiveView;
use studiocast_media::PipelineSpec;
use tokio::sync::watch;

/// The live views of one session, by rendition.
pub struct LiveSet {
    views: HashMap<String, watch::Sender<Arc<LiveView>>>,
    /// Segments and parts published so far per rendition (for /metrics).
    counts: HashMap<String, [AtomicU64; 2]>,
    /// Fault injection only: publications from then on are dropped.
    frozen_from: Option<Instant>,
    /// How long the views outlive the session: see [`Retiring`].
    linger: Duration,
}

impl LiveSet {
    /// Empty views for every rendition of `spec` (nothing published yet: a
    /// request waits for the first part, within its timeout).
    pub fn new(spec: &PipelineSpec) -> Arc<Self> {
        Self::freezing(spec, None)
    }

    /// The same; with `Some(d)`, the views stop changing `d` from now (the
    /// `STUDIOCAST_FAULT_FREEZE_LIVE` test hook).
    pub fn freezing(spec: &PipelineSpec, after: Option<Duration>) -> Arc<Self> {
        let part_target = spec.part_target();
        let target = spec.segment_seconds as u64;
        let views: HashMap<String, watch::Sender<Arc<LiveView>>> = super::worker::renditions(spec)
            .into_iter()
            .map(|r| {
                let empty = LiveView::empty(&r.id, target, part_target);
                (r.id, watch::channel(Arc::new(empty)).0)
            })
            .collect();
        let counts = views
            .keys()
            .map(|k| (k.clone(), Default::default()))
            .collect();
        Arc::new(LiveSet {
            views,
            counts,
            frozen_from: after.map(|d| Instant::now() + d),
            linger: Duration::from_secs(target.max(1).saturating_mul(LINGER_TARGETS)),
        })
    }

    /// Replace a rendition's view; waiting requests wake.
    pub fn publish(&self, rendition: &str, view: LiveView) {
        if self.frozen_from.is_some_and(|t| Instant::now() >= t) {
            return;
        }
        if let Some(tx) = self.views.get(rendition) {
            let (seg, part) = {
                let old = tx.borrow();
                (
                    old.last_segment != view.last_segment && view.last_segment.is_some(),
                    old.last_part != view.last_part && view.last_part.is_some(),
                )
            };
            if let Some(c) = self.counts.get(rendition) {
                c[0].fetch_add(u64::from(seg), Ordering::Relaxed);
                c[1].fetch_add(u64::from(part), Ordering::Relaxed);
            }
            tx.send_replace(Arc::new(view));
        }
    }

    /// Segments and parts published so far, by rendition (a publication
    /// that completed a segment, or added a part, counts one).
    pub fn published(&self) -> Vec<studiocast_server::Published> {
        self.counts
            .iter()
            .map(|(r, c)| studiocast_server::Published {
                rendition: r.clone(),
                segments: c[0].load(Ordering::Relaxed),
                parts: c[1].load(Ordering::Relaxed),
            })
            .collect()
    }

    pub fn subscribe(&self, rendition: &str) -> Option<watch::Receiver<Arc<LiveView>>> {
        self.views.get(rendition).map(|tx| tx.subscribe())
    }
}

/// Every running session's live views.
#[derive(Default, Clone)]
pub struct LiveRegistry(Arc<RwLock<HashMap<String, Arc<LiveSet>>>>);

impl LiveRegistry {
    pub fn insert(&self, id: &str, set: Arc<LiveSet>) {
        if let Ok(mut m) = self.0.write() {
            m.insert(id.to_string(), set);
        }
    }

    pub fn remove(&self, id: &str) {
        if let Ok(mut m) = self.0.write() {
            m.remove(id);
        }
    }

    pub fn subscribe(&self, id: &str, rendition: &str) -> Option<watch::Receiver<Arc<LiveView>>> {
        let set = self.0.read().ok()?.get(id)?.clone();
        set.subscribe(rendition)
    }

    /// How long a session's views should outlive it: three target
    /// durations when every rendition's stream ended (its playlists list
    /// parts the disk does not have), none when one did not (a failed
    /// session: requests waiting on it must hear at once that nothing more
    /// comes, and the disk serves the rest). `None`: it has no views.
    pub fn linger(&self, id: &str) -> Option<Duration> {
        let set = self.0.read().ok()?.get(id).cloned()?;
        let ended = set.views.values().all(|tx| tx.borrow().ended);
        Some(if ended { set.linger } else { Duration::ZERO })
    }

    pub fn published(&self, id: &str) -> Vec<studiocast_server::Published> {
        let set = self.0.read().ok().and_then(|m| m.get(id).cloned());
        set.map(|s| s.published()).unwrap_or_default()
    }
}

/// Target durations a settled session's views are kept: as long as parts
/// dropped from a live playlist are (see `studiocast_hls::LiveView`).
const LINGER_TARGETS: u64 = 3;

/// Settled sessions whose views are still served. The ended playlist in
/// memory lists the newest parts, and the disk holds no parts: a player
/// that read it just before the session settled (or a slower one, a few
/// parts behind) would get 404 for what it was told to fetch. Sans-IO: the
/// supervisor's actor drives it with its clock.
#[derive(Default)]
pub struct Retiring {
    due: Vec<(Instant, String)>,
}

impl Retiring {
    /// `id`'s views go at `now + linger`.
    pub fn add(&mut self, now: Instant, id: String, linger: Duration) {
        self.due.push((now + linger, id));
    }

    /// The next time something is due, if anything waits.
    pub fn next(&self) -> Option<Instant> {
        self.due.iter().map(|(t, _)| *t).min()
    }

    /// The sessions whose views are due by `now`, taken out.
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        self.due.retain(|(t, id)| {
            let keep = *t > now;
            if !keep {
                out.push(id.clone());
            }
            keep
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ended_views_linger() {
        let view = LiveView::empty("720p", 2, Some(0.334));
        let set = Arc::new(LiveSet {
            views: HashMap::from([("720p".to_string(), watch::channel(Arc::new(view)).0)]),
            counts: HashMap::new(),
            frozen_from: None,
            linger: Duration::from_secs(6),
        });
        let reg = LiveRegistry::default();
        reg.insert("s", set.clone());
        assert_eq!(reg.linger("nope"), None);
        // A stream that never ended (a failed session): no linger.
        assert_eq!(reg.linger("s"), Some(Duration::ZERO));
        let mut ended = LiveView::empty("720p", 2, Some(0.334));
        ended.ended = true;
        set.publish("720p", ended);
        assert_eq!(reg.linger("s"), Some(Duration::from_secs(6)));
    }

    #[test]
    fn views_go_when_due_and_not_before() {
        let t0 = Instant::now();
        let mut r = Retiring::default();
        assert_eq!(r.next(), None);
        r.add(t0, "a".into(), Duration::from_secs(6));
        r.add(
            t0 + Duration::from_secs(1),
            "b".into(),
            Duration::from_secs(3),
        );
        assert_eq!(r.next(), Some(t0 + Duration::from_secs(4)));
        assert!(r.take_due(t0 + Duration::from_millis(3999)).is_empty());
        assert_eq!(r.take_due(t0 + Duration::from_secs(4)), ["b"]);
        assert_eq!(r.next(), Some(t0 + Duration::from_secs(6)));
        assert_eq!(r.take_due(t0 + Duration::from_secs(60)), ["a"]);
        assert_eq!(r.next(), None);
    }
}
