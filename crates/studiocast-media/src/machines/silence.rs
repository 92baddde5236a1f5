//! When the audio thread takes a block from a live input, waits for it, or
//! plays silence instead, so the stream never stalls when an input goes
//! quiet and picks the input up again when it returns.
//!
//! Sans-IO: the audio thread asks [`SilencePolicy::is_due`] before trying
//! the input, and reports each attempt with [`SilencePolicy::tick`]; all
//! times are the pipeline's running time in ns (monotonic). No clock,
//! thread or allocation inside.
//!
//! Rules:
//! * block `n` is due at `base + n·block`; it may be taken `lead` early;
//! * a block that is due but not there is waited for while the input has
//!   been short for less than `patience` (four times as long before the
//!   first block, while the source opens);
//! * after that, silence is played on schedule, one block per due time,
//!   until the input delivers again; the drift loop is restarted when the
//!   silence begins (a returning source may not share the old clock).

#[derive(Debug, Clone, Copy)]
pub struct SilenceConfig {
    /// How far ahead of its due time a block may be taken, ns.
    pub lead_ns: u64,
    /// How long a due block is waited for before silence, ns.
    pub patience_ns: u64,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The input delivered: play its block. `resumed` on the first block
    /// after a silence.
    Play { resumed: bool },
    /// Nothing yet: try again shortly.
    Wait,
    /// Play a block of silence now. `began` on the first one of a silence
    /// (restart the drift loop then).
    Silence { began: bool },
}

#[derive(Debug, Clone)]
pub struct SilencePolicy {
    cfg: SilenceConfig,
    /// Running time of block 0, fixed by the first block played.
    base: Option<u64>,
    starved_since: Option<u64>,
    silent: bool,
}

impl SilencePolicy {
    pub fn new(cfg: SilenceConfig) -> Self {
        SilencePolicy {
            cfg,
            base: None,
            starved_since: None,
            silent: false,
        }
    }

    /// Running time at which the block `offset_ns` after the first plays
    /// (its timestamp), once the first block has fixed the base.
    pub fn due(&self, offset_ns: u64) -> Option<u64> {
        self.base.map(|b| b.saturating_add(offset_ns))
    }

    /// May block `n` be taken at `now`? Always before the first block.
    pub fn is_due(&self, now: u64, due: Option<u64>) -> bool {
        due.is_none_or(|d| now.saturating_add(self.cfg.lead_ns) >= d)
    }

    /// Report an attempt at `now` for a block due at `due` (None before
    /// the first block); `delivered`: the input had the block.
    pub fn tick(&mut self, now: u64, due: Option<u64>, delivered: bool) -> Decision {
        if delivered {
            self.starved_since = None;
            self.base.get_or_insert(now);
            let resumed = std::mem::take(&mut self.silent);
            return Decision::Play { resumed };
        }
        let since = *self.starved_since.get_or_insert(now);
        let patience = if self.base.is_some() {
            self.cfg.patience_ns
        } else {
            self.cfg.patience_ns.saturating_mul(4)
        };
        if !self.is_due(now, due) || now.saturating_sub(since) < patience {
            return Decision::Wait;
        }
        self.base.get_or_insert(now);
        let began = !self.silent;
        self.silent = true;
        Decision::Silence { began }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    /// 1024 frames at 48 kHz.
    const BLOCK_NS: u64 = 21_333_333;

    fn policy() -> SilencePolicy {
        SilencePolicy::new(SilenceConfig {
            lead_ns: 40 * MS,
            patience_ns: 250 * MS,
        })
    }

    /// Drive the policy like the audio thread: poll every 2 ms; the input
    /// has a block whenever `input(now)` says so. Returns the decisions
    /// that were not waits, with their times.
    fn drive(
        p: &mut SilencePolicy,
        until: u64,
        input: impl Fn(u64) -> bool,
    ) -> Vec<(u64, Decision)> {
        let mut out = Vec::new();
        let mut n = 0u64;
        let mut now = 0u64;
        while now < until {
            let due = p.due(n * BLOCK_NS);
            if p.is_due(now, due) {
                let d = p.tick(now, due, input(now));
                if d != Decision::Wait {
                    out.push((now, d));
                    n += 1;
                }
            }
            now += 2 * MS;
        }
        out
    }

    fn silences(log: &[(u64, Decision)]) -> usize {
        log.iter()
            .filter(|(_, d)| matches!(d, Decision::Silence { .. }))
            .count()
    }

    #[test]
    fn a_steady_input_plays_every_block_on_time() {
        let mut p = policy();
        let log = drive(&mut p, 10_000 * MS, |_| true);
        assert_eq!(silences(&log), 0);
        // 10 s of 21.3 ms blocks, taken at most 40 ms early.
        assert!((468..=471).contains(&log.len()), "{}", log.len());
    }

    #[test]
    fn a_gap_shorter_than_the_patience_is_waited_out() {
        let mut p = policy();
        let log = drive(&mut p, 5_000 * MS, |t| {
            !(2_000 * MS..2_200 * MS).contains(&t)
        });
        assert_eq!(silences(&log), 0);
    }

    #[test]
    fn a_long_gap_plays_silence_on_schedule_then_resumes() {
        let mut p = policy();
        let log = drive(&mut p, 6_000 * MS, |t| {
            !(2_000 * MS..4_000 * MS).contains(&t)
        });
        let s: Vec<_> = log
            .iter()
            .filter(|(_, d)| matches!(d, Decision::Silence { .. }))
            .collect();
        // Silence starts after the patience, catches up with the blocks
        // that fell due meanwhile, and fills the gap one block per due
        // time: the whole 2 s gap (93.75 blocks) is covered.
        assert!(matches!(s[0].1, Decision::Silence { began: true }));
        assert!(s[1..]
            .iter()
            .all(|(_, d)| *d == Decision::Silence { began: false }));
        assert!((2_200 * MS..2_300 * MS).contains(&s[0].0), "{}", s[0].0);
        assert!((92..=96).contains(&s.len()), "{} silent blocks", s.len());
        let back = log
            .iter()
            .find(|(_, d)| *d == Decision::Play { resumed: true })
            .expect("resumed");
        assert!((4_000 * MS..4_050 * MS).contains(&back.0));
        // The cadence never changed: blocks keep their due times
        // ((6000 + 40 ms lead) / 21.33 ms ≈ 283).
        assert!((282..=285).contains(&log.len()), "{}", log.len());
    }

    #[test]
    fn an_input_flapping_at_the_patience_never_stalls_the_stream() {
        // Gaps of 240 and 260 ms at the start of each second, in turn: the
        // short ones are waited out, the long ones become (short)
        // silences; the block count is that of a steady input started when
        // the first gap ends (block 0 plays at 240 ms): (10 000 − 240 +
        // 40 ms lead) / 21.33 ms ≈ 459.
        let mut p = policy();
        let flap = |t: u64| {
            let phase = (t / MS) % 1000;
            let gap = if (t / MS / 1000).is_multiple_of(2) {
                240
            } else {
                260
            };
            phase >= gap
        };
        let log = drive(&mut p, 10_000 * MS, flap);
        assert!((458..=461).contains(&log.len()), "{}", log.len());
        let began = log
            .iter()
            .filter(|(_, d)| *d == Decision::Silence { began: true })
            .count();
        assert!(began <= 5, "{began} silences for 5 long gaps");
    }

    #[test]
    fn the_first_block_gets_longer_to_arrive() {
        let mut p = policy();
        // The source opens after 800 ms: no silence before it.
        let log = drive(&mut p, 2_000 * MS, |t| t >= 800 * MS);
        assert_eq!(silences(&log), 0);
        assert!(matches!(log[0].1, Decision::Play { .. }));
        // A source that never opens gets silence after 4 × patience.
        let mut p = policy();
        let log = drive(&mut p, 2_000 * MS, |_| false);
        assert!((1_000 * MS..1_010 * MS).contains(&log[0].0), "{}", log[0].0);
    }

    #[test]
    fn a_clock_step_back_does_not_panic_or_play_early() {
        let mut p = policy();
        assert!(matches!(
            p.tick(10_000 * MS, None, true),
            Decision::Play { .. }
        ));
        let due = p.due(BLOCK_NS);
        // The clock goes back 5 s: the block is not due, nothing is played.
        assert!(!p.is_due(5_000 * MS, due));
        assert_eq!(p.tick(5_000 * MS, due, false), Decision::Wait);
    }
}
