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
