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

/// What a caller whose disk works does: write each segment, confirm it,
/// and carry out what the confirmation asks.
fn written(p: &mut Packager, actions: Vec<Action>) -> Vec<Action> {
    let mut out = Vec::new();
    for a in actions {
        if let Action::WriteSegment { rendition, seq, .. } = &a {
            let more = p.segment_written(rendition, *seq, true).unwrap();
            out.push(a.clone());
            out.extend(more);
        } else {
            out.push(a);
        }
    }
    out
}

/// Push a chunk and confirm what it cut.
fn push(p: &mut Packager, r: &str, c: Chunk) -> Result<Vec<Action>, HlsError> {
    let a = p.push_chunk(r, c)?;
    Ok(written(p, a))
}

/// End the stream as the worker does: flush, confirm, end.
fn finish(p: &mut Packager) -> Vec<Action> {
    let flushed = p.flush();
    let mut a = written(p, flushed);
    a.extend(p.end());
    a
}

fn write_map(actions: &[Action]) -> std::collections::HashMap<String, Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Write { path, data } | Action::WriteSegment { path, data, .. } => {
                Some((path.clone(), data.clone()))
            }
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
        let a = push(&mut p, "binaural", chunk(i, d)).unwrap();
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
    // The window's first segment is the 15th (i = 14): T0 + 28 s, with
    // its milliseconds and in UTC.
    assert!(
        last.contains("#EXT-X-PROGRAM-DATE-TIME:2025-11-30T00:00:28.123Z\n"),
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
        push(&mut p, "video", chunk(i, 2.0)).unwrap();
    }
    p.discontinuity();
    let a = push(&mut p, "video", chunk(10, 2.0)).unwrap();
    let text = String::from_utf8(write_map(&a)["video/live.m3u8"].clone()).unwrap();
    assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    let mut seq = 0;
    for i in 11..20 {
        let a = push(&mut p, "video", chunk(i, 2.0)).unwrap();
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
            push(&mut p, r, chunk(i, 2.0)).unwrap();
        }
    }
    // a last, short, unterminated segment
    push(
        &mut p,
        "video",
        Chunk {
            ends_segment: false,
            ..chunk(12, 0.8)
        },
    )
    .unwrap();
    let files = write_map(&finish(&mut p));
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
    assert_eq!(push(&mut p, "video", chunk(13, 2.0)), Err(HlsError::Ended));
    assert!(finish(&mut p).is_empty(), "ending twice is a no-op");
}

#[test]
fn bad_input_is_refused_without_breaking_the_playlist() {
    let mut p = Packager::new(PackagerConfig::default(), renditions()).unwrap();
    assert_eq!(
        push(&mut p, "video", chunk(0, 2.0)),
        Err(HlsError::NoInit("video".into()))
    );
    assert!(matches!(
        push(&mut p, "nope", chunk(0, 2.0)),
        Err(HlsError::UnknownRendition(_))
    ));
    p.push_init("video", vec![0]).unwrap();
    push(&mut p, "video", chunk(0, 2.0)).unwrap();
    let e = push(&mut p, "video", chunk(1, 2.7)).unwrap_err();
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
    let a = push(&mut p, "video", chunk(3, 2.0)).unwrap();
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
    push(&mut p, "video", chunk(0, 2.0)).unwrap();
    let a = p.push_init("video", vec![9, 9]).unwrap();
    assert_eq!(a[0].path(), "video/init-1.mp4");
    let a = push(&mut p, "video", chunk(1, 2.0)).unwrap();
    let text = String::from_utf8(write_map(&a)["video/live.m3u8"].clone()).unwrap();
    assert!(text.contains("#EXT-X-MAP:URI=\"init-1.mp4\""), "{text}");
    assert!(text.contains("#EXT-X-DISCONTINUITY"), "{text}");
}

#[test]
fn a_segment_whose_write_failed_is_never_published() {
    let mut p = started();
    for i in 0..3 {
        push(&mut p, "video", chunk(i, 2.0)).unwrap();
    }
    // The disk refuses segment 4.
    let a = p.push_chunk("video", chunk(3, 2.0)).unwrap();
    let [Action::WriteSegment { seq, path, .. }] = a.as_slice() else {
        panic!("{a:?}")
    };
    assert_eq!((*seq, path.as_str()), (4, "video/seg000004.m4s"));
    let after = p.segment_written("video", 4, false).unwrap();
    assert!(after.is_empty(), "nothing is published for a failed write");
    let live = parse_media(&p.media_playlist("video", false).unwrap());
    assert_eq!(live.segments.len(), 3);
    // The next segment takes number 4 (sequence numbers stay contiguous,
    // so the playlist's implicit numbering matches the file names) and
    // follows a discontinuity: 2 s of the stream are missing.
    let a = push(&mut p, "video", chunk(4, 2.0)).unwrap();
    let files = write_map(&a);
    assert!(files.contains_key("video/seg000004.m4s"), "{files:?}");
    let live = parse_media(std::str::from_utf8(&files["video/live.m3u8"]).unwrap());
    let uris: Vec<&str> = live.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "seg000001.m4s",
            "seg000002.m4s",
            "seg000003.m4s",
            "seg000004.m4s"
        ]
    );
    assert!(live.segments[3].discontinuity);
    // Confirming a segment that is not waiting is refused.
    assert!(matches!(
        p.segment_written("video", 4, true),
        Err(HlsError::UnknownSegment { .. })
    ));
    // The journal only ever heard of published segments.
    let journal: Vec<_> = a
        .iter()
        .filter(|x| matches!(x, Action::Append { .. }))
        .collect();
    assert_eq!(journal.len(), 1);
}
