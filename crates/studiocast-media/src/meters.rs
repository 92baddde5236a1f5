//! Level meters for the technician: per-channel peak and RMS in dBFS with a
//! clip flag, for every input channel and the binaural output, about ten
//! times a second. The audio thread accumulates into preallocated buffers
//! and publishes through atomics; readers never block it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Full scale minus a hair: a sample this large has (or is about to) clip.
const CLIP: f32 = 0.999;
/// Shown for digital silence instead of -inf.
pub const FLOOR_DBFS: f32 = -120.0;

#[derive(Debug, Default)]
struct Cell {
    peak_dbfs: AtomicU32,
    rms_dbfs: AtomicU32,
    clip: AtomicBool,
}

/// The published levels of one session.
#[derive(Debug)]
pub struct MeterBank {
    labels: Vec<String>,
    /// What each channel carries (`W`, `bed L`, `violin`), where known.
    roles: Vec<Option<String>>,
    cells: Vec<Cell>,
    /// Windows published so far (0: nothing yet).
    windows: AtomicU64,
}

/// One channel's levels over the last window.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelLevel {
    pub label: String,
    pub role: Option<String>,
    pub peak_dbfs: f32,
    pub rms_dbfs: f32,
    pub clip: bool,
}

fn db(x: f64) -> f32 {
    if x <= 0.0 {
        FLOOR_DBFS
    } else {
        ((20.0 * x.log10()) as f32).max(FLOOR_DBFS)
    }
}

impl MeterBank {
    pub fn new(labels: Vec<String>) -> Self {
        let cells = labels
            .iter()
            .map(|_| {
                let c = Cell::default();
                c.peak_dbfs.store(FLOOR_DBFS.to_bits(), Ordering::Relaxed);
                c.rms_dbfs.store(FLOOR_DBFS.to_bits(), Ordering::Relaxed);
                c
            })
            .collect();
        MeterBank {
            roles: vec![None; labels.len()],
            labels,
            cells,
            windows: AtomicU64::new(0),
        }
    }

    /// Each channel's role, in order (missing ones have none).
    pub fn with_roles(mut self, roles: Vec<Option<String>>) -> Self {
        for (slot, r) in self.roles.iter_mut().zip(roles) {
            *slot = r;
        }
        self
    }

    /// The latest window, or `None` before the first one.
    pub fn read(&self) -> Option<(u64, Vec<ChannelLevel>)> {
        let w = self.windows.load(Ordering::Acquire);
        if w == 0 {
            return None;
        }
        Some((
            w,
            self.labels
                .iter()
                .zip(&self.roles)
                .zip(&self.cells)
                .map(|((l, r), c)| ChannelLevel {
                    label: l.clone(),
                    role: r.clone(),
                    peak_dbfs: f32::from_bits(c.peak_dbfs.load(Ordering::Relaxed)),
                    rms_dbfs: f32::from_bits(c.rms_dbfs.load(Ordering::Relaxed)),
                    clip: c.clip.load(Ordering::Relaxed),
                })
                .collect(),
        ))
    }
}

/// The audio thread's side: sums over a window, then publishes.
pub struct MeterAccumulator {
    peak: Vec<f32>,
    sumsq: Vec<f64>,
    clip: Vec<bool>,
    /// Samples summed per channel (inputs may come in other block sizes
    /// than the output).
    count: Vec<usize>,
    frames: usize,
    window: usize,
}

impl MeterAccumulator {
    /// `window`: frames per published reading (a tenth of a second).
    pub fn new(channels: usize, window: usize) -> Self {
        MeterAccumulator {
            peak: vec![0.0; channels],
            sumsq: vec![0.0; channels],
            clip: vec![false; channels],
            count: vec![0; channels],
            frames: 0,
            window: window.max(1),
        }
    }

    /// Add one planar block of channels starting at `first`.
    pub fn add(&mut self, first: usize, block: &[&[f32]]) {
        for (i, ch) in block.iter().enumerate() {
            let c = first + i;
            if c >= self.peak.len() {
                return;
            }
            let (mut p, mut s) = (self.peak[c], 0.0f64);
            for &x in ch.iter() {
                let a = x.abs();
                p = p.max(a);
                s += (x as f64) * (x as f64);
            }
            self.peak[c] = p;
            self.sumsq[c] += s;
            self.count[c] += ch.len();
            self.clip[c] |= p >= CLIP;
        }
    }

    /// Count `frames` as accumulated; publish when a window is full.
    pub fn advance(&mut self, frames: usize, bank: &MeterBank) {
        self.frames += frames;
        if self.frames < self.window {
            return;
        }
        for (c, cell) in bank.cells.iter().enumerate().take(self.peak.len()) {
            let rms = (self.sumsq[c] / self.count[c].max(1) as f64).sqrt();
            cell.peak_dbfs
                .store(db(self.peak[c] as f64).to_bits(), Ordering::Relaxed);
            cell.rms_dbfs.store(db(rms).to_bits(), Ordering::Relaxed);
            cell.clip.store(self.clip[c], Ordering::Relaxed);
            self.peak[c] = 0.0;
            self.sumsq[c] = 0.0;
            self.clip[c] = false;
            self.count[c] = 0;
        }
        self.frames = 0;
        bank.windows.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_scale_sine_reads_0_and_minus_3_dbfs_and_clips() {
        let bank = MeterBank::new(vec!["a".into(), "b".into()]);
        assert!(bank.read().is_none());
        let mut acc = MeterAccumulator::new(2, 4800);
        let sine: Vec<f32> = (0..4800)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin())
            .collect();
        let half: Vec<f32> = sine.iter().map(|x| x * 0.1).collect();
        for k in 0..4 {
            acc.add(
                0,
                &[
                    &sine[k * 1200..(k + 1) * 1200],
                    &half[k * 1200..(k + 1) * 1200],
                ],
            );
            acc.advance(1200, &bank);
        }
        let (w, l) = bank.read().unwrap();
        assert_eq!(w, 1);
        assert!(l[0].peak_dbfs.abs() < 0.01, "{l:?}");
        assert!((l[0].rms_dbfs + 3.01).abs() < 0.05, "{l:?}");
        assert!(l[0].clip);
        assert!((l[1].peak_dbfs + 20.0).abs() < 0.01, "{l:?}");
        assert!((l[1].rms_dbfs + 23.01).abs() < 0.05, "{l:?}");
        assert!(!l[1].clip);
        // Silence reads the floor, not -inf, and the clip flag clears.
        let zero = vec![0.0f32; 4800];
        acc.add(0, &[&zero, &zero]);
        acc.advance(4800, &bank);
        let (_, l) = bank.read().unwrap();
        assert_eq!(l[0].peak_dbfs, FLOOR_DBFS);
        assert!(!l[0].clip);
    }
}
