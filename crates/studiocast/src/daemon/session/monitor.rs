//! The session's once-a-second look at itself: the disk (archival masters
//! stop below `stop_below_mb`, the whole session stops cleanly below
//! `floor_mb`), the encoder (an alarm when the video falls behind), the
//! packaging queue (an alarm when chunks were dropped), and the log lines
//! the audio thread may not write itself (an input going silent and
//! coming back).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use studiocast_media::master::RecordingState;
use studiocast_media::{AudioSnapshot, QueueStats};
use studiocast_server::{InputStatus, RecordingStatus, VideoInputStatus};
use tokio::sync::mpsc;

use super::super::recording::free_mb;
use crate::config::RecordingConfig;

/// What the disk watch read.
#[derive(Debug)]
pub enum DiskReading {
    FreeMb(u64),
    Failed(String),
}

/// Read the free space of `dir` once a second, off the runtime (a stalled
/// or remote file system can hold `statvfs`), until the session drops the
/// receiver.
pub fn spawn_disk_watch(dir: PathBuf, tx: mpsc::Sender<DiskReading>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let d = dir.clone();
            let read = tokio::task::spawn_blocking(move || free_mb(&d));
            let reading = match tokio::time::timeout(Duration::from_secs(2), read).await {
                Ok(Ok(Ok(mb))) => DiskReading::FreeMb(mb),
                Ok(Ok(Err(e))) => DiskReading::Failed(e.to_string()),
                Ok(Err(e)) => DiskReading::Failed(e.to_string()),
                Err(_) => DiskReading::Failed("the file system does not answer".into()),
            };
            if tx.send(reading).await.is_err() {
                return;
            }
        }
    });
}

/// The video trails the wall clock by about 40 ms at 720p30 here; a
/// second behind means the encoder cannot keep up.
pub const LAG_ALARM_MS: i64 = 1000;
/// Seconds the lag must stay over the limit before the alarm (a single slow
/// fragment is not an overload).
const LAG_ALARM_TICKS: u32 = 3;

/// What a disk reading decided.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Stop the session now (the disk reached the floor).
    pub stop: bool,
}

/// Seconds (ticks) a source may be gone before it is an alarm.
const LOST_TICKS: u32 = 2;

/// Ticks without a dropped chunk before the queue alarm clears.
const QUEUE_CLEAR_TICKS: u32 = 30;

/// Past this the interface's clock is not a clock error a studio has (real
/// interfaces are within ±100 ppm; the correction stops at 1000): a word
/// clock or sample-rate mismatch.
pub const DRIFT_ALARM_PPM: f64 = 300.0;
/// Past this the audio is off the picture's timeline by a visible amount
/// (lip sync is noticed from about 45 ms early or 125 ms late).
pub const OFFSET_ALARM_MS: f64 = 200.0;
/// Seconds out of range before the alarm, and back in range before it
/// clears.
const DRIFT_TICKS: u32 = 5;

#[derive(Debug, Default)]
pub struct Monitor {
    /// Active alarms by kind, in the order they were raised.
    alarms: Vec<(&'static str, String)>,
    lag_ticks: u32,
    quiet_queue_ticks: u32,
    silences: u64,
    silent: bool,
    /// Consecutive ticks with the video source gone, and with the audio
    /// input delivering nothing.
    lost_ticks: u32,
    mute_ticks: u32,
    /// Consecutive ticks with the clock out of range, and back in range.
    drift_out: u32,
    drift_in: u32,
    floor_hit: bool,
    /// The last free-space reading, for the status.
    pub free_mb: Option<u64>,
}

impl Monitor {
    pub fn raise(&mut self, kind: &'static str, text: String) {
        match self.alarms.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, t)) => *t = text,
            None => {
                tracing::error!(alarm = kind, "{text}");
                self.alarms.push((kind, text));
            }
        }
    }

    pub fn clear(&mut self, kind: &'static str) {
        if self.alarms.iter().any(|(k, _)| *k == kind) {
            tracing::info!(alarm = kind, "alarm cleared");
            self.alarms.retain(|(k, _)| *k != kind);
        }
    }

    pub fn alarms(&self) -> Vec<String> {
        self.alarms.iter().map(|(_, t)| t.clone()).collect()
    }

    /// The active alarms by kind, with their current text.
    pub fn active(&self) -> &[(&'static str, String)] {
        &self.alarms
    }

    /// The once-a-second look at the session's own state.
    pub fn tick(
        &mut self,
        status: &AudioSnapshot,
        queue: Option<&QueueStats>,
        recording: Option<&RecordingState>,
    ) {
        self.watch_audio(status);
        self.watch_encoder(status);
        self.watch_inputs(status);
        self.watch_clock(status);
        if let Some(q) = queue {
            if q.overflowed.swap(false, Ordering::Relaxed) {
                self.quiet_queue_ticks = 0;
                self.raise(
                    "queue",
                    format!(
                        "packaging fell behind (disk stalled?): {} media chunks dropped, {} MB waiting",
                        q.dropped_chunks.load(Ordering::Relaxed),
                        q.bytes.load(Ordering::Relaxed) >> 20
                    ),
                );
            } else {
                self.quiet_queue_ticks += 1;
                if self.quiet_queue_ticks >= QUEUE_CLEAR_TICKS {
                    self.clear("queue");
                }
            }
        }
        // A recording that stopped early (disk, write error) is an alarm
        // now, not only at the end.
        if let Some(a) = recording.and_then(|r| r.alarm()) {
            self.raise("recording", format!("recording stopped early: {a}"));
        }
    }

    fn watch_audio(&mut self, status: &AudioSnapshot) {
        if status.silences > self.silences || (status.silent && !self.silent) {
            tracing::warn!("audio input silent; playing silence until it returns");
        } else if self.silent && !status.silent {
            tracing::info!("audio input back");
        }
        self.silences = status.silences;
        self.silent = status.silent;
    }

    /// A source gone for [`LOST_TICKS`] seconds is an alarm (one lost
    /// packet is not), cleared when it is back: the video source of an
    /// ingest (the slate is on air meanwhile), and an audio input that
    /// stopped delivering (silence is played meanwhile).
    fn watch_inputs(&mut self, status: &AudioSnapshot) {
        match &status.ingest {
            Some(i) if !i.connected => {
                self.lost_ticks += 1;
                if self.lost_ticks >= LOST_TICKS {
                    self.raise(
                        "signal",
                        format!(
                            "video source lost: {} (no signal; the slate is on air)",
                            i.source
                        ),
                    );
                }
            }
            _ => {
                self.lost_ticks = 0;
                self.clear("signal");
            }
        }
        if status.silent {
            self.mute_ticks += 1;
            if self.mute_ticks >= LOST_TICKS {
                self.raise(
                    "audio",
                    "audio input lost: the interface delivers nothing (silence is played until it returns)"
                        .into(),
                );
            }
        } else {
            self.mute_ticks = 0;
            self.clear("audio");
        }
    }

    /// The drift loop's estimate and the A/V offset it corrects: out of
    /// range for [`DRIFT_TICKS`] seconds is an alarm, cleared after as
    /// long back in range.
    fn watch_clock(&mut self, status: &AudioSnapshot) {
        let (ppm, off) = (status.drift_ppm, status.av_offset_ms);
        let out = ppm.abs() >= DRIFT_ALARM_PPM || off.abs() >= OFFSET_ALARM_MS;
        if out {
            self.drift_in = 0;
            self.drift_out += 1;
            if self.drift_out >= DRIFT_TICKS {
                self.raise(
                    "drift",
                    format!(
                        "audio clock out of range: drift {ppm:.0} ppm (limit ±{DRIFT_ALARM_PPM:.0}), A/V offset {off:.0} ms (limit ±{OFFSET_ALARM_MS:.0}); check the interface's word clock and sample rate"
                    ),
                );
            }
        } else {
            self.drift_out = 0;
            self.drift_in += 1;
            if self.drift_in >= DRIFT_TICKS {
                self.clear("drift");
            }
        }
    }

    fn watch_encoder(&mut self, status: &AudioSnapshot) {
        if status.video_lag_ms > LAG_ALARM_MS {
            self.lag_ticks += 1;
            if self.lag_ticks >= LAG_ALARM_TICKS {
                self.raise(
                    "encoder",
                    format!(
                        "the video encoder is falling behind: video {} ms behind real time (too many sessions for this machine?)",
                        status.video_lag_ms
                    ),
                );
            }
        } else {
            self.lag_ticks = 0;
            self.clear("encoder");
        }
    }

    /// Apply a free-space reading: below the floor the session stops;
    /// below `stop_below_mb` the archival recording does.
    pub fn on_disk(
        &mut self,
        reading: DiskReading,
        dir: &std::path::Path,
        cfg: &RecordingConfig,
        recording: Option<&RecordingState>,
    ) -> Verdict {
        let free = match reading {
            DiskReading::FreeMb(f) => f,
            DiskReading::Failed(e) => {
                self.raise(
                    "disk",
                    format!("cannot read free disk space of {}: {e}", dir.display()),
                );
                return Verdict::default();
            }
        };
        self.free_mb = Some(free);
        if free < cfg.floor_mb {
            if !self.floor_hit {
                self.floor_hit = true;
                self.raise(
                    "disk",
                    format!(
                        "disk nearly full: {free} MB free on {}, below recording.floor_mb = {} MB; the session was stopped",
                        dir.display(),
                        cfg.floor_mb
                    ),
                );
            }
            // The masters stop at once; the stream drains and ends.
            if let Some(r) = recording {
                r.stop(&format!("disk nearly full: {free} MB free"));
            }
            return Verdict { stop: true };
        }
        if !self.floor_hit {
            self.clear("disk");
        }
        if free < cfg.stop_below_mb {
            if let Some(r) = recording.filter(|r| !r.stopped()) {
                r.stop(&format!(
                    "disk nearly full: {free} MB free on {}, below recording.stop_below_mb = {} MB",
                    dir.display(),
                    cfg.stop_below_mb
                ));
            }
        }
        Verdict::default()
    }
}

/// An alarm raised (`true`) or cleared (`false`) between two looks at
/// [`Monitor::active`].
#[derive(Debug, PartialEq)]
pub struct AlarmChange<'a> {
    pub kind: &'static str,
    pub text: &'a str,
    pub raised: bool,
}

/// What was raised and cleared between `before` and `now`, by kind: an
/// alarm whose text carries a live figure (the video lag, chunks dropped)
/// is rewritten every tick, and is still one alarm raised once.
pub fn alarm_changes<'a>(
    before: &'a [(&'static str, String)],
    now: &'a [(&'static str, String)],
) -> Vec<AlarmChange<'a>> {
    let has = |list: &[(&'static str, String)], k: &str| list.iter().any(|(x, _)| *x == k);
    let raised = now
        .iter()
        .filter(|(k, _)| !has(before, k))
        .map(|(kind, t)| AlarmChange {
            kind,
            text: t,
            raised: true,
        });
    let cleared = before
        .iter()
        .filter(|(k, _)| !has(now, k))
        .map(|(kind, t)| AlarmChange {
            kind,
            text: t,
            raised: false,
        });
    raised.chain(cleared).collect()
}

/// What a technician sees of a running session's inputs.
pub fn input_status(
    a: AudioSnapshot,
    recording: Option<&RecordingState>,
    free_mb: Option<u64>,
) -> InputStatus {
    let finite = |x: f64| if x.is_finite() { x } else { -1.0 };
    let video = a.ingest.map(|i| {
        let v = a.video.clone().unwrap_or_default();
        VideoInputStatus {
            source: i.source,
            signal_present: i.connected,
            last_packet_age_s: finite(i.last_packet_age_s),
            reconnects: i.reconnects,
            losses: i.losses,
            frames_in: i.frames_in,
            on_slate: v.on_slate,
            slate_frames: v.slate_frames,
            repeated_frames: v.repeated_frames,
            dropped_frames: v.dropped_frames,
            last_error: i.last_error,
        }
    });
    InputStatus {
        silent_blocks: a.silent_blocks,
        block_frames: a.block_frames,
        video_lag_ms: a.video_lag_ms,
        video,
        recording: recording.map(|r| RecordingStatus {
            recording: !r.stopped() && r.alarm().is_none(),
            alarm: r.alarm(),
            disk_free_mb: free_mb.unwrap_or(0),
        }),
        audio_source: a.source,
        audio_frames_in: a.frames_in,
        overruns: a.overruns,
        underruns: a.underruns,
        xruns: a.xruns,
        xrun_ms: a.xrun_ms,
        drift_ppm: a.drift_ppm,
        av_offset_ms: a.av_offset_ms,
        // JSON has no infinity: a source that never delivered reads -1.
        last_block_age_s: finite(a.last_block_age_s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(ms: i64) -> AudioSnapshot {
        AudioSnapshot {
            video_lag_ms: ms,
            ..AudioSnapshot::default()
        }
    }

    fn clock(ppm: f64, off: f64) -> AudioSnapshot {
        AudioSnapshot {
            drift_ppm: ppm,
            av_offset_ms: off,
            ..AudioSnapshot::default()
        }
    }

    /// A clock out of range for 5 s is an alarm; a brief excursion is
    /// not; it clears after 5 s back in range.
    #[test]
    fn a_clock_out_of_range_raises_the_drift_alarm() {
        let mut m = Monitor::default();
        for s in [clock(40.0, 3.0), clock(900.0, 0.0), clock(40.0, 0.0)] {
            m.tick(&s, None, None);
        }
        for _ in 0..4 {
            m.tick(&clock(450.0, 10.0), None, None);
        }
        assert!(m.alarms().is_empty(), "{:?}", m.alarms());
        m.tick(&clock(450.0, 10.0), None, None);
        assert!(m.alarms()[0].contains("450 ppm"), "{:?}", m.alarms());
        // The offset alone, either sign.
        let mut o = Monitor::default();
        for _ in 0..5 {
            o.tick(&clock(0.0, -250.0), None, None);
        }
        assert_eq!(o.active()[0].0, "drift");
        for _ in 0..4 {
            m.tick(&clock(20.0, 1.0), None, None);
        }
        assert_eq!(m.active().len(), 1);
        m.tick(&clock(20.0, 1.0), None, None);
        assert!(m.alarms().is_empty());
    }

    /// The encoder alarm's text carries the lag, which changes every tick:
    /// one raise, then one clear, not a raise and clear per tick.
    #[test]
    fn an_alarm_with_a_live_figure_is_raised_once() {
        let mut m = Monitor::default();
        let mut seen = Vec::new();
        let mut last: Vec<(&'static str, String)> = Vec::new();
        for ms in [1500, 1600, 1700, 1800, 1900, 2000, 40, 40] {
            m.tick(&lag(ms), None, None);
            for c in alarm_changes(&last, m.active()) {
                seen.push((c.kind, c.raised));
            }
            last = m.active().to_vec();
        }
        assert_eq!(seen, [("encoder", true), ("encoder", false)]);
    }

    #[test]
    fn an_encoder_falling_behind_raises_an_alarm_that_clears() {
        let mut m = Monitor::default();
        // One slow fragment is not an overload.
        for ms in [40, 1500, 40, 1500, 1500] {
            m.tick(&lag(ms), None, None);
        }
        assert!(m.alarms().is_empty(), "{:?}", m.alarms());
        m.tick(&lag(1800), None, None);
        let a = m.alarms();
        assert!(a.len() == 1 && a[0].contains("1800 ms behind"), "{a:?}");
        m.tick(&lag(45), None, None);
        assert!(m.alarms().is_empty());
    }

    #[test]
    fn a_lost_source_is_an_alarm_after_two_seconds_until_it_returns() {
        let mut m = Monitor::default();
        let video = |connected: bool| AudioSnapshot {
            ingest: Some(studiocast_media::ingest::IngestSnapshot {
                source: "SRT listener :9000".into(),
                connected,
                ..Default::default()
            }),
            ..lag(40)
        };
        m.tick(&video(false), None, None);
        assert!(m.alarms().is_empty(), "one second is a hiccup");
        m.tick(&video(false), None, None);
        assert!(
            m.alarms()[0].contains("video source lost: SRT listener"),
            "{:?}",
            m.alarms()
        );
        m.tick(&video(true), None, None);
        assert!(m.alarms().is_empty());
        let mute = AudioSnapshot {
            silent: true,
            ..lag(40)
        };
        m.tick(&mute, None, None);
        m.tick(&mute, None, None);
        assert!(
            m.alarms()[0].contains("audio input lost"),
            "{:?}",
            m.alarms()
        );
        m.tick(&lag(40), None, None);
        assert!(m.alarms().is_empty());
    }

    #[test]
    fn dropped_chunks_raise_the_queue_alarm_until_the_queue_is_quiet() {
        let mut m = Monitor::default();
        let q = QueueStats::default();
        q.dropped_chunks.store(7, Ordering::Relaxed);
        q.overflowed.store(true, Ordering::Relaxed);
        m.tick(&lag(40), Some(&q), None);
        assert!(
            m.alarms()[0].contains("7 media chunks dropped"),
            "{:?}",
            m.alarms()
        );
        assert!(
            !q.overflowed.load(Ordering::Relaxed),
            "the flag is consumed"
        );
        for _ in 0..QUEUE_CLEAR_TICKS {
            m.tick(&lag(40), Some(&q), None);
        }
        assert!(m.alarms().is_empty(), "{:?}", m.alarms());
    }

    #[test]
    fn a_recording_that_stopped_early_is_an_alarm_at_once() {
        let mut m = Monitor::default();
        let state = RecordingState::default();
        state.fail("audio master write failed: No space left on device");
        m.tick(&lag(40), None, Some(&state));
        assert!(
            m.alarms()[0].contains("recording stopped early"),
            "{:?}",
            m.alarms()
        );
    }

    #[test]
    fn the_floor_stops_the_session_and_stop_below_only_the_recording() {
        let dir = std::path::Path::new("/data");
        let state = RecordingState::default();
        let mut m = Monitor::default();
        let c = RecordingConfig {
            min_free_mb: 2048,
            stop_below_mb: 512,
            floor_mb: 128,
        };
        assert!(
            !m.on_disk(DiskReading::FreeMb(600), dir, &c, Some(&state))
                .stop
        );
        assert!(!state.stopped());
        assert!(
            !m.on_disk(DiskReading::FreeMb(400), dir, &c, Some(&state))
                .stop
        );
        assert!(state.stopped() && state.alarm().unwrap().contains("stop_below_mb"));
        assert!(
            m.on_disk(DiskReading::FreeMb(100), dir, &c, Some(&state))
                .stop
        );
        assert!(m.alarms()[0].contains("floor_mb"), "{:?}", m.alarms());
        assert_eq!(m.free_mb, Some(100));
        let mut m = Monitor::default();
        m.on_disk(DiskReading::Failed("EIO".into()), dir, &c, None);
        assert!(m.alarms()[0].contains("EIO"));
        m.on_disk(DiskReading::FreeMb(9000), dir, &c, None);
        assert!(m.alarms().is_empty(), "a reading clears the disk alarm");
    }
}
