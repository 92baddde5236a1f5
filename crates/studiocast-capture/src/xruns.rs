//! Lost input time, found from the device's capture timestamps.
//!
//! A sound server or interface that misses a cycle (an xrun) drops the
//! frames of that time: the ring then holds less audio than the time that
//! passed, and the program's audio runs early against the picture by the
//! lost amount until the drift loop takes it back (at up to a millisecond
//! per second). The technician needs to see that it happened: the capture
//! callback asks this detector, which compares each callback's capture
//! timestamp with the frames counted so far, and counts what was lost.
//!
//! Filling the lost time with silence was tried and left out: JACK's dummy
//! backend on a loaded machine stalls its clock without losing data, and
//! the filled silence then broke the audio and overshot the offset by
//! hundreds of ms. An interface's xrun is rare enough for the loop.
//!
//! Rules:
//! * the debt is the capture time minus the time the counted frames cover;
//!   its slow trend (the device's clock against the system's, a few hundred
//!   ppm at most) is followed by a baseline and is left to the drift loop;
//! * a timestamp late by a scheduling hiccup is made up within a callback
//!   or two; only a debt above [`THRESHOLD_S`] that lasts [`CONFIRM_S`]
//!   (and at least two callbacks) is a loss: a time, not a count, so the
//!   rule is the same at 64-frame periods as at 1024;
//! * a jump over [`MAX_GAP_S`] (or backwards) is an outage or a restart, not
//!   an xrun: the detector starts over and the session's silence policy
//!   deals with it.
//!
//! Sans-IO: no clock inside, no allocation; the callback passes the time.

/// Debt that counts as lost time, seconds (device periods are 1–21 ms;
/// timestamp jitter on a loaded machine stays within a few ms and cancels).
pub const THRESHOLD_S: f64 = 0.003;
/// How long the debt must stay above the threshold.
pub const CONFIRM_S: f64 = 0.02;
/// Longest loss counted as an xrun; longer is an outage.
pub const MAX_GAP_S: f64 = 0.2;
/// Time constant of the baseline that follows the clocks' relative drift.
const BASELINE_S: f64 = 5.0;

#[derive(Debug, Clone)]
pub struct XrunDetector {
    rate: f64,
    /// Capture time of the first frame counted, seconds.
    origin: Option<f64>,
    /// Frames counted since the origin, lost ones included.
    frames: u64,
    baseline: f64,
    /// Callbacks in a row above the threshold, and the capture time of the
    /// first of them.
    above: u32,
    above_since: f64,
}

impl XrunDetector {
    pub fn new(rate: u32) -> Self {
        XrunDetector {
            rate: f64::from(rate.max(1)),
            origin: None,
            frames: 0,
            baseline: 0.0,
            above: 0,
            above_since: 0.0,
        }
    }

    /// A callback brought `frames` frames, the first captured at `ts`
    /// seconds. Returns how many frames were lost before them (0 mostly).
    pub fn observe(&mut self, ts: f64, frames: usize) -> usize {
        let Some(origin) = self.origin else {
            self.restart(ts, frames);
            return 0;
        };
        let debt = ts - origin - self.frames as f64 / self.rate;
        let excess = debt - self.baseline;
        if !(-MAX_GAP_S..=MAX_GAP_S).contains(&excess) {
            self.restart(ts, frames);
            return 0;
        }
        let mut lost = 0;
        if excess > THRESHOLD_S {
            if self.above == 0 {
                self.above_since = ts;
            }
            self.above += 1;
            if self.above >= 2 && ts - self.above_since >= CONFIRM_S {
                lost = (excess * self.rate).round() as usize;
                self.frames += lost as u64;
                self.above = 0;
            }
        } else {
            self.above = 0;
            // Only debts that are not (yet) losses move the baseline.
            let dt = frames as f64 / self.rate;
            self.baseline += (dt / BASELINE_S).min(1.0) * excess;
        }
        self.frames += frames as u64;
        lost
    }

    fn restart(&mut self, ts: f64, frames: usize) {
        self.origin = Some(ts);
        self.frames = frames as u64;
        self.baseline = 0.0;
        self.above = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;
    const PERIOD: usize = 256;

    /// Feed `seconds` of periods from a device running `ppm` off the system
    /// clock; `lose(i)` is the time lost before callback i, `jitter(i)` the
    /// timestamp noise. Returns the frames found lost, per callback.
    fn run(
        seconds: f64,
        ppm: f64,
        lose: impl Fn(usize) -> f64,
        jitter: impl Fn(usize) -> f64,
    ) -> Vec<(usize, usize)> {
        let mut d = XrunDetector::new(RATE);
        let period_s = PERIOD as f64 / (RATE as f64 * (1.0 + ppm * 1e-6));
        let n = (seconds / period_s) as usize;
        let mut t = 100.0;
        let mut out = Vec::new();
        for i in 0..n {
            t += lose(i);
            let lost = d.observe(t + jitter(i), PERIOD);
            if lost > 0 {
                out.push((i, lost));
            }
            t += period_s;
        }
        out
    }

    #[test]
    fn a_steady_device_loses_nothing() {
        assert!(run(60.0, 0.0, |_| 0.0, |_| 0.0).is_empty());
    }

    #[test]
    fn clock_drift_is_left_to_the_drift_loop() {
        // An hour at ±300 ppm: the debt ramps 1 s per hour, never a gap.
        for ppm in [300.0, -300.0] {
            assert!(run(3600.0, ppm, |_| 0.0, |_| 0.0).is_empty(), "{ppm}");
        }
    }

    #[test]
    fn late_timestamps_that_catch_up_are_not_losses() {
        // A callback 11 ms late, the next ones on time (measured on the
        // JACK dummy under load: +11.0 then -11.0 ms).
        let losses = run(
            10.0,
            0.0,
            |_| 0.0,
            |i| if i % 97 == 5 { 0.011 } else { 0.0 },
        );
        assert!(losses.is_empty(), "{losses:?}");
        // Late two callbacks in a row, then caught up.
        let losses = run(
            10.0,
            0.0,
            |_| 0.0,
            |i| {
                if i % 97 == 5 || i % 97 == 6 {
                    0.008
                } else {
                    0.0
                }
            },
        );
        assert!(losses.is_empty(), "{losses:?}");
    }

    #[test]
    fn lost_time_is_found_with_its_length() {
        // 7 ms lost before callback 1000, 10.5 ms before 3000, over 100 ppm
        // of drift and ±1 ms of jitter.
        let losses = run(
            30.0,
            100.0,
            |i| match i {
                1000 => 0.007,
                3000 => 0.0105,
                _ => 0.0,
            },
            |i| if i % 2 == 0 { 0.001 } else { -0.001 },
        );
        assert_eq!(losses.len(), 2, "{losses:?}");
        let (i, n) = losses[0];
        // Found within CONFIRM_S (20 ms: four 5.3 ms periods) and a period.
        assert!((1000..1000 + 6).contains(&i), "{losses:?}");
        assert!((n as i64 - 336).abs() <= 50, "7 ms is 336 frames: {n}");
        let (i, n) = losses[1];
        assert!((3000..3000 + 6).contains(&i), "{losses:?}");
        assert!((n as i64 - 504).abs() <= 50, "10.5 ms is 504 frames: {n}");
    }

    #[test]
    fn an_outage_or_a_restart_is_not_an_xrun() {
        // Half a second of nothing, then a clock that went backwards.
        let losses = run(
            10.0,
            0.0,
            |i| match i {
                500 => 0.5,
                900 => -3.0,
                _ => 0.0,
            },
            |_| 0.0,
        );
        assert!(losses.is_empty(), "{losses:?}");
        // And losses after the restart are found again.
        let lose = |i| match i {
            500 => 0.5,
            1200 => 0.005,
            _ => 0.0,
        };
        let losses = run(10.0, 0.0, lose, |_| 0.0);
        assert_eq!(losses.len(), 1, "{losses:?}");
    }
}
