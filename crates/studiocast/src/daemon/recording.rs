//! Archival recording around a session: the program video as fragmented
//! MP4 (appended fragment by fragment, so a crash keeps every whole
//! fragment), and the disk-space guard that refuses starts on a nearly full
//! disk and stops recording, not streaming, when the disk fills.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Deserialize;
use studiocast_media::master::RecordingState;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// A session does not start with less free space than this on the data
    /// directory's file system.
    #[serde(default = "min_free")]
    pub min_free_mb: u64,
    /// A running session stops recording (and keeps streaming) below this.
    #[serde(default = "stop_below")]
    pub stop_below_mb: u64,
}

fn min_free() -> u64 {
    2048
}
fn stop_below() -> u64 {
    512
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            min_free_mb: min_free(),
            stop_below_mb: stop_below(),
        }
    }
}

/// Free space for unprivileged writers on the file system holding `path`.
pub fn free_mb(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is written by
    // statvfs before it is read (only on success).
    let r = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // The field widths differ between targets (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    let (blocks, size) = (st.f_bavail as u64, st.f_frsize as u64);
    Ok(blocks.saturating_mul(size) / (1024 * 1024))
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

/// Watch the disk while `state` lives; stop recording below the threshold.
pub fn watch_disk(dir: PathBuf, stop_below_mb: u64, state: Weak<RecordingState>) {
    let spawned = std::thread::Builder::new()
        .name("disk-watch".into())
        .spawn(move || {
            let mut warned = false;
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let Some(s) = state.upgrade() else { return };
                if s.stopped() {
                    return;
                }
                match free_mb(&dir) {
                    Ok(free) if free < stop_below_mb => {
                        s.stop(&format!(
                            "disk nearly full: {free} MB free on {}, below {stop_below_mb} MB",
                            dir.display()
                        ));
                        return;
                    }
                    Ok(_) => warned = false,
                    Err(e) if !warned => {
                        warned = true;
                        tracing::error!(dir = %dir.display(), %e, "cannot read free disk space");
                    }
                    Err(_) => {}
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(%e, "disk-space watch not started: recording is not guarded");
    }
}

/// The JSON sidecar next to the masters: what was recorded, from when to
/// when, with which channel map. Rewritten (atomically) at the end.
pub struct Sidecar {
    path: PathBuf,
    value: serde_json::Value,
}

impl Sidecar {
    pub fn create(path: PathBuf, value: serde_json::Value) -> Self {
        let s = Sidecar { path, value };
        s.save();
        s
    }

    fn save(&self) {
        if let Err(e) = super::store::write_atomic(&self.path, self.value.to_string().as_bytes()) {
            tracing::error!(file = %self.path.display(), %e, "cannot write the recording sidecar");
        }
    }

    pub fn finish(&mut self, ended_at: &str, state: &RecordingState) {
        if let Some(o) = self.value.as_object_mut() {
            o.insert("ended_at".into(), ended_at.into());
            if let Some(a) = state.alarm() {
                o.insert("recording_stopped_early".into(), a.into());
            }
        }
        self.save();
    }
}

/// Mark an interrupted session's sidecar with what the repair recovered.
pub fn mark_interrupted(path: &Path, recovered_s: Option<f64>, at: &str) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(file = %path.display(), %e, "no recording sidecar to mark");
            return;
        }
    };
    let mut v = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(file = %path.display(), %e, "recording sidecar is damaged");
            return;
        }
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("interrupted".into(), true.into());
        o.insert("repaired_at".into(), at.into());
        if let Some(s) = recovered_s {
            o.insert("recovered_audio_s".into(), s.into());
        }
    }
    if let Err(e) = super::store::write_atomic(path, v.to_string().as_bytes()) {
        tracing::error!(file = %path.display(), %e, "cannot update the recording sidecar");
    }
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
        let ok = RecordingConfig {
            min_free_mb: 1,
            stop_below_mb: 0,
        };
        assert!(check_start(&dir, &ok).is_ok());
        let greedy = RecordingConfig {
            min_free_mb: free + 1_000_000,
            stop_below_mb: 0,
        };
        let e = check_start(&dir, &greedy).unwrap_err();
        assert!(e.contains("min_free_mb"), "{e}");
    }
}
