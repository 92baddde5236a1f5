//! Every shipped config and scene file parses and validates.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn every_config_file_parses() {
    let cfgs = files("config", "toml");
    assert!(!cfgs.is_empty());
    for p in cfgs {
        studiocast::config::Config::from_file(&p)
            .unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
    }
}

#[test]
fn unknown_config_keys_are_rejected() {
    let e = studiocast::config::Config::parse("[spatial]\nhrft = \"typo.sofa\"\n").unwrap_err();
    assert!(format!("{e:#}").contains("hrft"), "{e:#}");
}

#[test]
fn every_sample_scene_parses_and_validates() {
    let scenes = files("samples", "toml");
    assert!(!scenes.is_empty());
    for p in scenes {
        let text = std::fs::read_to_string(&p).unwrap();
        let s: studiocast_spatial::scene::Scene =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let max_ch = s.objects.iter().map(|o| o.channel).max().unwrap_or(1);
        s.validate(max_ch)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

#[test]
fn every_pipeline_preset_parses_and_validates() {
    let presets = files("pipelines", "toml");
    assert!(presets.iter().any(|p| p.ends_with("demo.toml")));
    for p in presets {
        let text = std::fs::read_to_string(&p).unwrap();
        studiocast_media::PipelineSpec::parse(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

#[test]
fn invalid_presets_are_rejected_with_the_reason() {
    let base = std::fs::read_to_string(repo().join("pipelines/demo.toml")).unwrap();
    for (from, to, want) in [
        ("width = 1280", "width = 1281", "even size"),
        ("framerate = 30", "framerate = 0", "framerate"),
        ("order = 3", "order = 9", "order 9"),
        ("default = true", "default = false", "exactly one"),
        (
            "segment_seconds = 2",
            "segment_seconds = 2\nsurprise = 1",
            "surprise",
        ),
    ] {
        let text = base.replace(from, &to.replace("\\n", "\n"));
        let e = studiocast_media::PipelineSpec::parse(&text)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{from} -> {to}: {e}");
    }
}
