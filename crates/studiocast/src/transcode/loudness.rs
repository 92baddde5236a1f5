//! EBU R128 for a lesson: measure each rendition (the `ebur128` crate),
//! plan one gain to the target, and a true-peak-safe limiter for when the
//! gain alone would clip.

use ebur128::{EbuR128, Mode};
use serde::Serialize;

/// What EBU R128 says of one stereo signal.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Measured {
    /// Integrated loudness, LUFS.
    pub integrated_lufs: f64,
    /// Loudness range, LU.
    pub range_lu: f64,
    /// Highest true peak of both channels, dBTP.
    pub true_peak_dbtp: f64,
}

/// An EBU R128 meter of one stereo signal.
pub struct Meter(EbuR128);

impl Meter {
    pub fn new(rate: u32) -> Result<Meter, String> {
        EbuR128::new(2, rate, Mode::I | Mode::LRA | Mode::TRUE_PEAK)
            .map(Meter)
            .map_err(|e| format!("loudness meter: {e}"))
    }

    pub fn add(&mut self, left: &[f32], right: &[f32]) -> Result<(), String> {
        self.0
            .add_frames_planar_f32(&[left, right])
            .map_err(|e| format!("loudness meter: {e}"))
    }

    /// `None` for a signal too short or too quiet to have an integrated
    /// loudness (all gated out: silence).
    pub fn result(&self) -> Option<Measured> {
        let integrated = self.0.loudness_global().ok()?;
        if !integrated.is_finite() {
            return None;
        }
        let peak = (0..2)
            .filter_map(|c| self.0.true_peak(c).ok())
            .fold(0.0f64, f64::max);
        Some(Measured {
            integrated_lufs: integrated,
            range_lu: self.0.loudness_range().unwrap_or(0.0),
            true_peak_dbtp: 20.0 * peak.max(1e-10).log10(),
        })
    }
}

/// How one rendition is brought to the target.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct GainPlan {
    pub gain_db: f64,
    /// The gain alone would take the true peak over the ceiling: the
    /// limiter holds it.
    pub limited: bool,
}

/// Margin between the limiter's sample-peak ceiling and the true-peak
/// ceiling: peaks between samples of a signal limited on its samples rise
/// up to about half a dB above them at these rates.
pub const INTERSAMPLE_MARGIN_DB: f64 = 0.5;

/// The gain that brings `m` to `target_lufs`, and whether the limiter is
/// needed to keep the true peak under `ceiling_dbtp`. A silent input
/// (nothing to measure) keeps unit gain.
pub fn plan(m: Option<Measured>, target_lufs: f64, ceiling_dbtp: f64) -> GainPlan {
    let Some(m) = m else {
        return GainPlan {
            gain_db: 0.0,
            limited: false,
        };
    };
    let gain_db = target_lufs - m.integrated_lufs;
    GainPlan {
        gain_db,
        limited: m.true_peak_dbtp + gain_db > ceiling_dbtp,
    }
}

/// What a plain gain does to a measurement: every level moves by it, the
/// range does not (a gain is linear; the R128 gates are relative, the
/// absolute gate at -70 LUFS aside).
pub fn with_gain(m: Measured, gain_db: f64) -> Measured {
    Measured {
        integrated_lufs: m.integrated_lufs + gain_db,
        range_lu: m.range_lu,
        true_peak_dbtp: m.true_peak_dbtp + gain_db,
    }
}

pub fn db_to_gain(db: f64) -> f32 {
    10f64.powf(db / 20.0) as f32
}

/// A stereo look-ahead peak limiter: both channels share one gain, which
/// falls before a peak arrives (the signal is delayed by the look-ahead)
/// and recovers with `release`. Its output never exceeds the ceiling.
pub struct Limiter {
    ceiling: f32,
    lookahead: usize,
    /// Delayed input, interleaved, a ring of `lookahead` frames.
    delay: Vec<f32>,
    /// Gain each queued frame needs, with the queue's running minimum
    /// (a monotonic deque of (frame, needed gain)).
    mins: std::collections::VecDeque<(u64, f32)>,
    pos: u64,
    gain: f32,
    attack: f32,
    release: f32,
}

impl Limiter {
    pub fn new(rate: u32, ceiling_db: f64) -> Limiter {
        let lookahead = (rate as usize / 200).max(1); // 5 ms
        let coef = |secs: f64| (-1.0 / (secs * rate as f64)).exp() as f32;
        Limiter {
            ceiling: db_to_gain(ceiling_db),
            lookahead,
            delay: vec![0.0; 2 * lookahead],
            mins: Default::default(),
            pos: 0,
            gain: 1.0,
            // Within the look-ahead the gain closes all but e^-10 (0.004 %)
            // of the way to what the peak needs: the clamp below is a guard,
            // not a clipper.
            attack: coef(lookahead as f64 / rate as f64 / 10.0),
            release: coef(0.08),
        }
    }

    /// Frames of delay.
    pub fn latency(&self) -> usize {
        self.lookahead
    }

    /// Limit `left`/`right` in place (their output lags by [`Self::latency`]).
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32]) {
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            let peak = l.abs().max(r.abs());
            let need = if peak > self.ceiling {
                self.ceiling / peak
            } else {
                1.0
            };
            while self.mins.back().is_some_and(|&(_, g)| g >= need) {
                self.mins.pop_back();
            }
            self.mins.push_back((self.pos, need));
            let oldest = self.pos.saturating_sub(self.lookahead as u64);
            while self.mins.front().is_some_and(|&(p, _)| p < oldest) {
                self.mins.pop_front();
            }
            let target = self.mins.front().map_or(1.0, |&(_, g)| g);
            let coef = if target < self.gain {
                self.attack
            } else {
                self.release
            };
            self.gain = target + (self.gain - target) * coef;
            let i = (self.pos % self.lookahead as u64) as usize * 2;
            let (dl, dr) = (self.delay[i], self.delay[i + 1]);
            self.delay[i] = *l;
            self.delay[i + 1] = *r;
            // The smoothing may still be a hair above what the peak needs:
            // the ceiling holds whatever.
            let g = self.gain;
            *l = (dl * g).clamp(-self.ceiling, self.ceiling);
            *r = (dr * g).clamp(-self.ceiling, self.ceiling);
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, secs: f64, amp: f32, hz: f64) -> Vec<f32> {
        (0..(rate as f64 * secs) as usize)
            .map(|i| amp * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin() as f32)
            .collect()
    }

    #[test]
    fn a_sine_measures_as_r128_says() {
        // EBU Tech 3341: a 1 kHz sine of -20 dBFS peak in both channels
        // reads -20.0 LUFS: -3.01 (its mean square is half its peak's)
        // +3.01 (two channels), and the K-weighting is about 0 dB at 1 kHz
        // (+0.69 against the -0.691 constant).
        let rate = 48_000;
        let x = tone(rate, 10.0, db_to_gain(-20.0), 1000.0);
        let mut m = Meter::new(rate).unwrap();
        m.add(&x, &x).unwrap();
        let r = m.result().unwrap();
        assert!((r.integrated_lufs - -20.0).abs() < 0.1, "{r:?}");
        assert!((r.true_peak_dbtp - -20.0).abs() < 0.1, "{r:?}");
        let silence = Meter::new(rate).unwrap();
        assert_eq!(silence.result(), None);
    }

    #[test]
    fn the_plan_limits_only_when_the_gain_would_clip() {
        let m = |i, tp| {
            Some(Measured {
                integrated_lufs: i,
                range_lu: 5.0,
                true_peak_dbtp: tp,
            })
        };
        assert_eq!(
            plan(m(-23.0, -10.0), -16.0, -1.0),
            GainPlan {
                gain_db: 7.0,
                limited: false
            }
        );
        assert!(plan(m(-23.0, -5.0), -16.0, -1.0).limited);
        assert!(!plan(m(-10.0, 0.0), -16.0, -1.0).limited);
        assert_eq!(plan(None, -16.0, -1.0).gain_db, 0.0);
    }

    #[test]
    fn the_limiter_holds_the_ceiling_and_leaves_quiet_signal_alone() {
        let rate = 48_000;
        let mut lim = Limiter::new(rate, -1.5);
        let ceiling = db_to_gain(-1.5);
        // Quiet, then a burst at +6 dBFS, then quiet again.
        let mut l: Vec<f32> = tone(rate, 0.5, 0.1, 440.0);
        l.extend(tone(rate, 0.2, 2.0, 440.0));
        l.extend(tone(rate, 1.0, 0.1, 440.0));
        let mut r = l.clone();
        let input = l.clone();
        lim.process(&mut l, &mut r);
        let d = lim.latency();
        assert!(l.iter().all(|v| v.abs() <= ceiling + 1e-6));
        // Before the burst comes into view: untouched, only delayed.
        for i in d..(rate as usize / 2 - 2 * d) {
            assert!((l[i] - input[i - d]).abs() < 1e-6, "frame {i}");
        }
        // Inside the burst it is held near the ceiling, not crushed.
        let burst = &l[rate as usize / 2 + 2000..rate as usize / 2 + 8000];
        let peak = burst.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        assert!(peak > ceiling * 0.9, "{peak}");
        // And the quiet signal after it comes back to unit gain.
        let end = l.len() - 1000;
        let tail_peak = l[end - 4800..end]
            .iter()
            .fold(0.0f32, |a, v| a.max(v.abs()));
        assert!((tail_peak - 0.1).abs() < 0.005, "{tail_peak}");
    }
}
