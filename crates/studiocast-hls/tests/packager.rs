//! The HLS rules players enforce, checked on the packager's output
//! (standard HLS: no parts; whole fragments as single chunks).

mod common;

use common::*;
use studiocast_hls::{Action, HlsError, Packager, PackagerConfig};

fn config() -> PackagerConfig {
    PackagerConfig {
        dvr_seconds: 12,
        ..PackagerConfig::default()
    }
}

fn started() -> Packager {
    let mut p = Packager::new(config(), renditions()).unwrap();
    for r in ["video", "binaural", "stereo"] {
        p.push_init(r, vec![1, 2, 3]).unwrap();
    }
    p
}

/// A first-order ambisonic rendition: 4-channel Opus no client picks alone.
fn ambisonic(name: &str) -> studiocast_hls::Rendition {
    studiocast_hls::Rendition {
        id: "ambisonic".into(),
        kind: studiocast_hls::RenditionKind::Audio {
            name: name.into(),
            channels: 4,
            default: false,
            autoselect: false,
            language: None,
        },
        codecs: "opus".into(),
        bandwidth: 300_000,
    }
}

/// Each variant's (URI, audio group, codecs, bandwidth).
fn variants(mp: &m3u8_rs::MasterPlaylist) -> Vec<(&str, &str, &str, u64)> {
    mp.variants
        .iter()
        .map(|v| {
            (
                v.uri.as_str(),
                v.audio.as_deref().unwrap_or(""),
                v.codecs.as_deref().unwrap_or(""),
                v.bandwidth,
            )
        })
        .collect()
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
    let mp = parse_master(&m);
    assert_eq!(mp.variants.len(), 1);
    assert_eq!(mp.alternatives.len(), 2);
}

/// A first-order ambisonic rendition (4-channel Opus) gets its own group
/// and its own variants, after the AAC ones, and no client picks it alone.
#[test]
fn an_ambisonic_rendition_has_its_own_group_and_variants() {
    let mut all = renditions();
    all.insert(1, video("small", 640, 360, 800_000));
    all.push(ambisonic("360° head-tracked"));
    let mut p = Packager::new(config(), all).unwrap();
    for r in ["video", "small", "binaural", "stereo", "ambisonic"] {
        p.push_init(r, vec![1, 2, 3]).unwrap();
    }
    // Any player's master leaves it out (a player choosing variants by
    // bandwidth would switch into it); the embedded player's has it.
    let plain = parse_master(&p.master_playlist());
    assert_eq!(plain.variants.len(), 2);
    assert_eq!(plain.alternatives.len(), 2);
    assert!(plain
        .variants
        .iter()
        .all(|v| v.audio.as_deref() == Some("audio")));
    let m = p.player_master_playlist();
    let mp = parse_master(&m);
    let groups: Vec<(&str, &str)> = mp
        .alternatives
        .iter()
        .map(|a| (a.group_id.as_str(), a.name.as_str()))
        .collect();
    assert_eq!(
        groups,
        [
            ("audio", "Binaural (headphones)"),
            ("audio", "Stereo"),
            ("audio-opus-4ch", "360° head-tracked")
        ]
    );
    let ambi = &mp.alternatives[2];
    assert_eq!(ambi.channels.as_deref(), Some("4"), "{m}");
    assert!(!ambi.default && !ambi.autoselect, "{m}");
    assert_eq!(
        variants(&mp),
        [
            (
                "video/index.m3u8",
                "audio",
                "avc1.64001f,mp4a.40.2",
                2_660_000
            ),
            (
                "small/index.m3u8",
                "audio",
                "avc1.64001f,mp4a.40.2",
                960_000
            ),
            (
                "video/index.m3u8",
                "audio-opus-4ch",
                "avc1.64001f,opus",
                2_800_000
            ),
            (
                "small/index.m3u8",
                "audio-opus-4ch",
                "avc1.64001f,opus",
                1_100_000
            ),
        ]
    );
}

/// Without video the renditions stay alternatives: one variant per audio
/// group, on its default (else first) rendition, never one per rendition
/// (a player's bit-rate logic would swap binaural and stereo mid-lesson).
#[test]
fn an_audio_only_master_has_one_variant_per_group() {
    let mut all = vec![
        audio("binaural", "Binaural (headphones)", true),
        audio("stereo", "Stereo", false),
    ];
    all.push(ambisonic("360"));
    let mut p = Packager::new(config(), all).unwrap();
    for r in ["binaural", "stereo", "ambisonic"] {
        p.push_init(r, vec![1, 2, 3]).unwrap();
    }
    assert_eq!(parse_master(&p.master_playlist()).variants.len(), 1);
    let m = p.player_master_playlist();
    let mp = parse_master(&m);
    assert_eq!(mp.alternatives.len(), 3, "{m}");
    assert_eq!(
        variants(&mp),
        [
            ("binaural/index.m3u8", "audio", "mp4a.40.2", 160_000),
            ("ambisonic/index.m3u8", "audio-opus-4ch", "opus", 300_000),
        ]
    );
}

#[test]
fn live_window_target_duration_and_pdt() {
    let mut p = started();
    let mut last = String::new();
    for i in 0..21 {
        // AAC-like durations: a little short or long of 2 s.
        let d = if i % 3 == 0 { 1.984 } else { 2.005 };
        let a = push(&mut p, "binaural", chunk(i, d)).unwrap();
        if i == 0 {
            assert!(a.is_empty(), "the first chunk only opens a segment");
            continue;
        }
        // Chunk i (a boundary) closed segment i.
        let files = write_map(&a);
        assert!(files.contains_key(&format!("binaural/seg{i:06}.m4s")));
        last = text(&files["binaural/live.m3u8"]).to_string();
        let m = parse_media(&last);
        assert_eq!(m.target_duration, 2);
        for s in &m.segments {
            assert!((s.duration.round() as u64) <= m.target_duration);
        }
        let total: f32 = m.segments.iter().map(|s| s.duration).sum();
        if i >= 7 {
            assert!(
                total >= 12.0 - 1e-3,
                "window {total} s shrank below the DVR time"
            );
            let first = m.segments[0].duration;
            assert!(
                total - first < 12.0,
                "window {total} s kept a segment too many"
            );
        }
        assert!(!m.end_list);
        assert!(!last.contains("#EXT-X-PART"), "no parts in standard HLS");
    }
    let m = parse_media(&last);
    // The window's first segment carries its PDT, with its milliseconds
    // and in UTC: segment n started at T0 + (n - 1) × 2 s.
    let first = m.media_sequence as i64;
    assert!(
        last.contains(&format!("{}\n", pdt_line(T0 + (first - 1) * 2000))),
        "{last}"
    );
    assert_eq!(
        last.matches("#EXT-X-PROGRAM-DATE-TIME").count(),
        1,
        "{last}"
    );
    assert!(last.contains("#EXT-X-MAP:URI=\"init.mp4\""), "{last}");
    assert_eq!(first, 14, "12 s of window: segments 14 to 20 (13.99 s)");
}

#[test]
fn discontinuity_sequence_follows_removed_tags() {
    let mut p = started();
    for i in 0..3 {
        push(&mut p, "video", chunk(i, 2.0)).unwrap();
    }
    let closed = p.discontinuity();
    written(&mut p, closed);
    push(&mut p, "video", chunk(10, 2.0)).unwrap();
    let a = push(&mut p, "video", chunk(11, 2.0)).unwrap();
    let text = text(&write_map(&a)["video/live.m3u8"]).to_string();
    assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    let mut seq = 0;
    for i in 12..20 {
        let a = push(&mut p, "video", chunk(i, 2.0)).unwrap();
        let m = parse_media(text_of(&a));
        let tagged = m.segments.iter().any(|s| s.discontinuity);
        seq = m.discontinuity_sequence;
        assert_eq!(seq, u64::from(!tagged), "the removed tag must be counted");
        for s in m.segments.iter().filter(|s| s.discontinuity) {
            assert!(
                s.program_date_time.is_some(),
                "PDT after every discontinuity"
            );
        }
    }
    assert_eq!(seq, 1);
}

fn text_of(a: &[Action]) -> &str {
    let Some(Action::Write { data, .. }) = a.iter().find(|a| a.path() == "video/live.m3u8") else {
        panic!("no live playlist written: {a:?}")
    };
    text(data)
}

#[test]
fn end_writes_endlist_and_a_complete_vod() {
    let mut p = started();
    for i in 0..12 {
        for r in ["video", "binaural", "stereo"] {
            push(&mut p, r, chunk(i, 2.0)).unwrap();
        }
    }
    // a last, short segment
    push(&mut p, "video", chunk(12, 0.8)).unwrap();
    let files = write_map(&finish(&mut p));
    let live = parse_media(text(&files["video/live.m3u8"]));
    assert!(live.end_list);
    let vod = parse_media(text(&files["video/vod.m3u8"]));
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
    let mut p = Packager::new(config(), renditions()).unwrap();
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
    // The refused chunk's boundary closed segment 1: it is handed out.
    let left = p.take_actions();
    assert!(
        matches!(left.as_slice(), [Action::WriteSegment { seq: 1, .. }]),
        "{left:?}"
    );
    written(&mut p, left);
    let e = p
        .push_chunk(
            "video",
            studiocast_hls::Chunk {
                independent: false,
                ..chunk(2, 2.0)
            },
        )
        .unwrap_err();
    assert_eq!(e, HlsError::NotIndependent("video".into()));
    for bad in [f64::NAN, -1.0, 0.0, f64::INFINITY] {
        let e = p.push_chunk("video", chunk(2, bad)).unwrap_err();
        assert!(matches!(e, HlsError::InvalidChunk { .. }), "{bad}: {e:?}");
    }
    // The next good segment is published after a discontinuity.
    push(&mut p, "video", chunk(3, 2.0)).unwrap();
    let a = push(&mut p, "video", chunk(4, 2.0)).unwrap();
    let text = text_of(&a);
    assert!(text.contains("#EXT-X-DISCONTINUITY"), "{text}");
    assert_eq!(parse_media(text).segments.len(), 2, "{text}");
    for bad in [
        PackagerConfig {
            target_duration: 0,
            ..config()
        },
        PackagerConfig {
            part_target: Some(2.0),
            ..config()
        },
        PackagerConfig {
            part_target: Some(f64::NAN),
            ..config()
        },
        PackagerConfig {
            memory_segments: 100_000,
            ..config()
        },
    ] {
        assert!(Packager::new(bad, renditions()).is_err());
    }
    let mut dup = renditions();
    dup[2].id = "binaural".into();
    assert!(Packager::new(config(), dup).is_err());
    let mut bad = renditions();
    bad[0].id = "../x".into();
    assert!(Packager::new(config(), bad).is_err());
}

#[test]
fn new_init_gets_a_new_map_and_a_discontinuity() {
    let mut p = started();
    push(&mut p, "video", chunk(0, 2.0)).unwrap();
    // The same header again changes nothing.
    assert!(p.push_init("video", vec![1, 2, 3]).unwrap().is_empty());
    let a = p.push_init("video", vec![9, 9]).unwrap();
    let paths: Vec<&str> = a.iter().map(Action::path).collect();
    // The open segment closes first: its chunks belong to the old init.
    assert_eq!(paths, ["video/seg000001.m4s", "video/init-1.mp4"]);
    written(&mut p, a);
    push(&mut p, "video", chunk(1, 2.0)).unwrap();
    let flushed = p.flush();
    let a = written(&mut p, flushed);
    let text = text_of(&a);
    assert!(text.contains("#EXT-X-MAP:URI=\"init-1.mp4\""), "{text}");
    assert!(text.contains("#EXT-X-DISCONTINUITY"), "{text}");
}

#[test]
fn a_segment_whose_write_failed_never_reaches_the_journal_or_the_vod() {
    let mut p = started();
    for i in 0..4 {
        push(&mut p, "video", chunk(i, 2.0)).unwrap();
    }
    // The disk refuses segment 4.
    let a = p.push_chunk("video", chunk(4, 2.0)).unwrap();
    let [Action::WriteSegment { seq, path, .. }] = a.as_slice() else {
        panic!("{a:?}")
    };
    assert_eq!((*seq, path.as_str()), (4, "video/seg000004.m4s"));
    let after = p.segment_written("video", 4, false).unwrap();
    assert!(
        !after.iter().any(|a| matches!(a, Action::Append { .. })),
        "no journal line for a failed write"
    );
    // The playlist file on disk marks it as a gap: its bytes are not there.
    let disk = text_of(&after);
    assert!(disk.contains("#EXT-X-GAP\nseg000004.m4s"), "{disk}");
    // Numbers are not reused (parts of segment 4 may have been served).
    let a = push(&mut p, "video", chunk(5, 2.0)).unwrap();
    let files = write_map(&a);
    assert!(files.contains_key("video/seg000005.m4s"), "{files:?}");
    // Confirming a segment that is not waiting is refused: a failed one,
    // one confirmed already (no second journal line), one never cut.
    for seq in [4, 5, 99] {
        assert!(matches!(
            p.segment_written("video", seq, true),
            Err(HlsError::UnknownSegment { .. })
        ));
    }
    // The journal only ever heard of durable segments.
    let journal: Vec<_> = a
        .iter()
        .filter(|x| matches!(x, Action::Append { .. }))
        .collect();
    assert_eq!(journal.len(), 1);
    let files = write_map(&finish(&mut p));
    let vod = parse_media(text(&files["video/vod.m3u8"]));
    let uris: Vec<&str> = vod.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "seg000001.m4s",
            "seg000002.m4s",
            "seg000003.m4s",
            "seg000005.m4s",
            "seg000006.m4s"
        ]
    );
    // 2 s of the stream are missing there.
    assert!(vod.segments[3].discontinuity);
    assert_eq!(p.segment_count("video"), 5);
}
