//! A live session of a first-order preset with `renderer = "parametric"`,
//! through the daemon: the filter designer (a child process) leaves the
//! HRTF set beside the filters, the daemon caches both, the session goes
//! live and its binaural rendition decodes to sound at the level the
//! linear renderer gives the same preset.

mod support;

use support::*;

fn preset(name: &str, renderer: &str) -> String {
    format!(
        "name = \"{name}\"\ndescription = \"first-order scene, {renderer}\"\nsegment_seconds = 1\n\
         latency = \"low\"\n[audio]\nrenderer = \"{renderer}\"\n\
         source = {{ kind = \"synthetic-scene\", order = 1 }}\n\
         [[audio.rendition]]\nid = \"binaural\"\nname = \"Binaural\"\nmix = \"binaural\"\ndefault = true\n\
         [[audio.rendition]]\nid = \"stereo\"\nname = \"Stereo\"\nmix = \"stereo\"\n"
    )
}

fn rms_db(x: &[f32]) -> f64 {
    let p = x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len().max(1) as f64;
    10.0 * p.max(1e-20).log10()
}

#[test]
fn a_parametric_preset_goes_live_through_the_daemon() {
    let data = tmpdir("parametric-live");
    let presets = presets_with(
        &data,
        &[
            ("foa-parametric", preset("foa-parametric", "parametric")),
            ("foa-linear", preset("foa-linear", "linear")),
        ],
    );
    let d = Daemon::start_with(&data, &presets, &[]);
    let mut levels = Vec::new();
    for name in ["foa-parametric", "foa-linear"] {
        let id = start_live(&d, name);
        wait_for("four binaural segments", 30, || {
            last_segment(&d, &id, "binaural") >= 4
        });
        let audio = decode_audio(&d.url(&format!("/live/{id}/binaural/index.m3u8")), 3);
        assert!(audio.len() > 48_000, "{name}: {} samples", audio.len());
        let level = rms_db(&audio[audio.len() / 3..]);
        eprintln!("{name}: binaural RMS {level:.2} dBFS");
        assert!(level > -40.0, "{name}: {level} dBFS");
        levels.push(level);
        let s = api(&d, "POST", &format!("/api/v1/sessions/{id}/stop"), None);
        assert!(s.status < 300, "{}", s.text());
    }
    // The HRTF set went through the designer into the cache.
    let cached: Vec<String> = std::fs::read_dir(data.join("cache"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(cached.iter().any(|n| n.ends_with(".hri")), "{cached:?}");
    // The same scene: within 3 dB (different decoded windows, and AAC).
    assert!((levels[0] - levels[1]).abs() < 3.0, "{levels:?}");
    d.terminate();
    let _ = std::fs::remove_dir_all(&data);
}
