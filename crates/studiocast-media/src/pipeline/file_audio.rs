//! The sound of a video file (MP4, MOV, MKV: AAC, PCM, multichannel), read
//! through GStreamer as an [`AudioSource`], so a file job renders it like
//! any recording.
//!
//! GStreamer, not symphonia, for these: its demuxers apply the container's
//! edit list, so an AAC encoder's priming (1024 samples, 21 ms) does not
//! push the sound behind the picture, and they read what cameras write
//! (PCM in MOV, multichannel AAC). Memory stays bounded: the appsink holds
//! a few buffers and the decoder waits for the reader. `audiorate` fills
//! gaps in the track's timestamps with silence (and a late start), so the
//! samples, counted from 0 by the reader, stay at their own time.

use std::path::{Path, PathBuf};

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use studiocast_audiofile::{AudioFileError, AudioSource};

use super::file_video::route_first;
use super::{add_and_link, gst_err};
use crate::elements as el;
use crate::MediaError;

/// How long opening (and prerolling) the file may take.
const OPEN_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(20);

pub struct GstAudioSource {
    path: PathBuf,
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    channels: usize,
    rate: u32,
    frames: Option<u64>,
    /// Interleaved samples pulled but not read yet, from `pos`.
    pending: Vec<f32>,
    pos: usize,
    done: bool,
}

impl GstAudioSource {
    /// Open the file's first audio stream (decoded to float at its own rate
    /// and channel count); the other streams are dropped.
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        crate::init()?;
        let pipeline = gst::Pipeline::new();
        let src = el::filesrc(path)?;
        let decode = el::decodebin_only(|kind| kind != "video")?;
        let convert = el::audioconvert()?;
        let rate = el::audiorate()?;
        let raw = el::capsfilter(
            gst::Caps::builder("audio/x-raw")
                .field("format", "F32LE")
                .field("layout", "interleaved")
                .build(),
        )?;
        let sink = gst_app::AppSink::builder()
            .sync(false)
            .max_buffers(8)
            .build();
        add_and_link(&pipeline, &[&src, &decode])?;
        add_and_link(&pipeline, &[&convert, &rate, &raw, sink.upcast_ref()])?;
        let entry = convert
            .static_pad("sink")
            .ok_or_else(|| gst_err("audioconvert without sink"))?;
        route_first(
            &pipeline,
            &decode,
            entry,
            "audio/",
            "the file has no sound track to read",
        );
        let mut source = GstAudioSource {
            path: path.to_path_buf(),
            pipeline,
            sink,
            channels: 0,
            rate: 0,
            frames: None,
            pending: Vec::new(),
            pos: 0,
            done: false,
        };
        source.preroll()?;
        Ok(source)
    }

    /// PAUSED, then the format from the first buffer's caps and the length
    /// from the duration, then PLAYING.
    fn preroll(&mut self) -> Result<(), MediaError> {
        let unreadable =
            |why: String| MediaError::BadFile(format!("{}: {why}", self.path.display()));
        self.pipeline
            .set_state(gst::State::Paused)
            .map_err(|_| unreadable("GStreamer cannot read it".into()))?;
        let bus = self.pipeline.bus().ok_or_else(|| gst_err("no bus"))?;
        match bus
            .timed_pop_filtered(
                OPEN_TIMEOUT,
                &[gst::MessageType::AsyncDone, gst::MessageType::Error],
            )
            .as_ref()
            .map(|m| m.view())
        {
            Some(gst::MessageView::AsyncDone(_)) => {}
            Some(gst::MessageView::Error(e)) => return Err(unreadable(e.error().to_string())),
            _ => return Err(unreadable("no audio stream".into())),
        }
        let caps = self
            .sink
            .static_pad("sink")
            .and_then(|p| p.current_caps())
            .ok_or_else(|| unreadable("no audio stream".into()))?;
        let s = caps
            .structure(0)
            .ok_or_else(|| unreadable("no audio format".into()))?;
        let channels = s.get::<i32>("channels").unwrap_or(0);
        let rate = s.get::<i32>("rate").unwrap_or(0);
        if !(1..=i32::from(studiocast_audiofile::MAX_CHANNELS)).contains(&channels) || rate <= 0 {
            return Err(unreadable(format!("{channels} channels at {rate} Hz")));
        }
        self.channels = channels as usize;
        self.rate = rate as u32;
        self.frames = self
            .pipeline
            .query_duration::<gst::ClockTime>()
            .and_then(|d| d.nseconds().checked_mul(u64::from(self.rate)))
            .map(|n| n / 1_000_000_000);
        self.pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| unreadable("GStreamer cannot play it".into()))?;
        Ok(())
    }

    /// The next decoded buffer into `pending`; false at the end.
    fn pull(&mut self) -> Result<bool, AudioFileError> {
        if self.done {
            return Ok(false);
        }
        let Ok(sample) = self.sink.pull_sample() else {
            // EOS, or an error the bus has.
            self.done = true;
            if let Some(e) = self.error() {
                return Err(AudioFileError::Format {
                    path: self.path.clone(),
                    reason: e,
                });
            }
            return Ok(false);
        };
        let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) else {
            return Ok(true);
        };
        self.pending.clear();
        self.pos = 0;
        self.pending.extend(
            map.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        Ok(true)
    }

    fn error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
        match msg.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        }
    }
}

impl AudioSource for GstAudioSource {
    fn channels(&self) -> usize {
        self.channels
    }

    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn frames(&self) -> Option<u64> {
        self.frames
    }

    fn read_planar(
        &mut self,
        max: usize,
        out: &mut [Vec<f32>],
    ) -> studiocast_audiofile::Result<usize> {
        let ch = self.channels;
        if out.len() < ch {
            return Err(AudioFileError::ChannelMismatch {
                expected: ch,
                actual: out.len(),
            });
        }
        out.iter_mut().for_each(Vec::clear);
        let mut n = 0;
        while n < max {
            if self.pos >= self.pending.len() && !self.pull()? {
                break;
            }
            let take = ((self.pending.len() - self.pos) / ch).min(max - n);
            for f in 0..take {
                let frame = &self.pending[self.pos + f * ch..self.pos + (f + 1) * ch];
                for (c, v) in frame.iter().enumerate() {
                    out[c].push(*v);
                }
            }
            self.pos += take * ch;
            n += take;
            if take == 0 {
                // A buffer shorter than a frame: skip it.
                self.pos = self.pending.len();
            }
        }
        Ok(n)
    }
}

impl Drop for GstAudioSource {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
