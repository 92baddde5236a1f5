//! Capture ring → fixed pipeline blocks, through rubato's adjustable
//! asynchronous resampler steered by the [`DriftController`]. Set-up
//! allocates; [`DriftCompensator::process_into_buffer`] does not.

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Async, FixedAsync, PolynomialDegree, Resampler};

use crate::drift::{DriftController, DriftSettings};
use crate::ring::RingConsumer;

/// Widest correction the resampler accepts (the controller stays far below).
const MAX_RELATIVE: f64 = 1.01;

pub struct DriftCompensator {
    resampler: Async<f32>,
    controller: DriftController,
    channels: usize,
    block: usize,
    input: Vec<f32>,
    target_fill: usize,
    rate: u32,
    prime_extra: usize,
    primed: bool,
    last_frames: usize,
    /// The ratio the controller chose for the block not produced yet. The
    /// controller integrates once per block taken, never per retry: a
    /// consumer that polls a short ring every few milliseconds would
    /// otherwise wind the loop up with every poll.
    pending_ratio: Option<f64>,
}

impl DriftCompensator {
    /// `block`: frames per output block; `target_fill`: ring level to hold.
    pub fn new(
        channels: usize,
        rate: u32,
        block: usize,
        target_fill: usize,
    ) -> Result<Self, String> {
        let resampler = Async::<f32>::new_poly(
            1.0,
            MAX_RELATIVE,
            PolynomialDegree::Cubic,
            block,
            channels,
            FixedAsync::Output,
        )
        .map_err(|e| e.to_string())?;
        let max_in = resampler.input_frames_max();
        Ok(DriftCompensator {
            resampler,
            controller: DriftController::new(DriftSettings::new(target_fill), rate),
            channels,
            block,
            input: vec![0.0; channels * max_in],
            target_fill,
            rate,
            prime_extra: 0,
            primed: false,
            last_frames: 0,
            pending_ratio: None,
        })
    }

    /// Extra frames to queue before starting, for a consumer that takes its
    /// blocks a little ahead of the clock (the level then settles on target).
    pub fn set_prime_extra(&mut self, frames: usize) {
        self.prime_extra = frames;
    }

    /// After the input went silent (a lost network source, a stalled
    /// interface): wait for the ring to refill to its target before the
    /// next block, and re-learn the drift, which a new sender may not share.
    pub fn restart(&mut self) {
        self.primed = false;
        self.pending_ratio = None;
        self.controller = DriftController::new(DriftSettings::new(self.target_fill), self.rate);
    }

    pub fn controller(&self) -> &DriftController {
        &self.controller
    }

    /// The untouched device frames the last block consumed, planar (channel
    /// c at `[c * frames..]`), with their frame count: what the archival
    /// master records.
    pub fn last_input(&self) -> (&[f32], usize) {
        (
            &self.input[..self.channels * self.last_frames],
            self.last_frames,
        )
    }

    /// Input frames the next block will take.
    pub fn input_needed(&self) -> usize {
        self.resampler.input_frames_next()
    }

    /// Produce one block (planar, channel c at `out[c * block..]`) when the
    /// ring holds enough input; `false` means "not yet, try again". A failed
    /// attempt leaves the drift loop exactly as it was.
    pub fn process_into_buffer(&mut self, ring: &mut RingConsumer, out: &mut [f32]) -> bool {
        if out.len() < self.channels * self.block {
            return false;
        }
        let fill = ring.fill_frames();
        // Start only once the ring holds its target, so the capture delay
        // (and the A/V offset) starts where the loop will hold it.
        if !self.primed {
            if fill < self.target_fill + self.prime_extra {
                return false;
            }
            self.primed = true;
        }
        // Not even enough for the ratio in force: the loop learns nothing
        // from a poll that finds the ring short.
        if self.pending_ratio.is_none() && fill < self.resampler.input_frames_next() {
            return false;
        }
        if self.pending_ratio.is_none() {
            let ratio = self.controller.update(fill, self.block);
            if let Some(adj) = self.resampler.as_adjustable() {
                let _ = adj.set_resample_ratio_relative(ratio, true);
            }
            self.pending_ratio = Some(ratio);
        }
        // The new ratio may ask for a frame more than the ring holds: wait
        // for it with the ratio already chosen.
        let need = self.resampler.input_frames_next();
        if fill < need {
            return false;
        }
        self.pending_ratio = None;
        let buf = &mut self.input[..self.channels * need];
        ring.pop_planar(need, buf);
        self.last_frames = need;
        let (Ok(inp), Ok(mut outp)) = (
            SequentialSlice::new(&*buf, self.channels, need),
            SequentialSlice::new_mut(
                &mut out[..self.channels * self.block],
                self.channels,
                self.block,
            ),
        ) else {
            return false;
        };
        self.resampler
            .process_into_buffer(&inp, &mut outp, None)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::ring;

    /// A 1 kHz tone through a device 100 ppm fast: blocks keep coming, the
    /// ring level stays put, and the tone comes out clean.
    #[test]
    fn resamples_a_fast_device_without_starving_or_overflowing() {
        let (rate, block) = (48_000u32, 1024usize);
        let (mut p, mut c, stats) = ring(2, 48_000);
        let mut comp = DriftCompensator::new(2, rate, block, 4096).unwrap();
        let mut out = vec![0.0f32; 2 * block];
        let mut phase = 0.0f64;
        let mut device_debt = 0.0f64;
        let mut produced = Vec::new();
        let mut fills = Vec::new();
        let period = 256;
        let mut inter = vec![0.0f32; 2 * period];
        // Prime the ring to the target.
        for _ in 0..16 {
            for f in 0..period {
                let v = (phase.sin() * 0.5) as f32;
                phase += 2.0 * std::f64::consts::PI * 1000.0 / rate as f64;
                inter[2 * f] = v;
                inter[2 * f + 1] = -v;
            }
            p.push_interleaved(&inter);
        }
        for _ in 0..3000 {
            device_debt += block as f64 * (1.0 + 100e-6);
            while device_debt >= period as f64 {
                for f in 0..period {
                    let v = (phase.sin() * 0.5) as f32;
                    phase += 2.0 * std::f64::consts::PI * 1000.0 / (rate as f64 * (1.0 + 100e-6));
                    inter[2 * f] = v;
                    inter[2 * f + 1] = -v;
                }
                p.push_interleaved(&inter);
                device_debt -= period as f64;
            }
            assert!(comp.process_into_buffer(&mut c, &mut out), "starved");
            produced.extend_from_slice(&out[..block]);
            fills.push(c.fill_frames());
        }
        assert_eq!(stats.overruns.load(std::sync::atomic::Ordering::Relaxed), 0);
        let late = &fills[fills.len() - 500..];
        let spread = late.iter().max().unwrap() - late.iter().min().unwrap();
        assert!(spread < 1024, "ring level wanders by {spread} frames");
        // The output is still a clean 1 kHz tone (no clicks): energy away
        // from 1 kHz stays 50 dB down.
        let x = &produced[produced.len() - 48_000..];
        let tone = goertzel(x, 1000.0, rate);
        for f in [500.0, 1500.0, 3000.0] {
            assert!(goertzel(x, f, rate) < tone * 1e-5, "energy at {f} Hz");
        }
    }

    /// A consumer polls a short ring many times before a block is due in
    /// full: the drift loop must see one update per block taken, not one
    /// per poll (each poll used to integrate another step of "ring low").
    #[test]
    fn polling_a_short_ring_does_not_move_the_loop() {
        let (mut p, mut c, _) = ring(2, 48_000);
        let mut comp = DriftCompensator::new(2, 48_000, 1024, 4096).unwrap();
        let mut out = vec![0.0f32; 2 * 1024];
        p.push_interleaved(&vec![0.0; 2 * 4096]);
        assert!(comp.process_into_buffer(&mut c, &mut out));
        let before = comp.controller().clone();
        // 3072 left, then 100 polls that find too little.
        let mut sink = vec![0.0f32; 2 * 3000];
        c.pop_planar(3000, &mut sink);
        for _ in 0..100 {
            assert!(!comp.process_into_buffer(&mut c, &mut out));
        }
        assert_eq!(comp.controller().ratio(), before.ratio());
        assert_eq!(comp.controller().error_s(), before.error_s());
        // Enough again: exactly one update for the block taken.
        p.push_interleaved(&vec![0.0; 2 * 4096]);
        let fill_then = c.fill_frames();
        assert!(comp.process_into_buffer(&mut c, &mut out));
        let mut once = before.clone();
        once.update(fill_then, 1024);
        assert_eq!(comp.controller().ratio(), once.ratio());
    }

    fn goertzel(x: &[f32], f: f64, rate: u32) -> f64 {
        let w = 2.0 * std::f64::consts::PI * f / rate as f64;
        let k = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for v in x {
            let s = *v as f64 + k * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        s1 * s1 + s2 * s2 - k * s1 * s2
    }
}
