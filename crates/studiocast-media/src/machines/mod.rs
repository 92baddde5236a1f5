//! The decisions of the live path with time in them, as Sans-IO state
//! machines (after str0m): inputs and the time in, decisions out. No clock,
//! thread, allocation or GStreamer type inside; the threads in
//! [`crate::video_pump`], [`crate::audio_thread`] and [`crate::ingest`] only
//! drive them, and every edge case is tested here with simulated time.

pub mod loss;
pub mod silence;
pub mod slate;

pub use loss::{LossConfig, LossDetector, Observation, Reopen, StopReason};
pub use silence::{Decision, SilenceConfig, SilencePolicy};
pub use slate::{Show, SlateConfig, SlateMachine, Tick};
