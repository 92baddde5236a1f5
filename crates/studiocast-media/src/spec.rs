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
    /// MPEG-TS (H.264 or HEVC, AAC or PCM) over SRT from a hardware or
    /// software encoder. A lost source is replaced by a slate and silence.
    Srt(SrtInput),
    /// A UVC camera or HDMI capture card.
    V4l2 {
        /// Device node, e.g. `/dev/video0`.
        device: String,
    },
    /// A Blackmagic DeckLink SDI/HDMI input (needs Blackmagic's driver).
    Decklink {
        #[serde(default)]
        device_number: u32,
        /// DeckLink video mode nickname (e.g. "1080p25"); "auto" detects.
        #[serde(default = "auto")]
        mode: String,
    },
}

fn smpte() -> String {
    "smpte".into()
}

fn auto() -> String {
    "auto".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SrtMode {
    /// Wait for the encoder to call us.
    Listener,
    /// Call the encoder (which listens).
    Caller,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrtInput {
    pub mode: SrtMode,
    /// Listener: the address to bind (default all). Caller: the encoder's host.
    #[serde(default)]
    pub address: Option<String>,
    pub port: u16,
    /// SRT receive latency (the retransmission window), ms.
    #[serde(default = "srt_latency")]
    pub latency_ms: u32,
    /// AES passphrase (10–79 characters) when the encoder encrypts.
    #[serde(default)]
    pub passphrase: Option<String>,
    #[serde(default)]
    pub stream_id: Option<String>,
    /// Silence from the source for this long means it is lost: the slate
    /// goes up and the input is reopened.
    #[serde(default = "loss_ms")]
    pub loss_timeout_ms: u32,
}

fn srt_latency() -> u32 {
    120
}

fn loss_ms() -> u32 {
    1000
}

impl SrtInput {
    /// The `srt://` URI srtsrc opens.
    pub fn uri(&self) -> String {
        let host = match (&self.address, self.mode) {
            (Some(a), _) => a.clone(),
            (None, SrtMode::Listener) => "0.0.0.0".into(),
            (None, SrtMode::Caller) => "127.0.0.1".into(),
        };
        let mode = match self.mode {
            SrtMode::Listener => "listener",
            SrtMode::Caller => "caller",
        };
        format!("srt://{host}:{}?mode={mode}", self.port)
    }
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
    /// The audio carried by the video input (SRT's transport stream, SDI
    /// embedded audio), converted to `channels` and mapped by role.
    Embedded {
        #[serde(default = "two_ch")]
        channels: u16,
        #[serde(default)]
        order: Option<usize>,
        #[serde(default)]
        ambisonic: Option<AmbisonicInput>,
        #[serde(default, rename = "object")]
        objects: Vec<ObjectInput>,
        #[serde(default)]
        bed: Option<BedInput>,
        /// Default for two channels: a stereo pair on 1 and 2.
        #[serde(default)]
        stereo: Option<StereoInput>,
    },
}

fn two_ch() -> u16 {
    2
}

/// The role map of a device or embedded source, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ChannelMap<'a> {
    pub channels: u16,
    pub order: usize,
    pub ambisonic: Option<&'a AmbisonicInput>,
    pub objects: &'a [ObjectInput],
    pub bed: Option<&'a BedInput>,
    pub stereo: Option<&'a StereoInput>,
}

static DEFAULT_STEREO: StereoInput = StereoInput { left: 1, right: 2 };

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
            _ => self.channel_map().map_or(3, |m| m.order),
        }
    }

    /// Interface or embedded channels → roles; `None` for synthetic audio.
    pub fn channel_map(&self) -> Option<ChannelMap<'_>> {
        let (channels, order, ambisonic, objects, bed, stereo) = match self {
            AudioSource::SyntheticScene { .. } => return None,
            AudioSource::Device {
                channels,
                order,
                ambisonic,
                objects,
                bed,
                stereo,
                ..
            }
            | AudioSource::Embedded {
                channels,
                order,
                ambisonic,
                objects,
                bed,
                stereo,
            } => (channels, order, ambisonic, objects, bed, stereo),
        };
        let mut stereo = stereo.as_ref();
        let embedded = matches!(self, AudioSource::Embedded { .. });
        if embedded
            && *channels == 2
            && stereo.is_none()
            && ambisonic.is_none()
            && objects.is_empty()
            && bed.is_none()
        {
            stereo = Some(&DEFAULT_STEREO);
        }
        Some(ChannelMap {
            channels: *channels,
            order: ambisonic.as_ref().map_or(order.unwrap_or(3), |a| a.order),
            ambisonic: ambisonic.as_ref(),
            objects,
            bed: bed.as_ref(),
            stereo,
        })
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
        let embedded = matches!(self.audio.source, AudioSource::Embedded { .. });
        if embedded
            && !matches!(
                self.video.as_ref().map(|v| &v.source),
                Some(VideoSource::Srt(_) | VideoSource::Decklink { .. })
            )
        {
            return bad("embedded audio needs an SRT or DeckLink video source".into());
        }
        if let Some(VideoSource::Srt(s)) = self.video.as_ref().map(|v| &v.source) {
            if s.port == 0 {
                return bad("SRT port 0".into());
            }
            if !(20..=8000).contains(&s.latency_ms) {
                return bad(format!(
                    "SRT latency {} ms is outside 20..=8000",
                    s.latency_ms
                ));
            }
            if !(200..=30_000).contains(&s.loss_timeout_ms) {
                return bad(format!(
                    "SRT loss timeout {} ms is outside 200..=30000",
                    s.loss_timeout_ms
                ));
            }
            if let Some(p) = &s.passphrase {
                if !(10..=79).contains(&p.len()) {
                    return bad("SRT passphrase must be 10–79 characters".into());
                }
            }
            let uri_safe = |x: &str| {
                x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
            };
            if !s.address.as_deref().is_none_or(uri_safe)
                || !s.stream_id.as_deref().is_none_or(uri_safe)
            {
                return bad("SRT address and stream id take [A-Za-z0-9-._:[]]".into());
            }
        }
        if let Some(VideoSource::V4l2 { device }) = self.video.as_ref().map(|v| &v.source) {
            if !device.starts_with("/dev/") {
                return bad(format!("V4L2 device '{device}' is not a /dev path"));
            }
        }
        if let Some(ChannelMap {
            channels,
            ambisonic,
            objects,
            bed,
            stereo,
            ..
        }) = self.audio.source.channel_map()
        {
            let n = channels as usize;
            if n == 0 || n > 64 {
                return bad(format!("{channels} device channels (1..=64)"));
            }
            if ambisonic.is_none() && objects.is_empty() && bed.is_none() && stereo.is_none() {
                return bad(
                    "the audio source maps no channels (ambisonic, object, bed or stereo)".into(),
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
