//! Object scenes: mono input channels placed (and optionally moved) on a
//! virtual stage. Parsed from any serde format; the CLI uses TOML.

use serde::Deserialize;

use crate::encoder::Position;
use crate::error::{Result, SpatialError};

pub const MAX_OBJECTS: usize = 256;
pub const MAX_KEYFRAMES: usize = 100_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    #[serde(rename = "object", default)]
    pub objects: Vec<SceneObject>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneObject {
    pub name: String,
    /// 1-based input channel.
    pub channel: usize,
    pub azimuth: f64,
    #[serde(default)]
    pub elevation: f64,
    #[serde(default = "one")]
    pub distance: f64,
    #[serde(default)]
    pub gain_db: f64,
    /// Later positions; the object moves linearly between keyframes.
    #[serde(rename = "keyframe", default)]
    pub keyframes: Vec<Keyframe>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keyframe {
    /// Seconds from the start.
    pub time: f64,
    pub azimuth: f64,
    #[serde(default)]
    pub elevation: f64,
    #[serde(default = "one")]
    pub distance: f64,
}

fn one() -> f64 {
    1.0
}

impl Scene {
    /// Check every position, channel and time against `input_channels`.
    pub fn validate(&self, input_channels: usize) -> Result<()> {
        if self.objects.is_empty() {
            return Err(SpatialError::BadPosition {
                name: "scene".into(),
                reason: "no [[object]] entries".into(),
            });
        }
        if self.objects.len() > MAX_OBJECTS {
            return Err(SpatialError::Limit {
                what: "objects",
                value: self.objects.len(),
                limit: MAX_OBJECTS,
            });
        }
        let kf: usize = self.objects.iter().map(|o| o.keyframes.len()).sum();
        if kf > MAX_KEYFRAMES {
            return Err(SpatialError::Limit {
                what: "keyframes",
                value: kf,
                limit: MAX_KEYFRAMES,
            });
        }
        for o in &self.objects {
            let bad = |reason: String| SpatialError::BadPosition {
                name: o.name.clone(),
                reason,
            };
            if o.channel == 0 || o.channel > input_channels {
                return Err(bad(format!(
                    "channel {} is outside 1..={input_channels}",
                    o.channel
                )));
            }
            if !o.gain_db.is_finite() || o.gain_db > 40.0 {
                return Err(bad(format!(
                    "gain_db {} is not a finite value ≤ 40",
                    o.gain_db
                )));
            }
            o.position_at(0.0).validate(&o.name)?;
            let mut last = 0.0;
            for k in &o.keyframes {
                if !k.time.is_finite() || k.time < last {
                    return Err(bad(format!("keyframe time {} is not ≥ {last}", k.time)));
                }
                last = k.time;
                Position {
                    azimuth_deg: k.azimuth,
                    elevation_deg: k.elevation,
                    distance_m: k.distance,
                }
                .validate(&o.name)?;
            }
        }
        Ok(())
    }
}

impl SceneObject {
    pub fn gain(&self) -> f32 {
        10f64.powf(self.gain_db / 20.0) as f32
    }

    /// Position at time `t` seconds. Azimuth takes the short way round.
    pub fn position_at(&self, t: f64) -> Position {
        let mut prev = (0.0, self.azimuth, self.elevation, self.distance);
        for k in &self.keyframes {
            if t < k.time {
                let span = k.time - prev.0;
                let a = if span > 0.0 {
                    ((t - prev.0) / span).clamp(0.0, 1.0)
                } else {
                    1.0
                };
                let mut daz = k.azimuth - prev.1;
                daz = (daz + 180.0).rem_euclid(360.0) - 180.0;
                return Position {
                    azimuth_deg: prev.1 + a * daz,
                    elevation_deg: prev.2 + a * (k.elevation - prev.2),
                    distance_m: prev.3 + a * (k.distance - prev.3),
                };
            }
            prev = (k.time, k.azimuth, k.elevation, k.distance);
        }
        Position {
            azimuth_deg: prev.1,
            elevation_deg: prev.2,
            distance_m: prev.3,
        }
    }
}
