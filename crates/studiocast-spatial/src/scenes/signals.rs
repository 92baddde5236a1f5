//! Deterministic source signals for the scene evaluation: speech-like
//! (formant-filtered noise with a syllable rhythm), piano-like (struck
//! harmonic notes: sharp onsets, decaying partials) and noise.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Speech,
    Piano,
    Noise,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Speech, Signal::Piano, Signal::Noise];

    pub fn name(self) -> &'static str {
        match self {
            Signal::Speech => "speech",
            Signal::Piano => "piano",
            Signal::Noise => "noise",
        }
    }

    /// `n` samples at `rate`, RMS 0.1.
    pub fn make(self, seed: u64, n: usize, rate: f64) -> Vec<f32> {
        let mut x = match self {
            Signal::Speech => speech(seed, n, rate),
            Signal::Piano => piano(seed, n, rate),
            Signal::Noise => noise(seed, n),
        };
        let rms = (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / n.max(1) as f64).sqrt();
        if rms > 0.0 {
            let g = (0.1 / rms) as f32;
            x.iter_mut().for_each(|v| *v *= g);
        }
        x
    }
}

/// Uniform white noise in [-0.5, 0.5).
pub fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x6A09_E667_F3BC_C909);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// Noise through three formant resonators (500, 1500, 2500 Hz), gated by a
/// four-syllables-a-second envelope.
fn speech(seed: u64, n: usize, rate: f64) -> Vec<f32> {
    let src = noise(seed, n);
    let mut out = vec![0.0f32; n];
    for (f, bw, g) in [
        (500.0, 80.0, 1.0),
        (1500.0, 120.0, 0.5),
        (2500.0, 160.0, 0.3),
    ] {
        let r = (-std::f64::consts::PI * bw / rate).exp();
        let c = 2.0 * r * (std::f64::consts::TAU * f / rate).cos();
        let (mut y1, mut y2) = (0.0f64, 0.0f64);
        for (o, x) in out.iter_mut().zip(&src) {
            let y = f64::from(*x) + c * y1 - r * r * y2;
            y2 = y1;
            y1 = y;
            *o += (g * y * (1.0 - r)) as f32;
        }
    }
    let phase = (seed % 7) as f64;
    for (i, o) in out.iter_mut().enumerate() {
        let t = i as f64 / rate;
        let e = (std::f64::consts::TAU * 4.0 * t + phase).sin().max(0.0);
        *o *= (e * e) as f32;
    }
    out
}

/// A note every 0.4 s (a fixed sequence of pitches): eight partials at
/// 1/h, each decaying faster the higher it is, after a 2 ms attack.
fn piano(seed: u64, n: usize, rate: f64) -> Vec<f32> {
    const PITCHES: [f64; 6] = [220.0, 261.6, 329.6, 392.0, 440.0, 523.3];
    let every = (0.4 * rate) as usize;
    let mut out = vec![0.0f32; n];
    for (k, start) in (0..n).step_by(every.max(1)).enumerate() {
        let f0 = PITCHES[(k + seed as usize) % PITCHES.len()];
        for (i, o) in out.iter_mut().enumerate().skip(start) {
            let t = (i - start) as f64 / rate;
            if t > 1.2 {
                break;
            }
            let attack = (t / 0.002).min(1.0);
            let mut v = 0.0;
            for h in 1..=8 {
                let f = f0 * h as f64;
                if f > rate / 2.0 {
                    break;
                }
                let decay = (-t * 3.0 * (h as f64).sqrt()).exp();
                v += (std::f64::consts::TAU * f * t).sin() * decay / h as f64;
            }
            *o += (attack * v) as f32;
        }
    }
    out
}
