//! Session presets (`pipelines/*.toml`) as typed, validated specs. The same
//! spec type describes live sessions and (later) file jobs: only the
//! sources differ.

use serde::Deserialize;

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
        /// Where the ambisonic bus sits on the interface.
        ambisonic: AmbisonicInput,
    },
}

#[derive(Debug, Clone, Deserialize)]
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
            AudioSource::Device { ambisonic, .. } => ambisonic.order,
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
            ..
        } = &self.audio.source
        {
            if *channels == 0 || *channels > 64 {
                return bad(format!("{channels} device channels (1..=64)"));
            }
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
            if first == 0 || first - 1 + k > *channels as usize {
                return bad(format!(
                    "an order-{order} bus needs {k} channels from channel {first}, the device has {channels}"
                ));
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
