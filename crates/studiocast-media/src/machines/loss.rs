//! When an ingest (SRT encoder, camera, SDI card) is lost, why, and when to
//! open it again.
//!
//! Sans-IO: the ingest's supervisor thread reports what it saw (a packet,
//! the end of the stream, an error, a stop request) with the monotonic
//! time, and asks what to do. No clock or GStreamer type inside.

use std::fmt;

/// Why an open input was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The session is stopping.
    Stopping,
    /// The source ended its stream (EOS).
    Ended,
    /// The source or its decoder failed.
    Failed(String),
    /// Nothing arrived for this long (ms) after the signal was present.
    Silent { ms: u64 },
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Stopping => f.write_str("stopping"),
            StopReason::Ended => f.write_str("the source ended the stream"),
            StopReason::Failed(e) => f.write_str(e),
            StopReason::Silent { ms } => write!(f, "no data for {ms} ms"),
        }
    }
}

/// What the ingest thread saw since the last tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Nothing,
    Eos,
    Error(String),
    Stop,
}

/// How an input behaves when it is reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reopen {
    /// A listener is ready for the encoder's next call at once.
    Listener,
    /// A caller (or a device) retries after a pause.
    Caller,
}

#[derive(Debug, Clone, Copy)]
pub struct LossConfig {
    pub timeout_ns: u64,
    /// Pause before a caller (or a listener that failed at once) reopens.
    pub retry_ns: u64,
    pub mode: Reopen,
}

/// Loss detection for one opening of the input.
#[derive(Debug, Clone)]
pub struct LossDetector {
    cfg: LossConfig,
    opened_at: u64,
    /// Monotonic time of the last packet in this opening.
    last_packet: Option<u64>,
}

impl LossDetector {
    /// The input was (re)opened at `now`.
    pub fn new(cfg: LossConfig, now: u64) -> Self {
        LossDetector {
            cfg,
            opened_at: now,
            last_packet: None,
        }
    }

    /// A frame or sample block arrived at `at` (stamped by the streaming
    /// thread; may be slightly ahead of the ticking thread's `now`).
    pub fn packet(&mut self, at: u64) {
        self.last_packet = Some(self.last_packet.map_or(at, |p| p.max(at)));
    }

    /// The signal is present in this opening.
    pub fn present(&self) -> bool {
        self.last_packet.is_some()
    }

    /// `Some(reason)` when the input must be closed now. An input that
    /// never delivered in this opening (a listener waiting for its
    /// encoder) is never "silent": it is simply not there yet.
    pub fn tick(&self, now: u64, seen: &Observation) -> Option<StopReason> {
        match seen {
            Observation::Stop => return Some(StopReason::Stopping),
            Observation::Eos => return Some(StopReason::Ended),
            Observation::Error(e) => return Some(StopReason::Failed(e.clone())),
            Observation::Nothing => {}
        }
        let last = self.last_packet?;
        let age = now.saturating_sub(last);
        (age >= self.cfg.timeout_ns).then_some(StopReason::Silent {
            ms: age / 1_000_000,
        })
    }

    /// How long to pause before reopening after closing at `now` for
    /// `reason`; `None` when the ingest must not reopen (stopping).
    pub fn pause_before_reopen(&self, now: u64, reason: &StopReason) -> Option<u64> {
        if *reason == StopReason::Stopping {
            return None;
        }
        // A listener that failed right after opening (its port still held,
        // say) must not spin.
        let quick_failure = now.saturating_sub(self.opened_at) < 200_000_000;
        Some(match self.cfg.mode {
            Reopen::Listener if !quick_failure => 0,
            _ => self.cfg.retry_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn cfg(mode: Reopen) -> LossConfig {
        LossConfig {
            timeout_ns: 1000 * MS,
            retry_ns: 1000 * MS,
            mode,
        }
    }

    /// Packets every 40 ms except in `gaps`; ticks every 100 ms (as the
    /// ingest thread's bus poll). Returns the first stop, with its time.
    fn run(gaps: &[(u64, u64)], until_ms: u64) -> Option<(u64, StopReason)> {
        let mut d = LossDetector::new(cfg(Reopen::Listener), 0);
        let mut next_packet = 0;
        for t in (0..until_ms).step_by(100) {
            while next_packet <= t {
                if !gaps.iter().any(|&(a, b)| (a..b).contains(&next_packet)) {
                    d.packet(next_packet * MS);
                }
                next_packet += 40;
            }
            if let Some(r) = d.tick(t * MS, &Observation::Nothing) {
                return Some((t, r));
            }
        }
        None
    }

    #[test]
    fn a_loss_shorter_than_the_timeout_is_not_a_loss() {
        assert_eq!(run(&[(2000, 2900)], 10_000), None);
    }

    #[test]
    fn a_loss_at_the_threshold_is_a_loss_and_is_seen_within_one_poll() {
        // Last packet at 1960 ms; 1000 ms later is 2960: seen at 3000.
        let (t, r) = run(&[(2000, 10_000)], 10_000).unwrap();
        assert_eq!(t, 3000);
        assert_eq!(r, StopReason::Silent { ms: 1040 });
        // Just under the threshold at every poll: never a loss.
        assert_eq!(run(&[(2000, 2960)], 10_000), None);
    }

    #[test]
    fn a_listener_waiting_for_its_encoder_is_not_lost() {
        let d = LossDetector::new(cfg(Reopen::Listener), 0);
        assert_eq!(d.tick(60_000 * MS, &Observation::Nothing), None);
        assert!(!d.present());
    }

    #[test]
    fn end_error_and_stop_are_typed() {
        let d = LossDetector::new(cfg(Reopen::Caller), 0);
        assert_eq!(d.tick(0, &Observation::Eos), Some(StopReason::Ended));
        assert_eq!(d.tick(0, &Observation::Stop), Some(StopReason::Stopping));
        let e = d.tick(0, &Observation::Error("boom".into())).unwrap();
        assert_eq!(e.to_string(), "boom");
        assert_eq!(
            d.pause_before_reopen(5_000 * MS, &StopReason::Stopping),
            None
        );
    }

    #[test]
    fn a_listener_reopens_at_once_and_a_caller_after_a_pause() {
        let l = LossDetector::new(cfg(Reopen::Listener), 0);
        let c = LossDetector::new(cfg(Reopen::Caller), 0);
        let lost = StopReason::Silent { ms: 1000 };
        assert_eq!(l.pause_before_reopen(5_000 * MS, &lost), Some(0));
        assert_eq!(c.pause_before_reopen(5_000 * MS, &lost), Some(1000 * MS));
        // A listener that fails straight after opening does not spin.
        assert_eq!(
            l.pause_before_reopen(50 * MS, &StopReason::Ended),
            Some(1000 * MS)
        );
    }

    #[test]
    fn a_clock_step_back_or_a_packet_stamped_ahead_does_not_fake_a_loss() {
        let mut d = LossDetector::new(cfg(Reopen::Listener), 10_000 * MS);
        d.packet(10_050 * MS);
        // A packet stamped a little ahead of the ticking thread's clock.
        assert_eq!(d.tick(10_040 * MS, &Observation::Nothing), None);
        // A late tick reading an older time than the last packet.
        assert_eq!(d.tick(5_000 * MS, &Observation::Nothing), None);
        // An older stamp never moves the last packet back.
        d.packet(9_000 * MS);
        assert_eq!(d.tick(10_900 * MS, &Observation::Nothing), None);
    }
}
