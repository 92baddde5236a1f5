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
    /// Low-latency HLS (parts, blocking reload: a few seconds behind the
    /// studio, playlists not cacheable by a CDN) or standard HLS (for a
    /// CDN in front of the origin).
    #[serde(default)]
    pub latency: Latency,
    /// How far back viewers can seek in a live stream, seconds.
    #[serde(default = "dvr")]
    pub dvr_seconds: u32,
    /// Who may play what the preset makes when the start or job does not
    /// say: `public`, or `private` (a playback token on every URL).
    #[serde(default)]
    pub visibility: PresetVisibility,
    pub video: Option<VideoSpec>,
    pub audio: AudioSpec,
}

fn two() -> u32 {
    2
}

fn dvr() -> u32 {
    7200
}

/// A preset's default visibility. (The HTTP layer has its own type: this
/// crate knows nothing of it; the daemon maps one to the other.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PresetVisibility {
    #[default]
    Public,
    Private,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Latency {
    /// Parts of about a sixth of a segment, blocking playlist reload.
    Low,
    /// Whole segments only.
    #[default]
    Standard,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoSpec {
    pub source: VideoSource,
    pub framerate: u32,
    /// The ladder, largest first: one H.264 encode per rung, all from one
    /// decoded (or generated) picture, with key frames aligned.
    /// (Defaulted so that a preset without rungs gets the validation
    /// message that says what to add, not serde's "missing field".)
    #[serde(rename = "rendition", default)]
    pub renditions: Vec<VideoRendition>,
}

/// One rung of the video ladder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoRendition {
    /// Folder name and playlist id (`720p`, `360p`, …).
    pub id: String,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
    /// H.264 profile: "high" (default), "main" or "baseline" (old phones).
    #[serde(default = "high")]
    pub profile: String,
}

fn high() -> String {
    "high".into()
}

impl VideoSpec {
    /// The program picture: the largest rung's size (ingests are scaled to
    /// it; the slate is drawn at it).
    pub fn program_size(&self) -> (u32, u32) {
        self.renditions
            .iter()
            .map(|r| (r.width, r.height))
            .max_by_key(|(w, h)| w * h)
            .unwrap_or((1280, 720))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum VideoSource {
    /// A transcoding job's own input file: the preset gives the ladder, the
    /// job the picture. A live session cannot use such a preset.
    File,
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

/// `videotestsrc` patterns (GStreamer 1.22). Checked when a preset loads,
/// so a typo names the file instead of failing a start.
pub const TEST_PATTERNS: &[&str] = &[
    "smpte",
    "snow",
    "black",
    "white",
    "red",
    "green",
    "blue",
    "checkers-1",
    "checkers-2",
    "checkers-4",
    "checkers-8",
    "circular",
    "blink",
    "smpte75",
    "zone-plate",
    "gamut",
    "chroma-zone-plate",
    "solid-color",
    "ball",
    "smpte100",
    "bar",
    "pinwheel",
    "spokes",
    "gradient",
    "colors",
    "smpte-rp-219",
];

/// DeckLink video modes (GStreamer 1.22 `GstDecklinkModes` nicks).
pub const DECKLINK_MODES: &[&str] = &[
    "auto",
    "ntsc",
    "ntsc2398",
    "pal",
    "ntsc-p",
    "pal-p",
    "1080p2398",
    "1080p24",
    "1080p25",
    "1080p2997",
    "1080p30",
    "1080i50",
    "1080i5994",
    "1080i60",
    "1080p50",
    "1080p5994",
    "1080p60",
    "720p50",
    "720p5994",
    "720p60",
    "1556p2398",
    "1556p24",
    "1556p25",
    "2kdcip2398",
    "2kdcip24",
    "2kdcip25",
    "2kdcip2997",
    "2kdcip30",
    "2kdcip50",
    "2kdcip5994",
    "2kdcip60",
    "2160p2398",
    "2160p24",
    "2160p25",
    "2160p2997",
    "2160p30",
    "2160p50",
    "2160p5994",
    "2160p60",
    "ntsc-widescreen",
    "ntsc2398-widescreen",
    "pal-widescreen",
    "ntsc-p-widescreen",
    "pal-p-widescreen",
    "4kdcip2398",
    "4kdcip24",
    "4kdcip25",
    "4kdcip2997",
    "4kdcip30",
    "4kdcip50",
    "4kdcip5994",
    "4kdcip60",
    "8kp2398",
    "8kp24",
    "8kp25",
    "8kp2997",
    "8kp30",
    "8kp50",
    "8kp5994",
    "8kp60",
    "8kdcip2398",
    "8kdcip24",
    "8kdcip25",
    "8kdcip2997",
    "8kdcip30",
    "8kdcip50",
    "8kdcip5994",
    "8kdcip60",
];

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
    /// A listener without a passphrase lets anyone who can reach the port
    /// feed the live program: it must be asked for explicitly.
    #[serde(default)]
    pub allow_unencrypted: bool,
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
    /// How the bus becomes binaural: SH-domain filters (any order), or the
    /// parametric renderer (first-order sources: sharper images, 12.7 ms
    /// more latency at 48 kHz).
    #[serde(default)]
    pub renderer: Renderer,
}

/// The binaural renderer of a preset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Renderer {
    #[default]
    Linear,
    /// The parametric first-order renderer: the MagLS first-order
    /// rendering, corrected towards the HRTF where the field is direct.
    Parametric,
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
    /// What the meters and the console call it ("violin", "piano L");
    /// `object N` when absent.
    #[serde(default)]
    pub name: Option<String>,
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
    /// The scene itself as first-order AmbiX (W, Y, Z, X; ACN/SN3D), for
    /// players that rotate and render it themselves (head tracking). It is
    /// 4-channel Opus in a group of its own.
    Ambisonic,
}

impl Mix {
    /// Channels the rendition carries.
    pub fn channels(self) -> usize {
        match self {
            Mix::Binaural | Mix::Stereo => 2,
            Mix::Ambisonic => 4,
        }
    }

    /// The codec's RFC 6381 string in the playlists.
    pub fn codecs(self) -> &'static str {
        match self {
            Mix::Binaural | Mix::Stereo => "mp4a.40.2",
            Mix::Ambisonic => "opus",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioRendition {
    pub id: String,
    pub name: String,
    pub mix: Mix,
    /// Ambisonic order of an `ambisonic` rendition: 1 (the only one a
    /// browser renders; higher orders need more than Opus's 8 channels of
    /// one stream).
    #[serde(default)]
    pub order: Option<u32>,
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

    /// Check everything that reaches GStreamer, a device or a playlist, so
    /// that a bad preset fails when it loads, with its name and the reason.
    pub fn validate(&self) -> Result<(), MediaError> {
        let bad = |m: String| MediaError::Spec(format!("pipeline '{}': {m}", self.name));
        if !validate::id_ok(&self.name) {
            return Err(bad("name must be 1–32 of [A-Za-z0-9_-]".into()));
        }
        if !(1..=10).contains(&self.segment_seconds) {
            return Err(bad(format!(
                "segment_seconds {} is outside 1..=10",
                self.segment_seconds
            )));
        }
        if let Some(v) = &self.video {
            v.validate().map_err(bad)?;
        }
        if ![44_100, 48_000, 96_000].contains(&self.audio.sample_rate) {
            return Err(bad(format!(
                "sample rate {} (44100, 48000 or 96000)",
                self.audio.sample_rate
            )));
        }
        let order = self.audio.source.order();
        if !(1..=studiocast_spatial::sh::MAX_ORDER).contains(&order) {
            return Err(bad(format!("ambisonic order {order} is outside 1..=7")));
        }
        if self.audio.renderer == Renderer::Parametric && order != 1 {
            return Err(bad(format!(
                "renderer = \"parametric\" takes a first-order source (this one is order {order}; \
                 the linear renderer keeps its higher orders)"
            )));
        }
        let embedded = matches!(self.audio.source, AudioSource::Embedded { .. });
        if embedded
            && !matches!(
                self.video.as_ref().map(|v| &v.source),
                Some(VideoSource::Srt(_) | VideoSource::Decklink { .. })
            )
        {
            return Err(bad(
                "embedded audio needs an SRT or DeckLink video source".into()
            ));
        }
        if let Some(map) = self.audio.source.channel_map() {
            map.validate().map_err(bad)?;
        }
        if !(60..=86_400).contains(&self.dvr_seconds) {
            return Err(bad(format!(
                "dvr_seconds {} is outside 60..=86400",
                self.dvr_seconds
            )));
        }
        let video_ids: Vec<&str> = self
            .video
            .iter()
            .flat_map(|v| v.renditions.iter().map(|r| r.id.as_str()))
            .collect();
        validate::validate_renditions(&self.audio.renditions, &video_ids).map_err(bad)
    }

    /// Frames between keyframes: one GOP per segment, so every segment
    /// starts with an IDR.
    pub fn gop_frames(&self) -> u32 {
        self.video
            .as_ref()
            .map_or(0, |v| v.framerate * self.segment_seconds)
    }

    /// The CMAF chunk (LL-HLS part) duration for low latency: about a
    /// sixth of a segment, a whole number of video frames (or AAC frames
    /// without video). `None` for standard latency.
    pub fn part_duration(&self) -> Option<std::time::Duration> {
        if self.latency != Latency::Low {
            return None;
        }
        let target = self.segment_seconds as f64 / 6.0;
        let unit = match &self.video {
            Some(v) => 1.0 / v.framerate.max(1) as f64,
            None => 1024.0 / self.audio.sample_rate.max(1) as f64,
        };
        let units = (target / unit).round().max(1.0);
        Some(std::time::Duration::from_secs_f64(units * unit))
    }

    /// The longest part any rendition can have: a video part is whole
    /// frames; an audio part is whole codec frames, which a video-aligned
    /// chunk may exceed by up to one frame.
    pub fn part_target(&self) -> Option<f64> {
        let part = self.part_duration()?.as_secs_f64();
        Some(
            self.audio
                .renditions
                .iter()
                .map(|r| self.whole_frames(r.mix, part))
                .fold(part, f64::max),
        )
    }

    /// The chunk duration an audio muxer is given: the whole codec frames
    /// its parts hold, less 1 µs. cmafmux ends a chunk with the frame that
    /// holds the chunk's nominal end, so this makes the same parts as the
    /// video's part duration would; but a nominal end that falls inside a
    /// frame leaves a gap between it and the frame's end, and a segment
    /// split requested inside that gap is swallowed by the chunk, after
    /// which cmafmux (gst-plugin-fmp4 0.14.5) never starts another
    /// fragment. With the nominal end 1 µs before a frame boundary, the gap
    /// is 1 µs instead of up to a frame (8 ms for AAC at 48 kHz).
    ///
    /// Opus is one frame shorter: opusenc's first buffer is a partial frame
    /// (20 ms less the 6.5 ms pre-skip), which puts the frames off the
    /// chunk's grid, and the first part would take one frame more than the
    /// part target allows (0.3535 s of 0.342). Its parts are 16 frames
    /// (0.32 s), the first 0.3335 s.
    pub fn audio_chunk(&self, mix: Mix) -> Option<std::time::Duration> {
        let part = self.part_duration()?.as_secs_f64();
        let whole = self.whole_frames(mix, part);
        let nominal = match mix {
            Mix::Ambisonic => whole - 0.02,
            _ => whole,
        };
        Some(std::time::Duration::from_secs_f64(
            (nominal - 1e-6).max(1e-6),
        ))
    }

    /// `part` rounded up to whole codec frames of `mix` (AAC: 1024
    /// samples; Opus, the ambisonic rendition: 20 ms).
    fn whole_frames(&self, mix: Mix, part: f64) -> f64 {
        let frame = match mix {
            Mix::Ambisonic => 0.02,
            _ => 1024.0 / self.audio.sample_rate.max(1) as f64,
        };
        // (Less a hair: 0.14 / 0.02 is 7.000000000000001 in floats.)
        (part / frame - 1e-9).ceil() * frame
    }
}

mod roles;
#[cfg(test)]
mod tests;
mod validate;
