//! Where a session pipeline's media leaves it: one `appsink` per rendition
//! turning cmafmux output into [`MediaEvent`]s, the end-of-stream tracker,
//! and the bus watcher.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;

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

/// The appsink of one rendition. `lag`, for the video: wall clock minus
/// capture time at each fragment's end (the encoder's load).
pub(crate) fn appsink(
    rendition: &str,
    events: &EventSender,
    pdt_offset: &Arc<AtomicI64>,
    eos: &EosTracker,
    lag: Option<&Arc<AtomicI64>>,
) -> gst_app::AppSink {
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
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .eos(move |_| eos.sink_done())
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let end = handle_sample(&id, &sample, &tx, offset.load(Ordering::SeqCst));
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
    sample: &gst::Sample,
    tx: &EventSender,
    pdt_offset_ms: i64,
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
    let mut independent = false;
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
            independent = !f.contains(gst::BufferFlags::DELTA_UNIT);
            duration = b.duration().map_or(0.0, |d| d.nseconds() as f64 / 1e9);
            let running = match (&segment, b.pts()) {
                (Some(seg), Some(p)) => seg.to_running_time(p).or(Some(p)),
                (None, p) => p,
                _ => None,
            };
            pts_ms = running.map(|t| t.mseconds() as i64);
        }
        data.extend_from_slice(&map);
    }
    if data.is_empty() {
        return None;
    }
    let pdt_ms = pdt_offset_ms.saturating_add(pts_ms.unwrap_or(0));
    tx.send(MediaEvent::Chunk {
        rendition: id.to_string(),
        data,
        duration,
        pdt_ms,
        independent,
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
