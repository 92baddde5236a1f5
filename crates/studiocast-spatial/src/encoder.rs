//! Encoders into the internal AmbiX (ACN/SN3D) bus: point-source objects
//! with click-free moves, and loudspeaker beds.
//!
//! Beds are encoded as plane waves from the standard loudspeaker directions
//! (ITU-R BS.775 / BS.2051) into the same SH bus as everything else, so one
//! convolver renders the whole mix. LFE channels carry no direction: they go
//! to the omnidirectional component at unity gain.

use crate::error::{Result, SpatialError};
use crate::sh::{channels_for_order, check_order, unit_vector, Normalisation, ShEvaluator};

/// Objects closer than this are treated as at this distance (no 1/r blow-up).
pub const MIN_DISTANCE_M: f64 = 0.25;
pub const MAX_DISTANCE_M: f64 = 1000.0;

/// A position with its validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub azimuth_deg: f64,
    pub elevation_deg: f64,
    pub distance_m: f64,
}

impl Position {
    pub fn validate(&self, name: &str) -> Result<()> {
        let bad = |reason: String| SpatialError::BadPosition {
            name: name.to_string(),
            reason,
        };
        if !self.azimuth_deg.is_finite()
            || !self.elevation_deg.is_finite()
            || !self.distance_m.is_finite()
        {
            return Err(bad(
                "azimuth, elevation and distance must be finite numbers".into(),
            ));
        }
        if !(-90.0..=90.0).contains(&self.elevation_deg) {
            return Err(bad(format!(
                "elevation {} is outside -90..90 degrees",
                self.elevation_deg
            )));
        }
        if !(self.distance_m > 0.0 && self.distance_m <= MAX_DISTANCE_M) {
            return Err(bad(format!(
                "distance {} m is outside (0, {MAX_DISTANCE_M}]",
                self.distance_m
            )));
        }
        Ok(())
    }
}

/// One mono object. Gains move linearly across each block towards the new
/// position, so moving sources do not click.
#[derive(Debug, Clone)]
pub struct ObjectEncoder {
    k: usize,
    current: Vec<f32>,
    target: Vec<f32>,
    ev: ShEvaluator,
    tmp: Vec<f64>,
}

impl ObjectEncoder {
    pub fn new(order: usize) -> Result<Self> {
        let k = check_order(order)?;
        Ok(ObjectEncoder {
            k,
            current: vec![0.0; k],
            target: vec![0.0; k],
            ev: ShEvaluator::new(order),
            tmp: vec![0.0; k],
        })
    }

    /// Set the position to reach by the end of the next block. Distance
    /// attenuates as 1/r relative to 1 m.
    pub fn set_position(&mut self, pos: Position, gain: f32) -> Result<()> {
        pos.validate("object")?;
        let dir = unit_vector(pos.azimuth_deg.to_radians(), pos.elevation_deg.to_radians());
        self.ev.eval(dir, Normalisation::Sn3d, &mut self.tmp);
        let g = gain as f64 / pos.distance_m.max(MIN_DISTANCE_M);
        for (t, y) in self.target.iter_mut().zip(&self.tmp) {
            *t = (y * g) as f32;
        }
        Ok(())
    }

    /// Jump to the target gains now (for the first block).
    pub fn snap(&mut self) {
        self.current.copy_from_slice(&self.target);
    }

    /// Add the encoded `mono` block into the planar bus `out`
    /// (channel c at [c·frames..]). Allocation-free.
    pub fn encode_add(&mut self, mono: &[f32], out: &mut [f32]) {
        let frames = mono.len();
        if out.len() < self.k * frames || frames == 0 {
            return;
        }
        let inv = 1.0 / frames as f32;
        for c in 0..self.k {
            let g0 = self.current[c];
            let dg = (self.target[c] - g0) * inv;
            let o = &mut out[c * frames..(c + 1) * frames];
            for (i, (d, x)) in o.iter_mut().zip(mono).enumerate() {
                let x = if x.is_finite() { *x } else { 0.0 };
                *d += (g0 + dg * (i + 1) as f32) * x;
            }
        }
        self.current.copy_from_slice(&self.target);
    }
}

/// Standard loudspeaker layouts, channel order as in WAV/SMPTE files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Stereo,
    Surround51,
    Surround71,
    Surround714,
}

/// One loudspeaker: name, azimuth, elevation (degrees); `None` for LFE.
pub type Speaker = (&'static str, Option<(f64, f64)>);

impl std::str::FromStr for Layout {
    type Err = SpatialError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "stereo" | "2.0" => Ok(Layout::Stereo),
            "5.1" => Ok(Layout::Surround51),
            "7.1" => Ok(Layout::Surround71),
            "7.1.4" => Ok(Layout::Surround714),
            other => Err(SpatialError::UnknownLayout(other.to_string())),
        }
    }
}

impl Layout {
    /// ITU-R BS.775 (5.1) and BS.2051 System I/J (7.1, 7.1.4) directions.
    pub fn speakers(self) -> &'static [Speaker] {
        const ST: &[Speaker] = &[("L", Some((30.0, 0.0))), ("R", Some((-30.0, 0.0)))];
        const S51: &[Speaker] = &[
            ("L", Some((30.0, 0.0))),
            ("R", Some((-30.0, 0.0))),
            ("C", Some((0.0, 0.0))),
            ("LFE", None),
            ("Ls", Some((110.0, 0.0))),
            ("Rs", Some((-110.0, 0.0))),
        ];
        const S71: &[Speaker] = &[
            ("L", Some((30.0, 0.0))),
            ("R", Some((-30.0, 0.0))),
            ("C", Some((0.0, 0.0))),
            ("LFE", None),
            ("Lrs", Some((135.0, 0.0))),
            ("Rrs", Some((-135.0, 0.0))),
            ("Lss", Some((90.0, 0.0))),
            ("Rss", Some((-90.0, 0.0))),
        ];
        const S714: &[Speaker] = &[
            ("L", Some((30.0, 0.0))),
            ("R", Some((-30.0, 0.0))),
            ("C", Some((0.0, 0.0))),
            ("LFE", None),
            ("Lrs", Some((135.0, 0.0))),
            ("Rrs", Some((-135.0, 0.0))),
            ("Lss", Some((90.0, 0.0))),
            ("Rss", Some((-90.0, 0.0))),
            ("Ltf", Some((45.0, 30.0))),
            ("Rtf", Some((-45.0, 30.0))),
            ("Ltr", Some((135.0, 30.0))),
            ("Rtr", Some((-135.0, 30.0))),
        ];
        match self {
            Layout::Stereo => ST,
            Layout::Surround51 => S51,
            Layout::Surround71 => S71,
            Layout::Surround714 => S714,
        }
    }

    pub fn channels(self) -> usize {
        self.speakers().len()
    }
}

/// Static encoder of a loudspeaker bed into the SH bus.
#[derive(Debug, Clone)]
pub struct BedEncoder {
    k: usize,
    /// gains[s * k + c]
    gains: Vec<f32>,
    speakers: usize,
}

impl BedEncoder {
    pub fn new(layout: Layout, order: usize) -> Result<Self> {
        let k = check_order(order)?;
        let mut ev = ShEvaluator::new(order);
        let mut y = vec![0.0; k];
        let mut gains = Vec::with_capacity(layout.channels() * k);
        for (_, dir) in layout.speakers() {
            match dir {
                Some((az, el)) => {
                    ev.eval(
                        unit_vector(az.to_radians(), el.to_radians()),
                        Normalisation::Sn3d,
                        &mut y,
                    );
                    gains.extend(y.iter().map(|v| *v as f32));
                }
                None => {
                    gains.push(1.0);
                    gains.extend(std::iter::repeat_n(0.0, k - 1));
                }
            }
        }
        Ok(BedEncoder {
            k,
            gains,
            speakers: layout.channels(),
        })
    }

    pub fn inputs(&self) -> usize {
        self.speakers
    }

    /// Add the encoded bed (one slice per loudspeaker) into `out` (planar).
    pub fn encode_add(&self, input: &[&[f32]], out: &mut [f32]) -> Result<()> {
        if input.len() != self.speakers {
            return Err(SpatialError::ChannelMismatch {
                expected: self.speakers,
                actual: input.len(),
            });
        }
        let frames = input.first().map_or(0, |s| s.len());
        if out.len() < self.k * frames {
            return Err(SpatialError::BlockMismatch {
                expected: self.k * frames,
                actual: out.len(),
            });
        }
        for (s, x) in input.iter().enumerate() {
            for c in 0..self.k {
                let g = self.gains[s * self.k + c];
                if g == 0.0 {
                    continue;
                }
                for (d, v) in out[c * frames..(c + 1) * frames].iter_mut().zip(x.iter()) {
                    *d += g * if v.is_finite() { *v } else { 0.0 };
                }
            }
        }
        Ok(())
    }
}

/// Loudspeaker-stereo downmix of an AmbiX bus: a coincident pair of virtual
/// cardioid microphones at ±45° (an XY pair), using W, Y and X only. A
/// frontal source reaches both channels at 0.85 (−1.4 dB), a source at +90°
/// gives L = 0.85 and R = 0.15, and sources behind are attenuated, as a
/// listener on loudspeakers expects from an XY recording.
#[derive(Debug, Clone, Copy)]
pub struct StereoDownmix {
    /// (w, y, x) gains for the left channel; the right one mirrors y.
    g: [f32; 3],
}

impl Default for StereoDownmix {
    fn default() -> Self {
        Self::new(45.0)
    }
}

impl StereoDownmix {
    pub fn new(half_angle_deg: f64) -> Self {
        let a = half_angle_deg.to_radians();
        StereoDownmix {
            g: [0.5, (0.5 * a.sin()) as f32, (0.5 * a.cos()) as f32],
        }
    }

    /// `input`: AmbiX channels (at least 4). Writes `left` and `right`.
    pub fn process(&self, input: &[&[f32]], left: &mut [f32], right: &mut [f32]) -> Result<()> {
        if input.len() < channels_for_order(1) {
            return Err(SpatialError::ChannelMismatch {
                expected: 4,
                actual: input.len(),
            });
        }
        let (w, y, x) = (input[0], input[1], input[3]);
        for i in 0..left
            .len()
            .min(right.len())
            .min(w.len())
            .min(y.len())
            .min(x.len())
        {
            let (wi, yi, xi) = (w[i], y[i], x[i]);
            let common = self.g[0] * wi + self.g[2] * xi;
            let side = self.g[1] * yi;
            let (l, r) = (common + side, common - side);
            left[i] = if l.is_finite() { l } else { 0.0 };
            right[i] = if r.is_finite() { r } else { 0.0 };
        }
        Ok(())
    }
}
