//! What `studiocast devices` and `GET /api/v1/devices` list: audio
//! interfaces that answer (ALSA, JACK), V4L2 video nodes, and every camera
//! or capture card a preset expects, marked unavailable with the reason when
//! it is absent.

use std::collections::HashMap;

use studiocast_media::ingest::{check_present, IngestSpec};
use studiocast_media::spec::VideoSource;
use studiocast_media::PipelineSpec;
use studiocast_server::DeviceEntry;

fn video(host: &str, name: String, reason: Option<String>) -> DeviceEntry {
    DeviceEntry {
        kind: "video".into(),
        host: host.into(),
        name,
        max_input_channels: 0,
        sample_rates: Vec::new(),
        available: reason.is_none(),
        reason,
    }
}

pub fn device_entries(presets: &HashMap<String, PipelineSpec>) -> Vec<DeviceEntry> {
    let mut out: Vec<DeviceEntry> = studiocast_capture::device::list_devices()
        .into_iter()
        .map(|d| DeviceEntry {
            kind: "audio".into(),
            host: d.host,
            name: d.name,
            max_input_channels: d.max_input_channels,
            sample_rates: d.sample_rates,
            available: true,
            reason: None,
        })
        .collect();
    let mut nodes: Vec<String> = std::fs::read_dir("/dev")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().display().to_string())
                .filter(|p| p.starts_with("/dev/video"))
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    for n in nodes {
        out.push(video("V4L2", n, None));
    }
    let mut names: Vec<&String> = presets.keys().collect();
    names.sort();
    for name in names {
        let Some(v) = &presets[name].video else {
            continue;
        };
        let host = match &v.source {
            VideoSource::V4l2 { .. } => "V4L2",
            VideoSource::Decklink { .. } => "DeckLink",
            _ => continue,
        };
        let dev = IngestSpec::describe_source(&v.source);
        let dev = dev.trim_start_matches("V4L2 ").to_string();
        if out.iter().any(|e| e.kind == "video" && e.name == dev) {
            continue;
        }
        match check_present(&v.source) {
            Ok(()) => out.push(video(host, dev, None)),
            Err(reason) => out.push(video(
                host,
                dev,
                Some(format!("{reason} (expected by preset '{name}')")),
            )),
        }
    }
    out
}
