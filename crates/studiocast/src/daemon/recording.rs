//! Archival recording around a session: the program video as fragmented
//! MP4 (appended fragment by fragment, so a crash keeps every whole
//! fragment), and the disk-space guard that refuses starts on a nearly full
//! disk and stops recording, not streaming, when the disk fills.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use studiocast_media::master::RecordingState;
use studiocast_media::spec::{AmbisonicInput, BedInput, ObjectInput, StereoInput};

use crate::config::RecordingConfig;

/// Free space for unprivileged writers on the file system holding `path`.
pub fn free_mb(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize) / (1024 * 1024))
}

/// Refuse a start below the threshold, naming the figures.
pub fn check_start(dir: &Path, cfg: &RecordingConfig) -> Result<u64, String> {
    let free =
        free_mb(dir).map_err(|e| format!("cannot read free space of {}: {e}", dir.display()))?;
    if free < cfg.min_free_mb {
        return Err(format!(
            "only {free} MB free on {}; a session needs at least {} MB to start (recording.min_free_mb)",
            dir.display(),
            cfg.min_free_mb
        ));
    }
    Ok(free)
}

/// Where a session's audio came from, as the sidecar records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum AudioOrigin {
    /// A studio interface: cpal host and device name (default when absent).
    Device {
        host: String,
        device: Option<String>,
    },
    /// The audio carried by the video input (SRT, SDI).
    Embedded { embedded_in: String },
    /// The rehearsal scene.
    Synthetic,
}

/// The input's channels by role (the preset's channel map), as recorded.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RecordedChannelMap {
    pub ambisonic: Option<AmbisonicInput>,
    pub objects: Vec<ObjectInput>,
    pub bed: Option<BedInput>,
    pub stereo: Option<StereoInput>,
}

/// The JSON sidecar next to the masters (`master.json`): what was recorded,
/// from when to when, with which channel map; and, after a crash, what the
/// repair recovered. Written atomically at the start and the end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SidecarRecord {
    pub title: String,
    pub course: String,
    pub pipeline: String,
    pub session: String,
    pub audio_source: AudioOrigin,
    /// `master.wav` when the untouched input is recorded.
    pub audio_master: Option<String>,
    pub channels: Option<u16>,
    pub sample_rate: u32,
    pub channel_map: Option<RecordedChannelMap>,
    pub audio_format: String,
    /// `program.mp4` when the session has video.
    pub video_master: Option<String>,
    pub video_format: String,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_stopped_early: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_audio_s: Option<f64>,
}

/// The sidecar file and its record.
pub struct Sidecar {
    path: PathBuf,
    record: Box<SidecarRecord>,
}

impl Sidecar {
    /// Write the sidecar; an error (the file could not be written) is
    /// returned beside it, for the session's alarm.
    pub fn create(path: PathBuf, record: SidecarRecord) -> (Self, Result<(), String>) {
        let s = Sidecar {
            path,
            record: Box::new(record),
        };
        let r = s.save();
        (s, r)
    }

    fn save(&self) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(&self.record)
            .map_err(|e| format!("cannot encode the recording sidecar: {e}"))?;
        super::store::write_atomic(&self.path, &bytes).map_err(|e| {
            tracing::error!(file = %self.path.display(), %e, "cannot write the recording sidecar");
            format!("recording sidecar {} not written: {e}", self.path.display())
        })
    }

    pub fn finish(&mut self, ended_at: &str, state: &RecordingState) -> Result<(), String> {
        self.record.ended_at = Some(ended_at.to_string());
        self.record.recording_stopped_early = state.alarm();
        self.save()
    }
}

/// Mark an interrupted session's sidecar with what the repair recovered.
pub fn mark_interrupted(path: &Path, recovered_s: Option<f64>, at: &str) {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(file = %path.display(), %e, "no recording sidecar to mark");
            return;
        }
    };
    let mut record: SidecarRecord = match serde_json::from_slice(&text) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(file = %path.display(), %e, "recording sidecar is damaged");
            return;
        }
    };
    record.interrupted = true;
    record.repaired_at = Some(at.to_string());
    record.recovered_audio_s = recovered_s;
    // Logged by `save`; the interrupted record's message says what was
    // recovered either way.
    let _ = Sidecar {
        path: path.to_path_buf(),
        record: Box::new(record),
    }
    .save();
}

/// Cut a fragmented MP4 after its last whole top-level box: a `kill -9`
/// in the middle of appending a fragment leaves a torn tail that some
/// players choke on. Returns the bytes kept.
pub fn repair_fmp4(path: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = f.metadata()?.len();
    let mut at = 0u64;
    // Start of the last whole `moof`: a fragment is only whole with its
    // `mdat`, so a torn `mdat` takes its `moof` with it.
    let mut open_moof: Option<u64> = None;
    let mut head = [0u8; 16];
    while at + 8 <= len {
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut head[..8])?;
        let mut size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as u64;
        if size == 1 {
            if at + 16 > len {
                break;
            }
            f.read_exact(&mut head[8..16])?;
            size = u64::from_be_bytes([
                head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15],
            ]);
        }
        if size < 8 || size > len - at {
            break;
        }
        open_moof = match &head[4..8] {
            b"moof" => Some(at),
            b"mdat" => None,
            _ => open_moof,
        };
        at += size;
    }
    if let Some(m) = open_moof {
        at = m;
    }
    if at < len {
        f.set_len(at)?;
        f.sync_all()?;
    }
    Ok(at)
}

/// What the packaging worker records besides the stream.
pub struct Recording {
    pub video: PathBuf,
    pub state: Arc<RecordingState>,
}

/// Appends the program video's init segment and fragments to one file.
pub struct ProgramRecorder {
    file: Option<std::fs::File>,
    state: Option<Arc<RecordingState>>,
    has_init: bool,
    /// Bytes of whole init and fragments written.
    written: u64,
}

impl ProgramRecorder {
    pub fn new(rec: Option<Recording>) -> Self {
        let Some(rec) = rec else {
            return ProgramRecorder {
                file: None,
                state: None,
                has_init: false,
                written: 0,
            };
        };
        let file = match std::fs::File::create(&rec.video) {
            Ok(f) => Some(f),
            Err(e) => {
                rec.state
                    .stop(&format!("cannot create {}: {e}", rec.video.display()));
                None
            }
        };
        ProgramRecorder {
            file,
            state: Some(rec.state),
            has_init: false,
            written: 0,
        }
    }

    /// The first init segment starts the file; the program's encoder does
    /// not change, so later ones are not needed.
    pub fn init(&mut self, data: &[u8]) {
        if !self.has_init {
            self.has_init = true;
            self.write(data);
        }
    }

    pub fn chunk(&mut self, data: &[u8]) {
        if self.has_init {
            self.write(data);
        }
    }

    fn write(&mut self, data: &[u8]) {
        if self.state.as_ref().is_some_and(|s| s.stopped()) {
            self.close();
            return;
        }
        let Some(f) = self.file.as_mut() else { return };
        if let Err(e) = f.write_all(data) {
            // Drop the part of the fragment that made it, so the file ends
            // on a whole fragment.
            let _ = f.set_len(self.written);
            if let Some(s) = &self.state {
                s.fail(&format!("program video write failed: {e}"));
            }
            self.close();
        } else {
            self.written += data.len() as u64;
        }
    }

    fn close(&mut self) {
        if let Some(f) = self.file.take() {
            let _ = f.sync_all();
        }
    }
}

impl Drop for ProgramRecorder {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_round_trips_and_records_the_repair() {
        let p =
            std::env::temp_dir().join(format!("studiocast-sidecar-{}.json", std::process::id()));
        let record = SidecarRecord {
            title: "T".into(),
            course: String::new(),
            pipeline: "jack".into(),
            session: "abc".into(),
            audio_source: AudioOrigin::Device {
                host: "JACK".into(),
                device: None,
            },
            audio_master: Some("master.wav".into()),
            channels: Some(16),
            sample_rate: 48_000,
            channel_map: Some(RecordedChannelMap::default()),
            audio_format: "WAV".into(),
            video_master: None,
            video_format: String::new(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            ended_at: None,
            recording_stopped_early: None,
            interrupted: false,
            repaired_at: None,
            recovered_audio_s: None,
        };
        let (_, written) = Sidecar::create(p.clone(), record.clone());
        assert!(written.is_ok());
        mark_interrupted(&p, Some(7.04), "2026-01-01T00:01:00.000Z");
        let back: SidecarRecord = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert!(back.interrupted);
        assert_eq!(back.recovered_audio_s, Some(7.04));
        assert_eq!(back.title, record.title);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_full_disk_stops_the_recording_with_an_alarm() {
        // /dev/full fails every write with ENOSPC, like a full disk.
        let state = Arc::new(RecordingState::default());
        let mut r = ProgramRecorder::new(Some(Recording {
            video: PathBuf::from("/dev/full"),
            state: state.clone(),
        }));
        r.init(b"ftyp....");
        r.chunk(b"moof....");
        let alarm = state.alarm().expect("an alarm");
        assert!(alarm.contains("program video write failed"), "{alarm}");
        // Only this recording stops; the audio master is not told to.
        assert!(!state.stopped());
        assert!(r.file.is_none());
    }

    #[test]
    fn a_torn_fragment_is_cut_off() {
        let p = std::env::temp_dir().join(format!("studiocast-fmp4-{}", std::process::id()));
        let mut bytes = Vec::new();
        for (kind, n) in [
            (b"ftyp", 16u32),
            (b"moov", 24),
            (b"moof", 40),
            (b"mdat", 100),
        ] {
            bytes.extend_from_slice(&n.to_be_bytes());
            bytes.extend_from_slice(kind);
            bytes.resize(bytes.len() + n as usize - 8, 0);
        }
        let whole = bytes.len() as u64;
        // A second fragment, torn by the kill.
        bytes.extend_from_slice(&40u32.to_be_bytes());
        bytes.extend_from_slice(b"moof");
        bytes.extend_from_slice(&[0; 10]);
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(repair_fmp4(&p).unwrap(), whole);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), whole);
        // A whole file is left alone.
        assert_eq!(repair_fmp4(&p).unwrap(), whole);
        // A whole moof with a torn mdat goes too: it is no fragment.
        bytes.truncate(whole as usize);
        bytes.extend_from_slice(&16u32.to_be_bytes());
        bytes.extend_from_slice(b"moof");
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&100u32.to_be_bytes());
        bytes.extend_from_slice(b"mdat");
        bytes.extend_from_slice(&[0; 20]);
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(repair_fmp4(&p).unwrap(), whole);
        // A 64-bit size that would overflow is damage, not a panic.
        bytes.truncate(whole as usize);
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(b"mdat");
        bytes.extend_from_slice(&u64::MAX.to_be_bytes());
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(repair_fmp4(&p).unwrap(), whole);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn free_space_is_read_and_a_high_threshold_refuses_the_start() {
        let dir = std::env::temp_dir();
        let free = free_mb(&dir).unwrap();
        assert!(free > 0);
        // The same figure df gives, within what changes between the calls.
        let df = std::process::Command::new("df")
            .args(["--output=avail", "-m"])
            .arg(&dir)
            .output()
            .unwrap();
        let df: u64 = String::from_utf8_lossy(&df.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap();
        assert!(free.abs_diff(df) <= 64, "statvfs {free} MB, df {df} MB");
        let ok = RecordingConfig {
            min_free_mb: 1,
            ..RecordingConfig::default()
        };
        assert!(check_start(&dir, &ok).is_ok());
        let greedy = RecordingConfig {
            min_free_mb: free + 1_000_000,
            ..RecordingConfig::default()
        };
        let e = check_start(&dir, &greedy).unwrap_err();
        assert!(e.contains("min_free_mb"), "{e}");
    }
}
