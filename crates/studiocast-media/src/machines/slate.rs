//! What the program video shows at each output tick: the freshest decoded
//! frame of the input, a repeat of the last one, or the slate; when to cut
//! back from the slate, and where the discontinuity goes.
//!
//! Sans-IO: the video pump gives it the tick number, the monotonic time and
//! the arrival stamps of the frames waiting in the ingest's queue; it
//! answers with a [`Tick`]. No clock, thread or GStreamer type inside, so
//! every path is tested with simulated time.
//!
//! Rules:
//! * a frame is shown `delay` after it arrived (so picture and sound, which
//!   waits as long in the audio ring, leave together);
//! * the input is lost when its newest frame is `loss` old or older; the
//!   slate goes up on the next tick;
//! * the first signal of a session cuts in at once; a return after a loss
//!   waits for the next segment boundary (a multiple of `gop` ticks), so the
//!   discontinuity falls between segments and every rendition can mark the
//!   same segment;
//! * at most one cut-back per boundary, and none while the input is stale,
//!   however the input flaps.

/// Fixed settings of one program.
#[derive(Debug, Clone, Copy)]
pub struct SlateConfig {
    /// Ticks per segment (the GOP): cut-backs wait for a multiple of it.
    pub gop: u64,
    /// How long a frame waits after arrival before it is shown, ns.
    pub delay_ns: u64,
    /// An input whose newest frame is this old is lost, ns.
    pub loss_ns: u64,
}

/// What to put on the air at this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// The queued frame with this arrival stamp.
    Frame(u64),
    /// The last frame shown again (the input is slower than the program).
    Repeat,
    Slate,
}

/// The decision for one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub show: Show,
    /// The program returns from the slate at this tick: the segment that
    /// starts here follows a discontinuity.
    pub discontinuity: bool,
    /// This tick starts a segment: the encoder must make a key frame.
    pub key_frame: bool,
    /// Frames that arrived after the last one shown and before this one,
    /// never shown (the input is faster than the program).
    pub dropped: u64,
    /// The slate went up at this tick (the input was lost).
    pub lost: bool,
}

#[derive(Debug, Clone)]
pub struct SlateMachine {
    cfg: SlateConfig,
    live: bool,
    ever_live: bool,
    /// Arrival stamp of the last input frame shown.
    last_shown: Option<u64>,
}

impl SlateMachine {
    pub fn new(cfg: SlateConfig) -> Self {
        SlateMachine {
            cfg: SlateConfig {
                gop: cfg.gop.max(1),
                ..cfg
            },
            live: false,
            ever_live: false,
            last_shown: None,
        }
    }

    /// Decide tick `n` at monotonic time `now_ns`. `arrivals` are the
    /// arrival stamps of the queued frames, oldest first (stamps from the
    /// future, as after a clock step, are treated as just arrived).
    pub fn tick(&mut self, n: u64, now_ns: u64, arrivals: &[u64]) -> Tick {
        let boundary = n.is_multiple_of(self.cfg.gop);
        let newest = arrivals.last().copied();
        // The freshest frame old enough to be shown.
        let pick = arrivals
            .iter()
            .rev()
            .copied()
            .find(|&t| t.saturating_add(self.cfg.delay_ns) <= now_ns);
        let fresh = newest.is_some_and(|t| now_ns.saturating_sub(t) < self.cfg.loss_ns);
        let mut out = Tick {
            show: Show::Slate,
            discontinuity: false,
            key_frame: boundary,
            dropped: 0,
            lost: false,
        };
        if self.live && !fresh {
            self.live = false;
            out.lost = true;
        } else if !self.live && fresh && pick.is_some() && (!self.ever_live || boundary) {
            out.discontinuity = self.ever_live;
            self.live = true;
            self.ever_live = true;
        }
        if !self.live {
            return out;
        }
        out.show = match pick {
            Some(t) if Some(t) != self.last_shown => {
                if let Some(last) = self.last_shown {
                    out.dropped = arrivals.iter().filter(|&&x| x > last && x < t).count() as u64;
                }
                self.last_shown = Some(t);
                Show::Frame(t)
            }
            _ if self.last_shown.is_some() => Show::Repeat,
            // Live without a frame shown yet cannot happen (a cut-in needs
            // a pick); the slate is the safe answer.
            _ => Show::Slate,
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// A simulated program: `fps` ticks a second, an input whose frames
    /// arrive as `source(t)` says (`Some(frame period)` while it sends).
    struct Sim {
        m: SlateMachine,
        fps: u64,
        queue: Vec<u64>,
        next_frame: u64,
        log: Vec<(u64, Tick)>,
    }

    impl Sim {
        fn new(fps: u64, gop: u64) -> Self {
            Self::with_loss(fps, gop, 1000)
        }

        fn with_loss(fps: u64, gop: u64, loss_ms: u64) -> Self {
            Sim {
                m: SlateMachine::new(SlateConfig {
                    gop,
                    delay_ns: 64 * MS,
                    loss_ns: loss_ms * MS,
                }),
                fps,
                queue: Vec::new(),
                next_frame: 0,
                log: Vec::new(),
            }
        }

        /// Run ticks `from..to`; `period(t)` gives the input's frame period
        /// at time t (None: nothing arrives). `clock(t)` maps tick time to
        /// the machine's clock (a step, say).
        fn run(
            &mut self,
            ticks: std::ops::Range<u64>,
            period: impl Fn(u64) -> Option<u64>,
            clock: impl Fn(u64) -> u64,
        ) {
            for n in ticks {
                let t = n * 1_000_000_000 / self.fps;
                while self.next_frame <= t {
                    match period(self.next_frame) {
                        Some(p) => {
                            self.queue.push(clock(self.next_frame));
                            if self.queue.len() > 16 {
                                self.queue.remove(0);
                            }
                            self.next_frame += p;
                        }
                        None => self.next_frame += MS,
                    }
                }
                let tick = self.m.tick(n, clock(t), &self.queue);
                self.log.push((n, tick));
            }
        }

        fn discontinuities(&self) -> Vec<u64> {
            self.log
                .iter()
                .filter(|(_, t)| t.discontinuity)
                .map(|(n, _)| *n)
                .collect()
        }

        fn slate_ticks(&self) -> usize {
            self.log
                .iter()
                .filter(|(_, t)| t.show == Show::Slate)
                .count()
        }
    }

    fn up(p: u64) -> impl Fn(u64) -> Option<u64> {
        move |_| Some(p)
    }

    fn id(t: u64) -> u64 {
        t
    }

    /// Frames at 30 fps except during [from, to) seconds.
    fn gap(from_ms: u64, to_ms: u64) -> impl Fn(u64) -> Option<u64> {
        move |t| (!(from_ms * MS..to_ms * MS).contains(&t)).then_some(33_333_333)
    }

    #[test]
    fn first_signal_cuts_in_at_once_without_a_discontinuity() {
        let mut s = Sim::new(30, 60);
        s.run(0..90, up(33_333_333), id);
        // Shown 64 ms after arrival: the third tick is the first live one.
        assert_eq!(s.log[0].1.show, Show::Slate);
        assert!(matches!(s.log[3].1.show, Show::Frame(_)), "{:?}", s.log[3]);
        assert!(s.discontinuities().is_empty());
        assert_eq!(s.slate_ticks(), 2);
    }

    #[test]
    fn a_loss_shorter_than_the_timeout_never_shows_the_slate() {
        let mut s = Sim::new(30, 60);
        s.run(0..300, gap(3000, 3900), id);
        assert_eq!(s.slate_ticks(), 2, "only before the first frame");
        assert!(s.discontinuities().is_empty());
        // The frozen picture repeats meanwhile.
        let repeats = s.log.iter().filter(|(_, t)| t.show == Show::Repeat).count();
        assert!(repeats >= 25, "{repeats}");
    }

    #[test]
    fn a_loss_at_the_threshold_is_decided_the_same_way_every_time() {
        // The newest frame is exactly `loss` old at a tick: lost (the rule
        // is "fresh while younger than loss").
        let mut m = SlateMachine::new(SlateConfig {
            gop: 60,
            delay_ns: 0,
            loss_ns: 1000 * MS,
        });
        assert!(matches!(m.tick(0, 0, &[0]).show, Show::Frame(0)));
        assert!(!m.tick(1, 999 * MS, &[0]).lost);
        let t = m.tick(2, 1000 * MS, &[0]);
        assert!(t.lost && t.show == Show::Slate);
    }

    #[test]
    fn a_source_flapping_at_the_threshold_cuts_back_at_most_once_per_segment() {
        // Gaps of 950 ms (just under the 1 s timeout) and 1050 ms (just
        // over) in turn, each after 3 s of frames, for 40 s. A 950 ms gap
        // never shows the slate; each 1050 ms gap is one loss and one
        // cut-back, on a segment boundary.
        let mut s = Sim::new(30, 60);
        let flap = |t: u64| {
            let (cycle, phase) = ((t / MS) / 4000, (t / MS) % 4000);
            let gap = if cycle % 2 == 0 { 950 } else { 1050 };
            (phase < 3000 || phase >= 3000 + gap).then_some(33_333_333)
        };
        s.run(0..1320, flap, id);
        let lost: Vec<u64> = s
            .log
            .iter()
            .filter(|(_, t)| t.lost)
            .map(|(n, _)| *n)
            .collect();
        let d = s.discontinuities();
        // Ten cycles and a bit: the five long gaps (cycles 1, 3, 5, 7, 9)
        // are losses.
        assert_eq!(lost.len(), 5, "losses at ticks {lost:?}");
        for n in &lost {
            // The gap began a timeout before the loss was seen.
            let cycle = (n * 1000 / 30 - 1000) / 4000;
            assert_eq!(cycle % 2, 1, "a 950 ms gap showed the slate at tick {n}");
        }
        assert_eq!(d.len(), 5, "cut-backs at {d:?}");
        for n in &d {
            assert_eq!(n % 60, 0, "discontinuity off a segment boundary at {n}");
        }
    }

    #[test]
    fn a_return_mid_segment_waits_for_the_next_boundary() {
        let mut s = Sim::new(30, 60);
        // Lost at 3 s; back at 5.5 s (tick 165, mid segment 2: 120..180).
        s.run(0..400, gap(3000, 5500), id);
        assert_eq!(s.discontinuities(), vec![180]);
        // Slate from the loss until tick 180, picture after.
        let lost = s.log.iter().find(|(_, t)| t.lost).unwrap().0;
        assert!((119..=125).contains(&lost), "lost at {lost}");
        assert!(s.log[170].1.show == Show::Slate);
        assert!(matches!(s.log[180].1.show, Show::Frame(_)));
        assert!(s.log[180].1.key_frame);
    }

    #[test]
    fn a_source_back_at_another_frame_rate_keeps_the_program_cadence() {
        let mut s = Sim::new(30, 60);
        // 30 fps, lost from 3 s to 5 s, back at 25 fps, then 50 fps.
        let period = |t: u64| match t / MS {
            0..3000 => Some(33_333_333),
            3000..5000 => None,
            5000..9000 => Some(40_000_000),
            _ => Some(20_000_000),
        };
        s.run(0..420, period, id);
        assert_eq!(s.discontinuities(), vec![180]);
        // Every tick shows something; at 25 fps some ticks repeat, at
        // 50 fps frames are dropped, and the tick count never changes.
        assert_eq!(s.log.len(), 420);
        let at25 = &s.log[200..260];
        let repeats = at25.iter().filter(|(_, t)| t.show == Show::Repeat).count();
        assert!((8..=12).contains(&repeats), "{repeats} repeats at 25 fps");
        let dropped: u64 = s.log[300..360].iter().map(|(_, t)| t.dropped).sum();
        // 100 frames arrive in those 2 s, 60 are shown.
        assert!((38..=42).contains(&dropped), "{dropped} dropped at 50 fps");
    }

    #[test]
    fn two_losses_within_one_segment_give_one_discontinuity() {
        // A 300 ms loss timeout; segment 120..180 (4.0–6.0 s). The input
        // stops at 4.1 s (slate at 4.4 s), returns at 4.6 s, stops again
        // at 4.8 s and returns for good at 5.2 s: one cut-back, at the
        // boundary, with one discontinuity.
        let mut s = Sim::with_loss(30, 60, 300);
        let period = |t: u64| match t / MS {
            4100..4600 | 4800..5200 => None,
            _ => Some(33_333_333),
        };
        s.run(0..300, period, id);
        assert_eq!(s.discontinuities(), vec![180]);
        let lost: Vec<u64> = s
            .log
            .iter()
            .filter(|(_, t)| t.lost)
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert!((131..=134).contains(&lost[0]), "{lost:?}");
        assert!(s.log[135..180].iter().all(|(_, t)| t.show == Show::Slate));
        assert!(s.log[180..].iter().all(|(_, t)| t.show != Show::Slate));
    }

    #[test]
    fn a_clock_step_neither_fakes_nor_hides_a_loss() {
        // The pump's clock is monotonic, so a wall-clock (NTP) step never
        // reaches the machine. A monotonic source can still be re-based
        // (a new pipeline clock): here it steps back 5 s at 4 s and jumps
        // 0.5 s forward at 7 s. No panic, no slate while frames keep
        // coming, and a real loss afterwards is still seen.
        let step = |t: u64| match t / MS {
            0..4000 => t + 10_000 * MS,
            4000..7000 => t + 5_000 * MS,
            _ => t + 5_500 * MS,
        };
        let mut s = Sim::new(30, 60);
        s.run(0..400, up(33_333_333), step);
        assert!(s.discontinuities().is_empty());
        assert!(s.log.iter().all(|(_, t)| !t.lost), "a step faked a loss");
        assert!(s.log[130..].iter().all(|(_, t)| t.show != Show::Slate));
        s.run(400..500, gap(13_500, 20_000), step);
        assert!(s.log[400..].iter().any(|(_, t)| t.lost), "loss hidden");
    }
}
