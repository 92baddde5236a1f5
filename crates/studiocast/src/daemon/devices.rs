//! What `studiocast devices` and `GET /api/v1/devices` list: audio
//! interfaces that answer (ALSA, JACK), V4L2 video nodes, and every camera
//! or capture card a preset expects, marked unavailable with the reason when
//! it is absent.

use std::collections::HashMap;

use studiocast_media::ingest::{check_present, IngestSpec};
use studiocast_media::spec::VideoSource;
use studiocast_media::PipelineSpec;
use studiocast_server::{DeviceEntry, PresetDevice, PresetInfo};

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

/// What the console lists of each preset: its inputs in words, the devices
/// it expects, each channel's role and the renditions it makes.
pub fn preset_infos(presets: &HashMap<String, PipelineSpec>) -> Vec<PresetInfo> {
    let mut names: Vec<&String> = presets.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|n| preset_info(&presets[n]))
        .collect()
}

fn preset_info(p: &PipelineSpec) -> PresetInfo {
    use studiocast_media::spec::{AudioSource, Latency, PresetVisibility};
    let (audio, audio_device) = match &p.audio.source {
        AudioSource::SyntheticScene { order } => (format!("synthetic scene, order {order}"), None),
        AudioSource::Device {
            host,
            device,
            channels,
            ..
        } => (
            format!(
                "{host} {}, {channels} channels",
                device.as_deref().unwrap_or("default input")
            ),
            Some(PresetDevice {
                host: host.clone(),
                name: device.clone().unwrap_or_default(),
            }),
        ),
        AudioSource::Embedded { channels, .. } => (
            format!("embedded in the video input, {channels} channels"),
            None,
        ),
    };
    let video_device = p.video.as_ref().and_then(|v| match &v.source {
        VideoSource::V4l2 { device } => Some(PresetDevice {
            host: "V4L2".into(),
            name: device.clone(),
        }),
        VideoSource::Decklink { .. } => Some(PresetDevice {
            host: "DeckLink".into(),
            name: IngestSpec::describe_source(&v.source),
        }),
        _ => None,
    });
    let mut renditions: Vec<String> = p
        .video
        .iter()
        .flat_map(|v| v.renditions.iter().map(|r| r.id.clone()))
        .collect();
    renditions.extend(p.audio.renditions.iter().map(|r| r.id.clone()));
    PresetInfo {
        name: p.name.clone(),
        description: p.description.clone(),
        latency: match p.latency {
            Latency::Low => "low",
            Latency::Standard => "standard",
        }
        .into(),
        visibility: match p.visibility {
            PresetVisibility::Public => "public",
            PresetVisibility::Private => "private",
        }
        .into(),
        audio,
        audio_device,
        video: p.video.as_ref().map(|v| {
            format!(
                "{}, {} fps",
                IngestSpec::describe_source(&v.source),
                v.framerate
            )
        }),
        video_device,
        channels: p.audio.source.channel_roles(),
        renditions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_presets_describe_their_inputs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
        let presets = super::super::supervisor::load_presets(&dir).unwrap();
        let infos = preset_infos(&presets);
        let names: Vec<&str> = infos.iter().map(|p| p.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let jack = infos.iter().find(|p| p.name == "jack-16ch-3oa").unwrap();
        assert_eq!(jack.audio, "JACK default input, 16 channels");
        assert_eq!(jack.audio_device.as_ref().unwrap().host, "JACK");
        assert_eq!(jack.channels.len(), 16);
        assert_eq!(jack.channels[3].as_deref(), Some("X"));
        assert_eq!(jack.latency, "low");
        assert!(jack.renditions.contains(&"binaural".to_string()));
        let srt = infos.iter().find(|p| p.name == "srt-listener").unwrap();
        assert!(
            srt.video.as_deref().unwrap().starts_with("srt://"),
            "{srt:?}"
        );
        assert!(srt.audio.starts_with("embedded"), "{srt:?}");
        let demo = infos.iter().find(|p| p.name == "demo").unwrap();
        assert!(demo.audio.starts_with("synthetic scene"), "{demo:?}");
        assert_eq!(demo.channels[0].as_deref(), Some("W"));
        let v4l2 = infos.iter().find(|p| p.name == "v4l2-camera").unwrap();
        assert_eq!(v4l2.video_device.as_ref().unwrap().host, "V4L2");
    }
}
