//! Active viewers per session: distinct clients served a playlist in the
//! last [`VIEWER_WINDOW`]. A client is its address and a hash of its
//! browser (`User-Agent`, and `X-Forwarded-For` behind a proxy): a school's
//! NAT hides many viewers behind one address, and their browsers differ
//! often enough.
//!
//! Both headers are the client's to choose, so one address counts as at
//! most [`MAX_PER_ADDRESS`] viewers of a session: a script that varies its
//! User-Agent inflates the gauge by that much, no more. Everything is
//! bounded (sessions, clients per session), and the full scans that make
//! room run at most once a second, so a flood of new clients cannot make
//! every request scan the map.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};

use crate::metrics::Peer;

/// A viewer counts as active this long after its last playlist request.
pub const VIEWER_WINDOW: Duration = Duration::from_secs(30);
/// Viewers tracked per session at most; past it, new clients are not
/// counted until old ones go stale.
pub(crate) const MAX_VIEWERS: usize = 100_000;
/// Viewers of one session counted from one address at most.
pub(crate) const MAX_PER_ADDRESS: usize = 256;
/// Sessions tracked at most (only sessions that served a playlist count).
pub(crate) const MAX_SESSIONS: usize = 1_000;
/// The least time between two scans that make room.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// A client: its address, and its browser hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Client {
    pub addr: IpAddr,
    pub browser: u64,
}

/// The client of a request.
pub(crate) fn client_of(peer: Option<&Peer>, headers: &HeaderMap) -> Client {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for name in [
        header::USER_AGENT,
        header::HeaderName::from_static("x-forwarded-for"),
    ] {
        headers.get(&name).map(|v| v.as_bytes()).hash(&mut h);
    }
    Client {
        addr: peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0),
        browser: h.finish(),
    }
}

#[derive(Default)]
struct Session {
    seen: HashMap<Client, Instant>,
    per_addr: HashMap<IpAddr, usize>,
    pruned: Option<Instant>,
}

impl Session {
    fn prune(&mut self, now: Instant) {
        self.seen
            .retain(|_, t| now.duration_since(*t) < VIEWER_WINDOW);
        self.per_addr.clear();
        for c in self.seen.keys() {
            *self.per_addr.entry(c.addr).or_default() += 1;
        }
        self.pruned = Some(now);
    }

    fn due(&self, now: Instant) -> bool {
        self.pruned
            .is_none_or(|t| now.duration_since(t) >= PRUNE_EVERY)
    }

    fn add(&mut self, c: Client, now: Instant) {
        if let Some(t) = self.seen.get_mut(&c) {
            *t = now;
            return;
        }
        let full = |s: &Session| {
            s.seen.len() >= MAX_VIEWERS
                || s.per_addr.get(&c.addr).copied().unwrap_or(0) >= MAX_PER_ADDRESS
        };
        if full(self) && self.due(now) {
            self.prune(now);
        }
        if full(self) {
            return;
        }
        self.seen.insert(c, now);
        *self.per_addr.entry(c.addr).or_default() += 1;
    }
}

#[derive(Default)]
pub(crate) struct Viewers {
    inner: Mutex<(HashMap<String, Session>, Option<Instant>)>,
}

impl Viewers {
    /// A playlist served to `client` for session `id`.
    pub(crate) fn seen(&self, id: &str, client: Client, now: Instant) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (sessions, pruned) = &mut *g;
        // Scrapes prune; without them the map is pruned here once it holds
        // more sessions than a daemon runs.
        if sessions.len() >= MAX_SESSIONS && !sessions.contains_key(id) {
            if pruned.is_none_or(|t| now.duration_since(t) >= PRUNE_EVERY) {
                *pruned = Some(now);
                sessions.retain(|_, s| {
                    s.seen
                        .values()
                        .any(|t| now.duration_since(*t) < VIEWER_WINDOW)
                });
            }
            if sessions.len() >= MAX_SESSIONS {
                return;
            }
        }
        sessions.entry(id.to_string()).or_default().add(client, now);
    }

    /// Distinct clients per session in the last [`VIEWER_WINDOW`]; the
    /// rest forgotten.
    pub(crate) fn active(&self, now: Instant) -> Vec<(String, usize)> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.retain(|_, s| {
            s.prune(now);
            !s.seen.is_empty()
        });
        g.0.iter().map(|(k, s)| (k.clone(), s.seen.len())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(addr: u8, browser: u64) -> Client {
        Client {
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, addr)),
            browser,
        }
    }

    #[test]
    fn viewers_count_distinct_clients_for_30_seconds() {
        let m = Viewers::default();
        let t0 = Instant::now();
        m.seen("s1", c(1, 1), t0);
        m.seen("s1", c(1, 1), t0 + Duration::from_secs(5));
        m.seen("s1", c(1, 2), t0 + Duration::from_secs(10));
        m.seen("s2", c(1, 1), t0);
        let mut now = m.active(t0 + Duration::from_secs(20));
        now.sort();
        assert_eq!(now, vec![("s1".to_string(), 2), ("s2".to_string(), 1)]);
        // Client 1 of s1 last came at 5 s, client 2 at 10 s; s2's at 0.
        let later = m.active(t0 + Duration::from_secs(36));
        assert_eq!(later, vec![("s1".to_string(), 1)]);
        assert!(m.active(t0 + Duration::from_secs(41)).is_empty());
    }

    #[test]
    fn sessions_tracked_are_bounded_without_scrapes() {
        let m = Viewers::default();
        let t0 = Instant::now();
        for s in 0..(MAX_SESSIONS + 10) {
            m.seen(&format!("s{s}"), c(1, 1), t0);
        }
        assert_eq!(m.active(t0).len(), MAX_SESSIONS);
        // Once they are stale, room is made without a scrape.
        m.seen("late", c(1, 1), t0 + VIEWER_WINDOW * 2);
        assert_eq!(m.active(t0 + VIEWER_WINDOW * 2).len(), 1);
    }

    #[test]
    fn one_address_counts_as_at_most_a_few_hundred_viewers() {
        let m = Viewers::default();
        let t0 = Instant::now();
        // One script, a new User-Agent on every request.
        for b in 0..10_000 {
            m.seen("s", c(9, b), t0);
        }
        // And a NAT with 300 real viewers, and 40 elsewhere.
        for b in 0..300 {
            m.seen("s", c(7, b), t0);
        }
        for a in 100..140 {
            m.seen("s", c(a, 1), t0);
        }
        let n = MAX_PER_ADDRESS * 2 + 40;
        assert_eq!(m.active(t0), vec![("s".to_string(), n)]);
        // The address's old clients go stale: new ones count again.
        m.seen("s", c(9, 20_000), t0 + VIEWER_WINDOW);
        assert_eq!(m.active(t0 + VIEWER_WINDOW), vec![("s".to_string(), 1)]);
    }

    #[test]
    fn a_flood_of_clients_is_bounded() {
        let m = Viewers::default();
        let t0 = Instant::now();
        let mut n = 0;
        'outer: for a in 0..=255u8 {
            for b in 0..MAX_PER_ADDRESS as u64 {
                for d in 0..2u8 {
                    let addr = IpAddr::V4(Ipv4Addr::new(10, d, a, 0));
                    m.seen("s", Client { addr, browser: b }, t0);
                    n += 1;
                    if n > MAX_VIEWERS + 50 {
                        break 'outer;
                    }
                }
            }
        }
        assert_eq!(m.active(t0), vec![("s".to_string(), MAX_VIEWERS)]);
    }
}
