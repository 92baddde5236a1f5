//! Durations as whole ticks of 10 µs.
//!
//! Playlists print durations with five decimals, so a duration kept in
//! ticks prints exactly: an `EXTINF` is the exact sum of its `EXT-X-PART`
//! durations as printed, and comparisons against the target durations do
//! not depend on float rounding.

use std::fmt;

/// Ticks in a second.
pub(crate) const PER_SEC: u64 = 100_000;

/// A duration (or a position on a rendition's timeline) in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Ticks(pub(crate) u64);

impl Ticks {
    /// Whole seconds.
    pub(crate) fn from_whole_secs(s: u64) -> Ticks {
        Ticks(s.saturating_mul(PER_SEC))
    }

    /// Seconds rounded to the nearest tick; `None` unless finite, not
    /// negative and below a century (no stream lasts longer).
    pub(crate) fn from_secs(s: f64) -> Option<Ticks> {
        if !s.is_finite() || !(0.0..3.2e9).contains(&s) {
            return None;
        }
        Some(Ticks((s * PER_SEC as f64).round() as u64))
    }

    pub(crate) fn secs(self) -> f64 {
        self.0 as f64 / PER_SEC as f64
    }

    /// Rounded to the nearest second, as players compare an `EXTINF`
    /// with the target duration.
    pub(crate) fn rounded_secs(self) -> u64 {
        self.0.saturating_add(PER_SEC / 2) / PER_SEC
    }

    pub(crate) fn plus(self, o: Ticks) -> Ticks {
        Ticks(self.0.saturating_add(o.0))
    }

    pub(crate) fn minus(self, o: Ticks) -> Ticks {
        Ticks(self.0.saturating_sub(o.0))
    }

    pub(crate) fn times(self, n: u64) -> Ticks {
        Ticks(self.0.saturating_mul(n))
    }
}

/// Seconds with five decimals, exactly.
impl fmt::Display for Ticks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:05}", self.0 / PER_SEC, self.0 % PER_SEC)
    }
}

/// A running clock that turns float durations into ticks without drift:
/// each duration is the difference of the rounded positions before and
/// after it, so rounding errors never accumulate over a long stream.
#[derive(Debug, Default, Clone)]
pub(crate) struct Clock {
    at: f64,
}

impl Clock {
    /// The ticks `secs` would take from here; `None` for a duration that
    /// is not finite or not positive.
    pub(crate) fn peek(&self, secs: f64) -> Option<Ticks> {
        if !secs.is_finite() || secs <= 0.0 {
            return None;
        }
        let before = Ticks::from_secs(self.at)?;
        let after = Ticks::from_secs(self.at + secs)?;
        Some(after.minus(before))
    }

    pub(crate) fn advance(&mut self, secs: f64) {
        self.at += secs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_exactly_and_rounds_like_players() {
        assert_eq!(Ticks(198_400).to_string(), "1.98400");
        assert_eq!(Ticks(5).to_string(), "0.00005");
        assert_eq!(Ticks(250_000).rounded_secs(), 3);
        assert_eq!(Ticks(249_999).rounded_secs(), 2);
        assert_eq!(Ticks::from_secs(f64::NAN), None);
        assert_eq!(Ticks::from_secs(-1.0), None);
    }

    #[test]
    fn the_clock_does_not_drift() {
        // 1024 samples at 48 kHz: 21.333… ms, not a whole number of ticks.
        let frame = 1024.0 / 48_000.0;
        let mut c = Clock::default();
        let mut sum = Ticks(0);
        for _ in 0..337_500 {
            sum = sum.plus(c.peek(frame).unwrap());
            c.advance(frame);
        }
        // 337 500 frames are exactly 7200 s; per-frame rounding would be
        // 0.12 s off by now.
        assert_eq!(sum, Ticks::from_whole_secs(7200));
        assert_eq!(c.peek(0.0), None);
        assert_eq!(c.peek(f64::INFINITY), None);
    }
}
