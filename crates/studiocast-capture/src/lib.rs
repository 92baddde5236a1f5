//! studiocast-capture: getting audio from studio interfaces into sessions.
//!
//! This first piece is the clock-drift controller. The interface's word
//! clock and the pipeline clock drift apart by tens of ppm; left alone, a
//! two-hour concert gains or loses hundreds of milliseconds of audio against
//! the video. The controller keeps the capture ring at a constant fill by
//! steering an adjustable resampler, which keeps the audio delay (and so
//! the A/V offset) constant. Around it: device capture (cpal), the ring
//! between the device callback and the audio thread, and the detector that
//! finds time an xrun lost, for the technician.

pub mod compensator;
pub mod device;
pub mod drift;
pub mod jack_server;
pub mod ring;
pub mod xruns;

pub use drift::{DriftController, DriftSettings};
