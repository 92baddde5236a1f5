use super::*;

fn srt(source: &str) -> Result<PipelineSpec, MediaError> {
    PipelineSpec::parse(&format!(
            "name = \"s\"\n[video]\nsource = {{ kind = \"srt\", {source} }}\nframerate = 25\n[[video.rendition]]\nid = \"360p\"\nwidth = 640\nheight = 360\nbitrate_kbps = 800\n[audio]\nsource = {{ kind = \"embedded\" }}\n[[audio.rendition]]\nid = \"b\"\nname = \"B\"\nmix = \"binaural\"\ndefault = true\n"
        ))
}

#[test]
fn an_srt_listener_needs_a_passphrase_or_an_explicit_waiver() {
    let e = srt("mode = \"listener\", port = 9000")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("needs a passphrase") && e.contains("allow_unencrypted"),
        "{e}"
    );
    srt("mode = \"listener\", port = 9000, passphrase = \"0123456789abcdef\"").unwrap();
    srt("mode = \"listener\", port = 9000, allow_unencrypted = true").unwrap();
    // A caller reaches out to a known encoder: no waiver needed.
    srt("mode = \"caller\", port = 9000").unwrap();
    let e = srt("mode = \"listener\", port = 9000, passphrase = \"short\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("10–79"), "{e}");
}

#[test]
fn rendition_names_cannot_break_the_playlist() {
    let text = |name: &str| {
        format!("name = \"t\"\n[audio]\nsource = {{ kind = \"synthetic-scene\", order = 1 }}\n[[audio.rendition]]\nid = \"b\"\nname = \"{name}\"\nmix = \"binaural\"\ndefault = true\n")
    };
    PipelineSpec::parse(&text("Binaural (headphones)")).unwrap();
    for bad in ["Bin\\\"aural", "two\\nlines", ""] {
        assert!(PipelineSpec::parse(&text(bad)).is_err(), "{bad}");
    }
}

/// A test-pattern preset with the given top-level keys and ladder.
fn ladder(top: &str, rungs: &str) -> Result<PipelineSpec, MediaError> {
    PipelineSpec::parse(&format!(
        "name = \"l\"\n{top}\n[video]\nsource = {{ kind = \"test-pattern\" }}\nframerate = 30\n{rungs}\n[audio]\nsource = {{ kind = \"synthetic-scene\", order = 1 }}\n[[audio.rendition]]\nid = \"binaural\"\nname = \"B\"\nmix = \"binaural\"\ndefault = true\n"
    ))
}

fn rung(id: &str, w: u32, h: u32, kbps: u32) -> String {
    format!(
        "[[video.rendition]]\nid = \"{id}\"\nwidth = {w}\nheight = {h}\nbitrate_kbps = {kbps}\n"
    )
}

#[test]
fn the_ladder_is_checked_rung_by_rung() {
    let two = format!(
        "{}{}",
        rung("720p", 1280, 720, 2500),
        rung("360p", 640, 360, 800)
    );
    let spec = ladder("", &two).unwrap();
    let v = spec.video.as_ref().unwrap();
    assert_eq!(v.renditions.len(), 2);
    assert_eq!(v.program_size(), (1280, 720));
    assert_eq!(v.renditions[1].profile, "high");
    let err = |top: &str, rungs: &str| ladder(top, rungs).unwrap_err().to_string();
    assert!(err("", "").contains("1 to 6"));
    let seven: String = (0..7)
        .map(|i| rung(&format!("r{i}"), 640, 360, 800))
        .collect();
    assert!(err("", &seven).contains("1 to 6"));
    let dup = format!("{}{}", rung("a", 640, 360, 800), rung("a", 320, 180, 300));
    assert!(err("", &dup).contains("repeated"));
    assert!(err("", &rung("odd", 641, 360, 800)).contains("even size"));
    assert!(err("", &rung("huge", 7680, 4320, 800)).contains("even size"));
    assert!(err("", &rung("slow", 640, 360, 50)).contains("bitrate"));
    assert!(err("", &rung("../x", 640, 360, 800)).contains("invalid"));
    let bad_profile = format!("{}profile = \"extreme\"\n", rung("p", 640, 360, 800));
    assert!(err("", &bad_profile).contains("profile"));
    // A video rung and an audio rendition share the URL space.
    assert!(err("", &rung("binaural", 640, 360, 800)).contains("repeated"));
    // The old single-size keys are refused by name, not silently ignored.
    let old = ladder("", "width = 640\nheight = 360\nbitrate_kbps = 800").unwrap_err();
    assert!(old.to_string().contains("width"), "{old}");
}

#[test]
fn latency_and_dvr_keys_shape_the_parts_and_window() {
    let one = rung("360p", 640, 360, 800);
    let standard = ladder("", &one).unwrap();
    assert_eq!(standard.latency, Latency::Standard);
    assert_eq!(standard.part_duration(), None);
    assert_eq!(standard.part_target(), None);
    assert_eq!(standard.dvr_seconds, 7200);
    // Low latency with 2 s segments at 30 fps: parts of 10 frames; the
    // audio part is whole AAC frames (16 × 1024 / 48000 = 0.3413 s).
    let low = ladder("latency = \"low\"\ndvr_seconds = 600", &one).unwrap();
    assert_eq!(low.dvr_seconds, 600);
    let part = low.part_duration().unwrap().as_secs_f64();
    assert!((part - 10.0 / 30.0).abs() < 1e-9, "{part}");
    let target = low.part_target().unwrap();
    assert!((target - 16.0 * 1024.0 / 48000.0).abs() < 1e-9, "{target}");
    // Six-second segments: one-second parts.
    let long = ladder("latency = \"low\"\nsegment_seconds = 6", &one).unwrap();
    assert!((long.part_duration().unwrap().as_secs_f64() - 1.0).abs() < 1e-9);
    let err = |top: &str| ladder(top, &one).unwrap_err().to_string();
    assert!(err("latency = \"ultra\"").contains("ultra"));
    assert!(err("dvr_seconds = 10").contains("dvr_seconds"));
    assert!(err("dvr_seconds = 100000").contains("dvr_seconds"));
}

#[test]
fn an_audio_only_preset_has_audio_sized_parts() {
    let text = "name = \"a\"\nlatency = \"low\"\n[audio]\nsource = { kind = \"synthetic-scene\", order = 1 }\n[[audio.rendition]]\nid = \"binaural\"\nname = \"B\"\nmix = \"binaural\"\ndefault = true\n";
    let spec = PipelineSpec::parse(text).unwrap();
    // 2 s / 6 = 0.333 s: 16 AAC frames of 1024 samples at 48 kHz.
    let part = spec.part_duration().unwrap().as_secs_f64();
    assert!((part - 16.0 * 1024.0 / 48000.0).abs() < 1e-9, "{part}");
    assert_eq!(spec.gop_frames(), 0);
    assert!((spec.part_target().unwrap() - part).abs() < 1e-9);
    // An Opus rendition's chunks are whole 20 ms frames: 0.36 s.
    let ambi = format!(
        "{text}[[audio.rendition]]\nid = \"ambisonic\"\nname = \"360\"\nmix = \"ambisonic\"\n"
    );
    let spec = PipelineSpec::parse(&ambi).unwrap();
    assert!((spec.part_target().unwrap() - 0.36).abs() < 1e-9);
}

/// `mix = "ambisonic"` with `order`: first order only, never the default,
/// and `order` means nothing on the other mixes.
#[test]
fn the_ambisonic_rendition_is_first_order_and_never_the_default() {
    let text = |extra: &str| {
        format!(
            "name = \"a\"\n[audio]\nsource = {{ kind = \"synthetic-scene\", order = 3 }}\n\
             [[audio.rendition]]\nid = \"binaural\"\nname = \"B\"\nmix = \"binaural\"\ndefault = true\n\
             [[audio.rendition]]\nid = \"ambisonic\"\nname = \"360\"\nmix = \"ambisonic\"\n{extra}"
        )
    };
    let spec = PipelineSpec::parse(&text("order = 1\nbitrate_kbps = 256\n")).unwrap();
    let r = &spec.audio.renditions[1];
    assert_eq!(
        (r.mix, r.mix.channels(), r.mix.codecs()),
        (Mix::Ambisonic, 4, "opus")
    );
    // The order may be left out (first order).
    PipelineSpec::parse(&text("")).unwrap();
    let err = |t: &str| PipelineSpec::parse(t).unwrap_err().to_string();
    assert!(err(&text("order = 3\n")).contains("order 3 is not offered"));
    let ambi_default = text("default = true\n").replacen("default = true\n", "", 1);
    assert!(err(&ambi_default).contains("cannot be the default"));
    let on_binaural = text("").replace("mix = \"binaural\"\n", "mix = \"binaural\"\norder = 1\n");
    assert!(err(&on_binaural).contains("order applies to mix = \"ambisonic\" only"));
}
