//! The HLS rules players enforce, checked on the packager's output.

use studiocast_hls::{Action, Chunk, HlsError, Packager, PackagerConfig, Rendition, RenditionKind};

fn renditions() -> Vec<Rendition> {
    vec![
        Rendition {
            id: "video".into(),
            kind: RenditionKind::Video {
                width: 1280,
                height: 720,
                frame_rate: 30.0,
            },
            codecs: "avc1.64001f".into(),
            bandwidth: 2_500_000,
        },
        Rendition {
            id: "binaural".into(),
            kind: RenditionKind::Audio {
                name: "Binaural (headphones)".into(),
                channels: 2,
                default: true,
                language: None,
            },
            codecs: "mp4a.40.2".into(),
            bandwidth: 160_000,
        },
        Rendition {
            id: "stereo".into(),
            kind: RenditionKind::Audio {
                name: "Stereo".into(),
                channels: 2,
                default: false,
                language: None,
            },
            codecs: "mp4a.40.2".into(),
            bandwidth: 160_000,
        },
    ]
}

const T0: i64 = 1_764_460_800_123; // 2025-11-30T00:00:00.123Z

fn chunk(i: i64, dur: f64) -> Chunk {
    Chunk {
        data: vec![i as u8; 10],
        duration: dur,
        independent: true,
        pdt_ms: Some(T0 + i * 2000),
        ends_segment: true,
    }
}

fn write_map(actions: &[Action]) -> std::collections::HashMap<String, Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Write { path, data } => Some((path.clone(), data.clone())),
            Action::Append { .. } => None,
        })
        .collect()
}

fn parse_media(text: &str) -> m3u8_rs::MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()).expect("valid playlist") {
        m3u8_rs::Playlist::MediaPlaylist(m) => m,
        _ => panic!("not a media playlist"),
    }
}

fn started() -> Packager {
    let mut p = Packager::new(PackagerConfig::default(), renditions()).unwrap();
    for r in ["video", "binaural", "stereo"] {
        p.push_init(r, vec![1, 2, 3]).unwrap();
    }
    p
}

#[test]
fn multivariant_playlist_has_audio_group_with_channels_and_exact_attributes() {
    let p = started();
    let m = p.master_playlist();
    assert!(m.contains("#EXT-X-VERSION:7"), "{m}");
    assert!(m.contains("#EXT-X-INDEPENDENT-SEGMENTS"), "{m}");
    assert!(m.contains("TYPE=AUDIO"), "{m}");
    assert!(
        m.contains("NAME=\"Binaural (headphones)\"") && m.contains("DEFAULT=YES"),
        "{m}"
    );
    assert!(m.contains("NAME=\"Stereo\""), "{m}");
    assert_eq!(m.matches("CHANNELS=\"2\"").count(), 2, "{m}");
    assert!(m.contains("CODECS=\"avc1.64001f,mp4a.40.2\""), "{m}");
    assert!(m.contains("RESOLUTION=1280x720"), "{m}");
    assert!(m.contains("FRAME-RATE=30"), "{m}");
    assert!(m.contains("BANDWIDTH=2660000"), "{m}");
    assert!(m.contains("AUDIO=\"audio\""), "{m}");
    match m3u8_rs::parse_playlist_res(m.as_bytes()).unwrap() {
        m3u8_rs::Playlist::MasterPlaylist(mp) => {
            assert_eq!(mp.variants.len(), 1);
            assert_eq!(mp.alternatives.len(), 2);
        }
        _ => panic!("not a master playlist"),
    }
}

#[test]
fn live_window_target_duration_and_pdt() {
    let mut p = started();
    let mut last = String::new();
    for i in 0..20 {
        // AAC-like durations: a little short or long of 2 s.
        let d = if i % 3 == 0 { 1.984 } else { 2.005 };
        let a = p.push_chunk("binaural", chunk(i, d)).unwrap();
        let files = write_map(&a);
        assert!(files.contains_key(&format!("binaural/seg{:06}.m4s", i + 1)));
        last = String::from_utf8(files["binaural/live.m3u8"].clone()).unwrap();
        let m = parse_media(&last);
        assert_eq!(m.target_duration, 2);
        for s in &m.segments {
            assert!((s.duration.round() as u64) <= m.target_duration);
        }
        let total: f32 = m.segments.iter().map(|s| s.duration).sum();
        if i >= 5 {
            assert!(
                total >= 6.0 - 0.1,
                "window {total} s shrank below 3 × target"
            );
        }
        assert!(!m.end_list);
    }
    assert!(
        last.contains("#EXT-X-PROGRAM-DATE-TIME:2025-11-30T00:00:"),
        "{last}"
    );
    assert!(
        last.contains(".123Z")
            || last
                .lines()
                .any(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME") && l.ends_with('Z')),
        "{last}"
    );
    assert!(last.contains("#EXT-X-MAP:URI=\"init.mp4\""), "{last}");
    let m = parse_media(&last);
    assert_eq!(
        m.media_sequence, 15,
        "window starts at the 15th of 20 segments"
    );
}

#[test]
fn discontinuity_sequence_follows_removed_tags() {
    let mut p = started();
    for i in 0..3 {
        p.push_chunk("video", chunk(i, 2.0)).unwrap();
    }
    p.discontinuity();
    let a = p.push_chunk("video", chunk(10, 2.0)).unwrap();
    let text = String::from_utf8(write_map(&a)["video/live.m3u8"].clone()).unwrap();
    assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    let mut seq = 0;
    for i in 11..20 {
        let a = p.push_chunk("video", chunk(i, 2.0)).unwrap();
        let m = parse_media(&String::from_utf8(write_map(&a)["video/live.m3u8"].clone()).unwrap());
        let tagged = m.segments.iter().any(|s| s.discontinuity);
        seq = m.discontinuity_sequence;
        if !tagged {
            assert_eq!(seq, 1, "the removed tag must be counted");
        } else {
            assert_eq!(seq, 0);
        }
        for s in m.segments.iter().filter(|s| s.discontinuity) {
            assert!(
                s.program_date_time.is_some(),
                "PDT after every discontinuity"
            );
        }
    }
    assert_eq!(seq, 1);
}

#[test]
fn end_writes_endlist_and_a_complete_vod() {
    let mut p = started();
    for i in 0..12 {
        for r in ["video", "binaural", "stereo"] {
            p.push_chunk(r, chunk(i, 2.0)).unwrap();
        }
    }
    // a last, short, unterminated segment
    p.push_chunk(
        "video",
        Chunk {
            ends_segment: false,
            ..chunk(12, 0.8)
        },
    )
    .unwrap();
    let files = write_map(&p.end());
    let live = parse_media(std::str::from_utf8(&files["video/live.m3u8"]).unwrap());
    assert!(live.end_list);
    let vod = parse_media(std::str::from_utf8(&files["video/vod.m3u8"]).unwrap());
    assert!(vod.end_list);
    assert_eq!(vod.playlist_type, Some(m3u8_rs::MediaPlaylistType::Vod));
    assert_eq!(vod.segments.len(), 13);
    assert_eq!(vod.media_sequence, 1);
    let total: f32 = vod.segments.iter().map(|s| s.duration).sum();
    assert!((total - 24.8).abs() < 0.01);
    assert!(files.contains_key("master-vod.m3u8"));
    assert_eq!(p.push_chunk("video", chunk(13, 2.0)), Err(HlsError::Ended));
    assert!(p.end().is_empty(), "ending twice is a no-op");
}

#[test]
fn bad_input_is_refused_without_breaking_the_playlist() {
    let mut p = Packager::new(PackagerConfig::default(), renditions()).unwrap();
    assert_eq!(
        p.push_chunk("video", chunk(0, 2.0)),
        Err(HlsError::NoInit("video".into()))
    );
    assert!(matches!(
        p.push_chunk("nope", chunk(0, 2.0)),
        Err(HlsError::UnknownRendition(_))
    ));
    p.push_init("video", vec![0]).unwrap();
    p.push_chunk("video", chunk(0, 2.0)).unwrap();
    let e = p.push_chunk("video", chunk(1, 2.7)).unwrap_err();
    assert!(matches!(e, HlsError::TargetDurationExceeded { .. }));
    let e = p
        .push_chunk(
            "video",
            Chunk {
                independent: false,
                ..chunk(2, 2.0)
            },
        )
        .unwrap_err();
    assert_eq!(e, HlsError::NotIndependent("video".into()));
    // The next good segment is published after a discontinuity.
    let a = p.push_chunk("video", chunk(3, 2.0)).unwrap();
    let text = String::from_utf8(write_map(&a)["video/live.m3u8"].clone()).unwrap();
    assert!(text.contains("#EXT-X-DISCONTINUITY"), "{text}");
    assert!(Packager::new(
        PackagerConfig {
            target_duration: 0,
            window_segments: 6
        },
        renditions()
    )
    .is_err());
    let mut dup = renditions();
    dup[2].id = "binaural".into();
    assert!(Packager::new(PackagerConfig::default(), dup).is_err());
    let mut bad = renditions();
    bad[0].id = "../x".into();
    assert!(Packager::new(PackagerConfig::default(), bad).is_err());
}

#[test]
fn new_init_gets_a_new_map_and_a_discontinuity() {
    let mut p = started();
    p.push_chunk("video", chunk(0, 2.0)).unwrap();
    let a = p.push_init("video", vec![9, 9]).unwrap();
    assert_eq!(a[0].path(), "video/init-1.mp4");
    let a = p.push_chunk("video", chunk(1, 2.0)).unwrap();
    let text = String::from_utf8(write_map(&a)["video/live.m3u8"].clone()).unwrap();
    assert!(text.contains("#EXT-X-MAP:URI=\"init-1.mp4\""), "{text}");
    assert!(text.contains("#EXT-X-DISCONTINUITY"), "{text}");
}
