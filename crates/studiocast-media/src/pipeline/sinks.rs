//! Where a session pipeline's media leaves it: one `appsink` per rendition
//! turning cmafmux output into [`MediaEvent`]s, the end-of-stream tracker,
//! and the bus watcher.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;

use super::{MediaKind, Taps};
use crate::events::{EventSender, MediaEvent};

/// Sends [`MediaEvent::Eos`] once, when every appsink has seen EOS (from the
/// sinks' own callbacks, or the bus, whichever comes first).
#[derive(Clone)]
pub(crate) struct EosTracker {
    remaining: Arc<AtomicUsize>,
    sent: Arc<AtomicBool>,
    tx: EventSender,
}

impl EosTracker {
    pub(crate) fn new(sinks: usize, tx: EventSender) -> Self {
        EosTracker {
            remaining: Arc::new(AtomicUsize::new(sinks)),
            sent: Arc::new(AtomicBool::new(false)),
            tx,
        }
    }

    fn sink_done(&self) {
        // Saturating: a sink that reports EOS twice must not wrap the count.
        let before = self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        if before == 1 {
            self.send();
        }
    }

    fn send(&self) {
        if !self.sent.swap(true, Ordering::SeqCst) {
            self.tx.send(MediaEvent::Eos);
        }
    }
}

/// Longer than one AAC frame at 44.1 kHz (23 ms), far shorter than any
/// real audio fragment (a part is at least 1/6 of a one-second segment).
const STRADDLER_SECONDS: f64 = 0.05;

/// The appsink of one rendition. `lag`, for the video: wall clock minus
/// capture time at each fragment's end (the encoder's load).
pub(crate) fn appsink(
    rendition: &str,
    kind: MediaKind,
    taps: &Taps,
    lag: Option<&Arc<AtomicI64>>,
) -> gst_app::AppSink {
    let (events, pdt_offset, eos) = (taps.events, taps.pdt_offset, taps.eos);
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .buffer_list(true)
        .max_buffers(64)
        .build();
    let tx = events.clone();
    let id = rendition.to_string();
    let offset = pdt_offset.clone();
    let eos = eos.clone();
    let lag = lag.cloned();
    let origin = (kind == MediaKind::Video).then(|| taps.video_origin.clone());
    // (sent any chunk yet, folded a straddler into the previous segment)
    let mut state = (false, false);
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .eos(move |_| eos.sink_done())
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let end = handle_sample(
                    &id,
                    kind,
                    &sample,
                    &tx,
                    offset.load(Ordering::SeqCst),
                    &mut state,
                    origin.as_deref(),
                );
                if let (Some(lag), Some(end)) = (&lag, end) {
                    lag.store(crate::now_ms() - end, Ordering::Relaxed);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    sink
}

/// Split a cmafmux output list into the init segment (HEADER|DISCONT, sent
/// once) and the fragment (moof header + mdat buffers).
/// Returns the capture time at the fragment's end (ms since the epoch).
fn handle_sample(
    id: &str,
    kind: MediaKind,
    sample: &gst::Sample,
    tx: &EventSender,
    pdt_offset_ms: i64,
    state: &mut (bool, bool),
    origin: Option<&AtomicU64>,
) -> Option<i64> {
    let mut buffers: Vec<gst::Buffer> = Vec::new();
    if let Some(list) = sample.buffer_list() {
        buffers.extend(list.iter_owned());
    } else if let Some(b) = sample.buffer_owned() {
        buffers.push(b);
    }
    let segment = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
    let mut data = Vec::new();
    let mut duration = 0.0;
    let mut pts_ms = None;
    let mut boundary = false;
    for b in buffers {
        let f = b.flags();
        let Ok(map) = b.map_readable() else { continue };
        if f.contains(gst::BufferFlags::HEADER) && f.contains(gst::BufferFlags::DISCONT) {
            tx.send(MediaEvent::Init {
                rendition: id.to_string(),
                data: map.to_vec(),
            });
            continue;
        }
        if f.contains(gst::BufferFlags::HEADER) {
            // cmafmux clears DELTA_UNIT on a fragment's first chunk only.
            boundary = !f.contains(gst::BufferFlags::DELTA_UNIT);
            duration = b.duration().map_or(0.0, |d| d.nseconds() as f64 / 1e9);
            let running = match (&segment, b.pts()) {
                (Some(seg), Some(p)) => seg.to_running_time(p).or(Some(p)),
                (None, p) => p,
                _ => None,
            };
            pts_ms = running.map(|t| t.mseconds() as i64);
            // The first video fragment fixes the grid the audio splits
            // follow (the first rung to get there; all share the frames).
            if let (true, Some(o), Some(t)) = (boundary, origin, running) {
                let _ = o.compare_exchange(
                    super::ORIGIN_UNKNOWN,
                    t.nseconds(),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
        }
        data.extend_from_slice(&map);
    }
    if data.is_empty() {
        return None;
    }
    let pdt_ms = pdt_offset_ms.saturating_add(pts_ms.unwrap_or(0));
    // An audio muxer told to split at a segment boundary that falls inside
    // an AAC frame emits that one frame as a fragment of its own, then
    // starts the next at the first frame after the boundary. Every AAC
    // frame is a sync sample, so the straddler joins the segment before
    // it and the next segment starts on the grid.
    let (sent_any, straddled) = state;
    if kind == MediaKind::Audio && boundary && *sent_any && duration < STRADDLER_SECONDS {
        boundary = false;
        *straddled = true;
    } else if kind == MediaKind::Audio && *straddled {
        // The muxer may carry on the straddler's fragment instead of
        // starting a new one: either way the segment starts here.
        boundary = true;
        *straddled = false;
    }
    *sent_any = true;
    tx.send(MediaEvent::Chunk {
        rendition: id.to_string(),
        data,
        duration,
        pdt_ms,
        // Every AAC frame is a sync sample; a video chunk starts with a
        // key frame only at a fragment's start (one GOP a segment).
        independent: boundary || kind == MediaKind::Audio,
        boundary,
        after_gap: false,
    });
    Some(pdt_ms.saturating_add((duration * 1000.0) as i64))
}

/// Report the pipeline's end of stream or first error, until `quit`.
pub(crate) fn watch_bus(bus: gst::Bus, tx: EventSender, quit: Arc<AtomicBool>, eos: EosTracker) {
    loop {
        // Checked on every turn: a stream of messages must not keep the
        // teardown waiting for this thread.
        if quit.load(Ordering::SeqCst) {
            return;
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => {
                eos.send();
                return;
            }
            gst::MessageView::Error(e) => {
                let src = e
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                let detail = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                tx.send(MediaEvent::Error(format!("{src}: {}{detail}", e.error())));
                return;
            }
            _ => {}
        }
    }
}
