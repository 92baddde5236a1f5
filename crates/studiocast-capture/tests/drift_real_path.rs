//! Two simulated hours of clock drift through the code the live audio
//! thread runs: the capture ring and the [`DriftCompensator`] with rubato's
//! real adjustable resampler (not the ideal-resampler model in `drift.rs`).
//!
//! The device delivers 256-frame periods on its own clock, ±100 ppm off the
//! nominal rate. The consumer behaves like the session's audio thread: it
//! takes a 1024-frame block when the pipeline clock is within the lead of
//! the block's due time and polls every 2 ms while the ring is short. The
//! A/V offset is measured from what the resampler really consumed: how long
//! before a block is played the input it starts with arrived, against the
//! same figure for the first block (video is held back by a fixed delay, so
//! any change of this latency is an A/V offset).

use studiocast_capture::compensator::DriftCompensator;
use studiocast_capture::ring::ring;

const RATE: f64 = 48_000.0;
const BLOCK: usize = 1024;
const PERIOD: usize = 256;
/// As in the session's audio thread: three blocks held, 40 ms of lead.
const TARGET: usize = 3 * BLOCK;
const LEAD_S: f64 = 0.040;
const POLL_S: f64 = 0.002;

struct Outcome {
    worst_offset_ms: f64,
    estimate_ppm: f64,
    blocks: u64,
    underruns: u64,
    overruns: u64,
}

fn simulate(ppm: f64, hours: f64) -> Outcome {
    let (mut producer, mut consumer, stats) = ring(2, 48_000);
    let mut comp = DriftCompensator::new(2, RATE as u32, BLOCK, TARGET).unwrap();
    comp.set_prime_extra((LEAD_S * RATE) as usize);
    let dev_dt = PERIOD as f64 / (RATE * (1.0 + ppm * 1e-6));
    // A tone, so the resampler works on a real signal.
    let mut period = vec![0.0f32; 2 * PERIOD];
    let mut phase = 0.0f64;
    let mut out = vec![0.0f32; 2 * BLOCK];
    let (mut next_dev, mut next_try) = (dev_dt, 0.0f64);
    let mut base: Option<f64> = None;
    let (mut n, mut consumed) = (0u64, 0u64);
    let mut reference: Option<f64> = None;
    let mut worst: f64 = 0.0;
    let end = hours * 3600.0;
    while next_try < end {
        if next_dev <= next_try {
            for f in 0..PERIOD {
                period[2 * f] = (phase.sin() * 0.5) as f32;
                phase += 2.0 * std::f64::consts::PI * 997.0 / RATE;
            }
            producer.push_interleaved(&period);
            next_dev += dev_dt;
            continue;
        }
        let now = next_try;
        if !comp.process_into_buffer(&mut consumer, &mut out) {
            next_try = now + POLL_S;
            continue;
        }
        let b = *base.get_or_insert(now);
        let played = b + n as f64 * BLOCK as f64 / RATE;
        // The first input frame of this block arrived with its period.
        let arrived = (consumed / PERIOD as u64 + 1) as f64 * dev_dt;
        let latency = played - arrived;
        let r = *reference.get_or_insert(latency);
        worst = worst.max((latency - r).abs());
        consumed += comp.last_input().1 as u64;
        n += 1;
        next_try = (b + n as f64 * BLOCK as f64 / RATE - LEAD_S).max(now);
    }
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    Outcome {
        worst_offset_ms: worst * 1e3,
        estimate_ppm: comp.controller().estimated_drift_ppm(),
        blocks: n,
        underruns: ld(&stats.underruns),
        overruns: ld(&stats.overruns),
    }
}

#[test]
fn two_hours_at_plus_and_minus_100_ppm_through_rubato_stay_within_10_ms() {
    for ppm in [100.0, -100.0] {
        let o = simulate(ppm, 2.0);
        eprintln!(
            "real path, {ppm:+} ppm, 2 h: worst A/V offset {:.2} ms, estimate {:+.1} ppm, {} blocks, {} underruns, {} overruns",
            o.worst_offset_ms, o.estimate_ppm, o.blocks, o.underruns, o.overruns
        );
        assert!(o.blocks as f64 > 2.0 * 3600.0 * RATE / BLOCK as f64 * 0.999);
        assert_eq!((o.underruns, o.overruns), (0, 0), "{ppm} ppm");
        assert!(
            o.worst_offset_ms <= 10.0,
            "{ppm} ppm: A/V offset reached {:.2} ms",
            o.worst_offset_ms
        );
        assert!(
            (o.estimate_ppm - ppm).abs() < 5.0,
            "{ppm} ppm estimated as {:.1}",
            o.estimate_ppm
        );
    }
}
