//! The first-order ambisonic rendition of a job: the AmbiX bus's W, Y, Z
//! and X after the spatial engine's router, with the binaural mix's
//! loudness gain (the browser renders it to binaural with the same
//! filters), resampled to the preset's rate in two stereo pairs.

use anyhow::Result;

use super::loudness::GainPlan;
use super::resample::StereoResampler;

/// Where the first-order bus's sample peak may go at most, dBFS: Opus
/// codes 16-bit samples, and anything over full scale is clipped on
/// each channel alone, which bends the image. 3 dB leave room for the
/// codec's own overshoot (measured up to 1.4 dB on a 1.7 kHz tone at
/// 64 kb/s a channel: a −1 dBFS ceiling decoded at full scale).
pub(super) const CEILING_DB: f64 = -3.0;

/// The ambisonic rendition's gain: the binaural mix's (the browser renders
/// it to binaural with the same filters), lowered as far as the bus's
/// peak needs. No limiter: one over four channels would have to act on all
/// at once, and a lower gain keeps the image exact.
pub(super) fn plan(binaural: GainPlan, peak: f32) -> GainPlan {
    let room = if peak > 0.0 {
        CEILING_DB - 20.0 * f64::from(peak).log10()
    } else {
        f64::INFINITY
    };
    GainPlan {
        gain_db: binaural.gain_db.min(room),
        limited: false,
    }
}

pub(super) struct AmbiChain {
    gain: f32,
    /// (W, Y) and (Z, X).
    resamplers: Option<[StereoResampler; 2]>,
    planes: [Vec<f32>; 4],
    pub(super) interleaved: Vec<f32>,
}

impl AmbiChain {
    pub(super) fn new(gain_db: f64, rate: u32, out_rate: u32) -> Result<AmbiChain> {
        let resamplers = if rate == out_rate {
            None
        } else {
            Some([
                StereoResampler::new(rate, out_rate)?,
                StereoResampler::new(rate, out_rate)?,
            ])
        };
        Ok(AmbiChain {
            gain: super::loudness::db_to_gain(gain_db),
            resamplers,
            planes: Default::default(),
            interleaved: Vec::new(),
        })
    }

    /// Gain and resampler over the first `n` frames of one block of the
    /// bus's first four channels; the result is left in `interleaved`.
    pub(super) fn run(&mut self, bus: [&[f32]; 4], n: usize, flush: bool) -> Result<()> {
        for (p, x) in self.planes.iter_mut().zip(bus) {
            p.clear();
            p.extend(x[..n].iter().map(|v| v * self.gain));
        }
        self.interleaved.clear();
        match &mut self.resamplers {
            None => interleave4(
                [
                    &self.planes[0],
                    &self.planes[1],
                    &self.planes[2],
                    &self.planes[3],
                ],
                &mut self.interleaved,
            ),
            Some([a, b]) => {
                let [w, y, z, x] = &self.planes;
                let (w, y) = a.process(w, y, flush)?;
                let (z, x) = b.process(z, x, flush)?;
                interleave4([w, y, z, x], &mut self.interleaved);
            }
        }
        Ok(())
    }
}

fn interleave4(p: [&[f32]; 4], out: &mut Vec<f32>) {
    let n = p.iter().map(|c| c.len()).min().unwrap_or(0);
    out.reserve(4 * n);
    for i in 0..n {
        out.extend(p.iter().map(|c| c[i]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gain_keeps_the_bus_under_full_scale() {
        let plan = |gain_db, limited| GainPlan { gain_db, limited };
        // A quiet recording raised by 15 dB whose bus peaks at 0.5: 3 dB.
        let p = super::plan(plan(15.0, true), 0.5);
        assert!((p.gain_db - (-3.0 + 6.0206)).abs() < 1e-3, "{}", p.gain_db);
        assert!(!p.limited);
        // Room enough: the binaural gain as it is; silence: no limit.
        assert_eq!(super::plan(plan(3.0, false), 0.1).gain_db, 3.0);
        assert_eq!(super::plan(plan(-4.0, false), 0.0).gain_db, -4.0);
    }

    #[test]
    fn channels_keep_their_place_and_the_gain_applies() {
        let mut c = AmbiChain::new(-6.0206, 48_000, 48_000).unwrap();
        let planes: Vec<Vec<f32>> = (0..4).map(|ch| vec![ch as f32 + 1.0; 8]).collect();
        c.run([&planes[0], &planes[1], &planes[2], &planes[3]], 5, false)
            .unwrap();
        assert_eq!(c.interleaved.len(), 20);
        for f in c.interleaved.chunks(4) {
            for (ch, v) in f.iter().enumerate() {
                assert!((v - (ch as f32 + 1.0) / 2.0).abs() < 1e-4, "{f:?}");
            }
        }
    }

    #[test]
    fn resampled_pairs_stay_aligned() {
        let mut c = AmbiChain::new(0.0, 44_100, 48_000).unwrap();
        let mut frames = 0;
        for i in 0..20 {
            let flush = i == 19;
            let plane: Vec<f32> = (0..1024).map(|t| ((t as f32) * 0.01).sin()).collect();
            let n = if flush { 0 } else { 1024 };
            c.run([&plane, &plane, &plane, &plane], n, flush).unwrap();
            for f in c.interleaved.chunks(4) {
                assert!(f.iter().all(|v| (v - f[0]).abs() < 1e-6), "{f:?}");
            }
            frames += c.interleaved.len() / 4;
        }
        let want = (19.0 * 1024.0 * 48_000.0 / 44_100.0) as usize;
        assert!(frames.abs_diff(want) <= 2, "{frames} vs {want}");
    }
}
