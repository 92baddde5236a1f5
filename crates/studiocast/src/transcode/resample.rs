//! A recording's rate to the preset's: rubato's synchronous FFT
//! resampler over the rendered stereo (two channels to resample, not the
//! sixteen of the input), streaming in fixed input chunks, with its delay
//! trimmed from the start and the last chunk flushed, so the output holds
//! exactly the input's duration at the new rate.

use anyhow::{Context, Result};
use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Resampler};

const CHUNK: usize = 1024;

pub struct StereoResampler {
    fft: Fft<f32>,
    ratio: f64,
    /// Input waiting for a whole chunk, planar (left then right).
    pending: [Vec<f32>; 2],
    input: Vec<f32>,
    output: Vec<f32>,
    /// Output frames of resampler delay still to drop.
    delay_left: usize,
    frames_in: u64,
    frames_out: u64,
    out: [Vec<f32>; 2],
}

impl StereoResampler {
    pub fn new(from: u32, to: u32) -> Result<StereoResampler> {
        let fft = Fft::<f32>::new(from as usize, to as usize, CHUNK, 2, FixedSync::Input)
            .with_context(|| format!("cannot resample {from} Hz to {to} Hz"))?;
        let max_out = fft.output_frames_max();
        Ok(StereoResampler {
            delay_left: fft.output_delay(),
            ratio: f64::from(to) / f64::from(from),
            fft,
            pending: [Vec::new(), Vec::new()],
            input: vec![0.0; 2 * CHUNK],
            output: vec![0.0; 2 * max_out],
            frames_in: 0,
            frames_out: 0,
            out: [Vec::new(), Vec::new()],
        })
    }

    /// Resample the next frames; with `flush`, also everything still
    /// inside. Returns the new output (left, right).
    pub fn process(&mut self, l: &[f32], r: &[f32], flush: bool) -> Result<(&[f32], &[f32])> {
        self.pending[0].extend_from_slice(l);
        self.pending[1].extend_from_slice(r);
        self.frames_in += l.len() as u64;
        self.out[0].clear();
        self.out[1].clear();
        let wanted = (self.frames_in as f64 * self.ratio).round() as u64;
        loop {
            let have = self.pending[0].len();
            if have < CHUNK {
                let more_needed = flush && self.frames_out < wanted;
                if !more_needed {
                    break;
                }
                // Zeros after the end push the last frames (and the
                // delay) out.
                for p in &mut self.pending {
                    p.resize(CHUNK, 0.0);
                }
            }
            for (c, p) in self.pending.iter().enumerate() {
                self.input[c * CHUNK..(c + 1) * CHUNK].copy_from_slice(&p[..CHUNK]);
            }
            for p in &mut self.pending {
                p.drain(..CHUNK);
            }
            let max_out = self.output.len() / 2;
            let inp = SequentialSlice::new(&self.input[..], 2, CHUNK)
                .map_err(|e| anyhow::anyhow!("resampler input: {e}"))?;
            let mut outp = SequentialSlice::new_mut(&mut self.output[..], 2, max_out)
                .map_err(|e| anyhow::anyhow!("resampler output: {e}"))?;
            let (_, produced) = self
                .fft
                .process_into_buffer(&inp, &mut outp, None)
                .context("resampling")?;
            let skip = self.delay_left.min(produced);
            self.delay_left -= skip;
            let room = (wanted - self.frames_out.min(wanted)) as usize;
            let take = (produced - skip).min(if flush { room } else { usize::MAX });
            for c in 0..2 {
                let start = c * max_out + skip;
                self.out[c].extend_from_slice(&self.output[start..start + take]);
            }
            self.frames_out += take as u64;
        }
        Ok((&self.out[0], &self.out[1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_keeps_its_pitch_length_and_level() {
        let (from, to) = (44_100u32, 48_000u32);
        let secs = 1.5;
        let n = (from as f64 * secs) as usize;
        let tone: Vec<f32> = (0..n)
            .map(|i| {
                (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / from as f64).sin() as f32 * 0.5
            })
            .collect();
        let mut rs = StereoResampler::new(from, to).unwrap();
        let (mut l, mut r) = (Vec::new(), Vec::new());
        for (i, c) in tone.chunks(777).enumerate() {
            let last = (i + 1) * 777 >= n;
            let (a, b) = rs.process(c, c, last).unwrap();
            l.extend_from_slice(a);
            r.extend_from_slice(b);
        }
        assert_eq!(
            l.len(),
            (n as f64 * to as f64 / from as f64).round() as usize
        );
        assert_eq!(l, r);
        // The same tone at the new rate, from the first frame (no delay
        // left in): compare away from the edges.
        let expect = |i: usize| {
            (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / to as f64).sin() as f32 * 0.5
        };
        let worst = (2000..l.len() - 2000)
            .map(|i| (l[i] - expect(i)).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 0.01, "worst error {worst}");
    }
}
