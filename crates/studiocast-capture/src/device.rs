//! Audio interfaces through cpal (ALSA and JACK): listing, and capture
//! into a [`crate::ring`] from a callback that only copies.

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use crate::ring::{ring, RingConsumer, RingStats};
use crate::xruns::XrunDetector;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    #[error("audio host '{0}' is not available on this machine")]
    HostUnavailable(String),
    #[error("audio device '{0}' was not found")]
    DeviceNotFound(String),
    #[error("device '{device}' cannot capture {channels} channels at {rate} Hz: {reason}")]
    Unsupported {
        device: String,
        channels: u16,
        rate: u32,
        reason: String,
    },
    #[error("audio backend error: {0}")]
    Backend(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub host: String,
    pub name: String,
    pub max_input_channels: u16,
    /// Standard rates (44.1, 48, 96 kHz) the device accepts for input.
    pub sample_rates: Vec<u32>,
}

const RATES: [u32; 3] = [44_100, 48_000, 96_000];

fn host_by_name(name: &str) -> Result<cpal::Host, CaptureError> {
    let id = cpal::available_hosts()
        .into_iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| CaptureError::HostUnavailable(name.to_string()))?;
    cpal::host_from_id(id).map_err(|e| CaptureError::HostUnavailable(format!("{name}: {e}")))
}

fn device_name(d: &cpal::Device) -> String {
    d.description()
        .map(|x| x.to_string())
        .or_else(|_| d.id().map(|i| i.to_string()))
        .unwrap_or_else(|_| "unknown".into())
}

/// Every input-capable device of every host that answers. A host that is
/// not running (JACK without a server) is simply absent.
pub fn list_devices() -> Vec<DeviceInfo> {
    let mut out = Vec::new();
    for id in cpal::available_hosts() {
        let Ok(host) = cpal::host_from_id(id) else {
            continue;
        };
        let Ok(devices) = host.input_devices() else {
            continue;
        };
        for d in devices {
            let Ok(cfgs) = d.supported_input_configs() else {
                continue;
            };
            let cfgs: Vec<_> = cfgs.collect();
            let max_ch = cfgs.iter().map(|c| c.channels()).max().unwrap_or(0);
            if max_ch == 0 {
                continue;
            }
            let rates = RATES
                .iter()
                .copied()
                .filter(|r| {
                    cfgs.iter()
                        .any(|c| c.min_sample_rate() <= *r && *r <= c.max_sample_rate())
                })
                .collect();
            out.push(DeviceInfo {
                host: id.name().to_string(),
                name: device_name(&d),
                max_input_channels: max_ch,
                sample_rates: rates,
            });
        }
    }
    out
}

/// What to open.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// cpal host name: "ALSA" or "JACK".
    pub host: String,
    /// Device name; `None` takes the host's default input.
    pub device: Option<String>,
    pub channels: u16,
    pub rate: u32,
    /// Ring capacity in frames (a second or two).
    pub ring_frames: usize,
}

/// A running capture: keep it alive for as long as audio should flow.
pub struct Capture {
    _stream: cpal::Stream,
    pub consumer: RingConsumer,
    pub stats: std::sync::Arc<RingStats>,
    pub device: String,
}

pub fn open(cfg: &CaptureConfig) -> Result<Capture, CaptureError> {
    let host = host_by_name(&cfg.host)?;
    let device = match &cfg.device {
        None => host
            .default_input_device()
            .ok_or_else(|| CaptureError::DeviceNotFound(format!("{} default input", cfg.host)))?,
        Some(name) => host
            .input_devices()
            .map_err(|e| CaptureError::Backend(e.to_string()))?
            .find(|d| &device_name(d) == name)
            .ok_or_else(|| CaptureError::DeviceNotFound(name.clone()))?,
    };
    let name = device_name(&device);
    let unsupported = |reason: String| CaptureError::Unsupported {
        device: name.clone(),
        channels: cfg.channels,
        rate: cfg.rate,
        reason,
    };
    let ok = device
        .supported_input_configs()
        .map_err(|e| unsupported(e.to_string()))?
        .any(|c| {
            c.channels() >= cfg.channels
                && c.min_sample_rate() <= cfg.rate
                && cfg.rate <= c.max_sample_rate()
        });
    if !ok {
        return Err(unsupported("no matching input configuration".into()));
    }
    let (mut producer, consumer, stats) = ring(cfg.channels as usize, cfg.ring_frames);
    let config = cpal::StreamConfig {
        channels: cfg.channels,
        sample_rate: cfg.rate,
        buffer_size: cpal::BufferSize::Default,
    };
    // The callback only copies into the ring: no allocation, lock or log.
    // Time the device lost (an xrun) is counted for the technician.
    let mut xruns = XrunDetector::new(cfg.rate);
    let channels = usize::from(cfg.channels.max(1));
    let stream = device
        .build_input_stream(
            config,
            move |data: &[f32], info: &cpal::InputCallbackInfo| {
                let ts = info
                    .timestamp()
                    .capture
                    .duration_since(cpal::StreamInstant::ZERO)
                    .as_secs_f64();
                let lost = xruns.observe(ts, data.len() / channels);
                if lost > 0 {
                    producer.note_xrun(lost);
                }
                producer.push_interleaved(data)
            },
            |_err| {},
            None,
        )
        .map_err(|e| unsupported(e.to_string()))?;
    stream
        .play()
        .map_err(|e| CaptureError::Backend(e.to_string()))?;
    Ok(Capture {
        _stream: stream,
        consumer,
        stats,
        device: name,
    })
}
