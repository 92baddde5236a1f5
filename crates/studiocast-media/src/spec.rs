//! Session presets (`pipelines/*.toml`) as typed, validated specs. The same
//! spec type describes live sessions and (later) file jobs: only the
//! sources differ.

use serde::{Deserialize, Serialize};

use crate::MediaError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// HLS segment (and video GOP) duration, whole seconds.
    #[serde(default = "two")]
    pub segment_seconds: u32,
    pub video: Option<VideoSpec>,
    pub audio: AudioSpec,
}

fn two() -> u32 {
    2
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoSpec {
    pub source: VideoSource,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub bitrate_kbps: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum VideoSource {
    /// `videotestsrc` with a burnt-in wall clock.
    TestPattern {
        #[serde(default = "smpte")]
        pattern: String,
    },
}

fn smpte() -> String {
    "smpte".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSpec {
    pub source: AudioSource,
    #[serde(default = "rate")]
    pub sample_rate: u32,
    #[serde(rename = "rendition")]
    pub renditions: Vec<AudioRendition>,
}

fn rate() -> u32 {
    48_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AudioSource {
    /// Tones and noise bursts circling the listener, encoded at `order`.
    SyntheticScene { order: usize },
    /// A studio audio interface through cpal (ALSA or JACK), with a map of
    /// its channels to roles.
    Device {
        /// cpal host: "JACK" or "ALSA".
        host: String,
        /// Device name; absent for the host's default input.
        #[serde(default)]
        device: Option<String>,
        channels: u16,
        /// Order of the internal bus when there is no ambisonic input
        /// (objects, beds and stereo are encoded at it). Default 3.
        #[serde(default)]
        order: Option<usize>,
        /// An ambisonic microphone or desk bus on the interface.
        #[serde(default)]
        ambisonic: Option<AmbisonicInput>,
        /// Spot microphones placed on the virtual stage.
        #[serde(default, rename = "object")]
        objects: Vec<ObjectInput>,
        /// A loudspeaker bed.
        #[serde(default)]
        bed: Option<BedInput>,
        /// A plain stereo pair (placed at ±30°).
        #[serde(default)]
        stereo: Option<StereoInput>,
    },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectInput {
    /// 1-based interface channel.
    pub channel: u16,
    pub azimuth: f64,
    #[serde(default)]
    pub elevation: f64,
    #[serde(default)]
    pub gain_db: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BedInput {
    pub first_channel: u16,
    /// stereo, 5.1, 7.1 or 7.1.4
    pub layout: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StereoInput {
    pub left: u16,
    pub right: u16,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AmbisonicInput {
    /// 1-based first channel of the bus.
    pub first_channel: u16,
    pub order: usize,
    /// "ambix" (ACN/SN3D), "n3d" or "fuma" (first order only).
    #[serde(default = "ambix")]
    pub normalisation: String,
}

fn ambix() -> String {
    "ambix".into()
}

impl AmbisonicInput {
    pub fn format(&self) -> Option<studiocast_spatial::sh::AmbisonicFormat> {
        use studiocast_spatial::sh::AmbisonicFormat as F;
        match self.normalisation.as_str() {
            "ambix" => Some(F::AmbiX),
            "n3d" => Some(F::AcnN3d),
            "fuma" => Some(F::FuMa),
            _ => None,
        }
    }
}

impl AudioSource {
    /// Ambisonic order of the bus the spatial engine renders.
    pub fn order(&self) -> usize {
        match self {
            AudioSource::SyntheticScene { order } => *order,
            AudioSource::Device {
                ambisonic, order, ..
            } => ambisonic.as_ref().map_or(order.unwrap_or(3), |a| a.order),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mix {
    /// The spatial engine's binaural render.
    Binaural,
    /// The loudspeaker-stereo downmix.
    Stereo,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioRendition {
    pub id: String,
    pub name: String,
    pub mix: Mix,
    #[serde(default = "aac_rate")]
    pub bitrate_kbps: u32,
    #[serde(default)]
    pub default: bool,
}

fn aac_rate() -> u32 {
    128
}

impl PipelineSpec {
    pub fn parse(text: &str) -> Result<Self, MediaError> {
        let spec: PipelineSpec =
            toml::from_str(text).map_err(|e| MediaError::Spec(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn validate(&self) -> Result<(), MediaError> {
        let bad = |m: String| Err(MediaError::Spec(format!("pipeline '{}': {m}", self.name)));
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !id_ok(&self.name) {
            return bad("name must be 1–32 of [A-Za-z0-9_-]".into());
        }
        if !(1..=10).contains(&self.segment_seconds) {
            return bad(format!(
                "segment_seconds {} is outside 1..=10",
                self.segment_seconds
            ));
        }
        if let Some(v) = &self.video {
            if !(16..=3840).contains(&v.width)
                || !(16..=2160).contains(&v.height)
                || v.width % 2 == 1
                || v.height % 2 == 1
            {
                return bad(format!(
                    "video size {}x{} is not an even size up to 3840x2160",
                    v.width, v.height
                ));
            }
            if !(1..=60).contains(&v.framerate) {
                return bad(format!("framerate {} is outside 1..=60", v.framerate));
            }
            if !(100..=50_000).contains(&v.bitrate_kbps) {
                return bad(format!(
                    "video bitrate {} kb/s is outside 100..=50000",
                    v.bitrate_kbps
                ));
            }
        }
        if ![44_100, 48_000, 96_000].contains(&self.audio.sample_rate) {
            return bad(format!(
                "sample rate {} (44100, 48000 or 96000)",
                self.audio.sample_rate
            ));
        }
        let order = self.audio.source.order();
        if !(1..=studiocast_spatial::sh::MAX_ORDER).contains(&order) {
            return bad(format!("ambisonic order {order} is outside 1..=7"));
        }
        if let AudioSource::Device {
            channels,
            ambisonic,
            objects,
            bed,
            stereo,
            ..
        } = &self.audio.source
        {
            let n = *channels as usize;
            if n == 0 || n > 64 {
                return bad(format!("{channels} device channels (1..=64)"));
            }
            if ambisonic.is_none() && objects.is_empty() && bed.is_none() && stereo.is_none() {
                return bad(
                    "the device source maps no channels (ambisonic, object, bed or stereo)".into(),
                );
            }
            let in_range = |c: u16, what: &str| -> Result<(), MediaError> {
                if c == 0 || c as usize > n {
                    return Err(MediaError::Spec(format!(
                        "pipeline '{}': {what} channel {c} is outside 1..={n}",
                        self.name
                    )));
                }
                Ok(())
            };
            if let Some(ambisonic) = ambisonic {
                let Some(fmt) = ambisonic.format() else {
                    return bad(format!(
                        "normalisation '{}' (ambix, n3d or fuma)",
                        ambisonic.normalisation
                    ));
                };
                if let Err(e) = fmt.to_ambix_map(order) {
                    return bad(e.to_string());
                }
                let k = (order + 1) * (order + 1);
                let first = ambisonic.first_channel as usize;
                if first == 0 || first - 1 + k > n {
                    return bad(format!(
                        "an order-{order} bus needs {k} channels from channel {first}, the device has {channels}"
                    ));
                }
            }
            for o in objects {
                in_range(o.channel, "object")?;
                let pos = studiocast_spatial::encoder::Position {
                    azimuth_deg: o.azimuth,
                    elevation_deg: o.elevation,
                    distance_m: 1.0,
                };
                if let Err(e) = pos.validate("object") {
                    return bad(e.to_string());
                }
                if !o.gain_db.is_finite() || o.gain_db > 40.0 {
                    return bad(format!("object gain {} dB", o.gain_db));
                }
            }
            if let Some(b) = bed {
                let layout: studiocast_spatial::encoder::Layout = match b.layout.parse() {
                    Ok(l) => l,
                    Err(e) => return bad(e.to_string()),
                };
                in_range(b.first_channel, "bed")?;
                in_range(b.first_channel + layout.channels() as u16 - 1, "bed")?;
            }
            if let Some(st) = stereo {
                in_range(st.left, "stereo left")?;
                in_range(st.right, "stereo right")?;
            }
        }
        let r = &self.audio.renditions;
        if r.is_empty() {
            return bad("at least one [[audio.rendition]] is needed".into());
        }
        if r.iter().filter(|x| x.default).count() != 1 {
            return bad("exactly one audio rendition must be default".into());
        }
        for (i, x) in r.iter().enumerate() {
            if !id_ok(&x.id) || x.id == "video" || r[..i].iter().any(|o| o.id == x.id) {
                return bad(format!(
                    "audio rendition id '{}' is invalid or repeated",
                    x.id
                ));
            }
            if !(32..=512).contains(&x.bitrate_kbps) {
                return bad(format!(
                    "audio bitrate {} kb/s is outside 32..=512",
                    x.bitrate_kbps
                ));
            }
        }
        Ok(())
    }

    /// Frames between keyframes: one GOP per segment, so every segment
    /// starts with an IDR.
    pub fn gop_frames(&self) -> u32 {
        self.video
            .as_ref()
            .map_or(0, |v| v.framerate * self.segment_seconds)
    }
}
