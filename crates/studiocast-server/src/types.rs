//! The shapes the API reads and answers: sessions, their inputs' health,
//! presets, devices, disk use, meter readings, health. They are the
//! contract with clients: each derives its JSON Schema for the OpenAPI
//! document ([`crate::openapi`]) from the same definition serde uses.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Visibility;

/// Deserialises an optional whole number that may come written as a float
/// (`412.0`): JSON Schema's `integer` is the mathematical kind, so a
/// client (or a fuzzer) that writes `412.0` sent a valid integer. A
/// fraction, or a number out of the type's range, is still refused.
pub fn integral<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            // `u64::MAX as f64` is 2^64 itself, one past the range.
            .filter(|f| f.fract() == 0.0 && (0.0..u64::MAX as f64).contains(f))
            .map(|f| f as u64)
    });
    whole
        .and_then(|w| T::try_from(w).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number in range")))
}

/// Where a session is in its life. Serialised in lower case
/// (`"starting"`, `"live"`, …), as the API has always shown it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// The pipeline is being built or started.
    Starting,
    /// Every rendition has published a segment.
    Live,
    /// Draining after a stop request.
    Stopping,
    /// Stopped cleanly; the VOD is complete.
    Ended,
    /// An element failed, or the start was refused after the record was made.
    Failed,
    /// The daemon died while the session ran; the next start recovered it.
    Interrupted,
}

impl SessionState {
    /// Running or about to: a pipeline exists (or is being made) for it.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            SessionState::Starting | SessionState::Live | SessionState::Stopping
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Starting => "starting",
            SessionState::Live => "live",
            SessionState::Stopping => "stopping",
            SessionState::Ended => "ended",
            SessionState::Failed => "failed",
            SessionState::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct SessionInfo {
    pub id: String,
    pub state: SessionState,
    pub pipeline: String,
    pub title: String,
    pub course: String,
    /// Who may play it (older records: public).
    #[serde(default)]
    pub visibility: Visibility,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub error: Option<String>,
    pub urls: SessionUrls,
    /// Live health of a running session's inputs (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<InputStatus>,
    /// What needs a technician now: the encoder falling behind, HLS files
    /// that cannot be written, the disk nearly full, the packaging queue
    /// overflowing. Kept in the record once the session is over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
}

impl SessionInfo {
    /// A session being started, as the request describes it.
    pub fn starting(id: &str, req: &CreateSession, started_at: String) -> Self {
        SessionInfo {
            id: id.to_string(),
            state: SessionState::Starting,
            pipeline: req.pipeline.clone(),
            title: req.title.clone(),
            course: req.course.clone(),
            visibility: req.visibility.unwrap_or_default(),
            started_at,
            ended_at: None,
            error: None,
            urls: SessionUrls::for_id(id),
            inputs: None,
            alarms: Vec::new(),
        }
    }
}

/// What a technician watches on a running session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, ToSchema)]
pub struct InputStatus {
    /// Audio source: "synthetic" or the interface's host and name.
    pub audio_source: String,
    /// Frames delivered by the interface so far.
    pub audio_frames_in: u64,
    /// Callbacks that dropped frames because the ring was full.
    pub overruns: u64,
    /// Blocks padded with silence because the ring ran dry.
    pub underruns: u64,
    /// Time lost upstream (an xrun in the interface or its sound server),
    /// found from the capture timestamps: how often, and how long in all.
    /// Each one moves the A/V offset by its length, which the drift loop
    /// then takes back at up to 1 ms per second.
    #[serde(default)]
    pub xruns: u64,
    #[serde(default)]
    pub xrun_ms: f64,
    /// The interface's clock error as the drift loop estimates it.
    pub drift_ppm: f64,
    /// Deviation of the capture delay from its target (the A/V offset the
    /// drift loop is correcting), milliseconds.
    pub av_offset_ms: f64,
    /// Seconds since the last audio block left the input (signal present
    /// when small).
    pub last_block_age_s: f64,
    /// Blocks of silence played because the input went quiet.
    #[serde(default)]
    pub silent_blocks: u64,
    /// Frames per audio processing block (`[spatial] block`); the capture
    /// delay is three blocks.
    #[serde(default)]
    pub block_frames: u64,
    /// Encoder load: how far the encoded video trails the wall clock at
    /// each fragment's end, ms. Steady is fine; rising means overload.
    #[serde(default)]
    pub video_lag_ms: i64,
    /// A network or capture-card input (SRT, V4L2, DeckLink).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoInputStatus>,
    /// Archival recording of this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingStatus>,
}

/// Health of a video input that can come and go.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, ToSchema)]
pub struct VideoInputStatus {
    pub source: String,
    pub signal_present: bool,
    /// Seconds since the last frame or sample block (-1: never).
    pub last_packet_age_s: f64,
    /// Times the source came back after a loss.
    pub reconnects: u64,
    pub losses: u64,
    pub frames_in: u64,
    /// The program shows the slate now.
    pub on_slate: bool,
    pub slate_frames: u64,
    /// Output ticks that repeated the previous frame (source slower).
    pub repeated_frames: u64,
    /// Decoded frames never shown (source faster than the program).
    pub dropped_frames: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, ToSchema)]
pub struct RecordingStatus {
    pub recording: bool,
    /// Why recording stopped early (disk full, write error).
    pub alarm: Option<String>,
    pub disk_free_mb: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct SessionUrls {
    pub hls: String,
    pub vod: String,
}

impl SessionUrls {
    pub fn for_id(id: &str) -> Self {
        SessionUrls {
            hls: format!("/live/{id}/master.m3u8"),
            vod: format!("/vod/{id}/master.m3u8"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The preset's name (`GET /api/v1/presets`).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub pipeline: String,
    /// 1–200 characters, not all of them white space, none of them
    /// control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        // Rust's white space (`char::is_whitespace`) spelled out: regex
        // engines disagree on `\s` (JavaScript's has U+FEFF, Python's not).
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub title: String,
    /// At most 200 characters, none of them control characters.
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub course: String,
    /// Who may play it; the preset's `visibility` when absent.
    #[serde(default)]
    pub visibility: Option<Visibility>,
}

/// A preset as the console shows it: what it captures and makes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, ToSchema)]
pub struct PresetInfo {
    pub name: String,
    pub description: String,
    /// `low` or `standard`.
    pub latency: String,
    /// `public` or `private`.
    pub visibility: String,
    /// The audio input, in words ("JACK, 16 channels", "synthetic scene,
    /// order 3", "embedded in the video input, 2 channels").
    pub audio: String,
    /// The audio interface it needs (`host`, `name`; `name` empty for the
    /// host's default input), to match against `/api/v1/devices`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_device: Option<PresetDevice>,
    /// The video input, in words; absent for audio-only presets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
    /// The camera or SDI card it needs, to match against the devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_device: Option<PresetDevice>,
    /// Each input channel's role (`W`, `bed L`, an object's name; `null`
    /// for one the map leaves out).
    pub channels: Vec<Option<String>>,
    /// Rendition ids, video then audio.
    pub renditions: Vec<String>,
}

/// One session's disk use and what the retention rules would remove now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct DiskUse {
    pub id: String,
    pub title: String,
    pub state: SessionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Kept whole whatever the rules say.
    pub pinned: bool,
    /// The `hls/` folder: segments and playlists (live and VOD).
    pub hls_bytes: u64,
    /// `master.wav` and `program.mp4`.
    pub masters_bytes: u64,
    /// What the rules would remove now: `live`, `vod`, `masters`.
    pub due: Vec<String>,
}

/// A device a preset expects.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct PresetDevice {
    pub host: String,
    pub name: String,
}

/// An input device as the API lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct DeviceEntry {
    /// "audio" or "video".
    pub kind: String,
    /// Backend: ALSA, JACK, …
    pub host: String,
    pub name: String,
    pub max_input_channels: u16,
    pub sample_rates: Vec<u32>,
    pub available: bool,
    /// Why an expected device cannot be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One channel's level over the last tenth of a second.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ChannelMeter {
    /// "in 3", "bus ACN 0", "binaural L", …
    pub name: String,
    /// What the channel carries, from the preset's channel map: `W`, `Y`,
    /// `bed L`, `stereo R`, an object's name; absent for an unmapped one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub peak_dbfs: f32,
    pub rms_dbfs: f32,
    pub clip: bool,
}

/// What the meters WebSocket sends, about ten times a second.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct MeterFrame {
    /// Increases with every reading.
    pub seq: u64,
    pub channels: Vec<ChannelMeter>,
}

/// What `/healthz` and `/readyz` report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, ToSchema)]
pub struct Health {
    /// The supervisor answers commands (liveness).
    pub live: bool,
    /// A new session could start now (readiness): the supervisor is live,
    /// the store is writable, there is disk space and a free session slot.
    pub ready: bool,
    /// Why the daemon is not ready (empty when it is).
    pub reasons: Vec<String>,
    /// Sessions running now, and the most that may.
    pub sessions: usize,
    pub max_sessions: usize,
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct N {
        #[serde(default, deserialize_with = "super::integral")]
        n: Option<u64>,
    }

    fn n(json: &str) -> Option<Option<u64>> {
        serde_json::from_str::<N>(json).ok().map(|v| v.n)
    }

    #[test]
    fn integral_takes_whole_numbers_in_range_however_written() {
        assert_eq!(n(r#"{"n": 412}"#), Some(Some(412)));
        assert_eq!(n(r#"{"n": 412.0}"#), Some(Some(412)));
        assert_eq!(n(r#"{"n": null}"#), Some(None));
        assert_eq!(n(r#"{}"#), Some(None));
        assert_eq!(n(r#"{"n": 18446744073709551615}"#), Some(Some(u64::MAX)));
        for refused in [
            "412.5",
            "-1",
            "-1.0",
            "1e300",
            "18446744073709551616.0",
            "\"3\"",
        ] {
            assert_eq!(n(&format!(r#"{{"n": {refused}}}"#)), None, "{refused}");
        }
    }
}
