//! The demo session's synthetic third-order scene: distinct sources moving
//! round the listener, so the binaural rendition is audibly spatial.

use studiocast_spatial::encoder::{ObjectEncoder, Position};
use studiocast_spatial::SpatialError;

struct Source {
    enc: ObjectEncoder,
    kind: Kind,
    /// Degrees per second of azimuth motion.
    speed: f64,
    start_az: f64,
    elevation: f64,
    phase: f64,
}

enum Kind {
    /// Tone pulsed on for `on` of every second.
    Pulse { freq: f64, on: f64 },
    /// Filtered noise bursts.
    Noise { state: u64, lp: f32 },
    /// Steady tone with a slow tremolo.
    Tremolo { freq: f64 },
}

pub struct SyntheticScene {
    rate: f64,
    k: usize,
    t: u64,
    sources: Vec<Source>,
    mono: Vec<f32>,
}

impl SyntheticScene {
    pub fn new(order: usize, rate: u32, block: usize) -> Result<Self, SpatialError> {
        let mk = |kind, speed, start_az, elevation| -> Result<Source, SpatialError> {
            Ok(Source {
                enc: ObjectEncoder::new(order)?,
                kind,
                speed,
                start_az,
                elevation,
                phase: 0.0,
            })
        };
        let sources = vec![
            mk(
                Kind::Pulse {
                    freq: 440.0,
                    on: 0.25,
                },
                40.0,
                0.0,
                0.0,
            )?,
            mk(
                Kind::Noise {
                    state: 0x1234_5678,
                    lp: 0.0,
                },
                -25.0,
                180.0,
                30.0,
            )?,
            mk(Kind::Tremolo { freq: 660.0 }, 0.0, 90.0, 0.0)?,
            mk(
                Kind::Pulse {
                    freq: 220.0,
                    on: 0.5,
                },
                15.0,
                -90.0,
                -20.0,
            )?,
        ];
        Ok(SyntheticScene {
            rate: rate as f64,
            k: (order + 1) * (order + 1),
            t: 0,
            sources,
            mono: vec![0.0; block],
        })
    }

    pub fn channels(&self) -> usize {
        self.k
    }

    /// Fill the planar AmbiX bus (channel c at [c·block..]) with the next block.
    pub fn render(&mut self, bus: &mut [f32]) -> Result<(), SpatialError> {
        let block = self.mono.len();
        bus.iter_mut().for_each(|v| *v = 0.0);
        let t_end = (self.t + block as u64) as f64 / self.rate;
        let first = self.t == 0;
        for s in &mut self.sources {
            let step = 1.0 / self.rate;
            for (i, m) in self.mono.iter_mut().enumerate() {
                let t = (self.t + i as u64) as f64 * step;
                *m = match &mut s.kind {
                    Kind::Pulse { freq, on } => {
                        s.phase = (s.phase + *freq * step).fract();
                        let gate = if t.fract() < *on { 1.0 } else { 0.0 };
                        (gate * 0.15 * (2.0 * std::f64::consts::PI * s.phase).sin()) as f32
                    }
                    Kind::Noise { state, lp } => {
                        *state ^= *state << 13;
                        *state ^= *state >> 7;
                        *state ^= *state << 17;
                        let white = ((*state >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
                        *lp += 0.2 * (white - *lp);
                        let gate = if (t * 2.0).fract() < 0.3 { 0.5 } else { 0.0 };
                        gate * *lp
                    }
                    Kind::Tremolo { freq } => {
                        s.phase = (s.phase + *freq * step).fract();
                        let trem = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
                        (0.06 * trem * (2.0 * std::f64::consts::PI * s.phase).sin()) as f32
                    }
                };
            }
            let az = (s.start_az + s.speed * t_end).rem_euclid(360.0) - 180.0;
            s.enc.set_position(
                Position {
                    azimuth_deg: az,
                    elevation_deg: s.elevation,
                    distance_m: 1.0,
                },
                1.0,
            )?;
            if first {
                s.enc.snap();
            }
            s.enc.encode_add(&self.mono, &mut bus[..self.k * block]);
        }
        self.t += block as u64;
        Ok(())
    }
}
