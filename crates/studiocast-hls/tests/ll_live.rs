//! Low-latency playlists in context: init changes, rendition reports, tag
//! order, what the origin is handed, failed writes, the DVR window and
//! the end of a stream.

mod common;

use common::ll::parse;
use common::*;
use studiocast_hls::{Action, PackagerConfig};

#[test]
fn map_before_the_first_segment_and_at_every_change_of_init() {
    let mut s = LlStream::standard();
    s.steps(40);
    // A new init (the source came back with other parameters) just before
    // a fragment starts (k = 42).
    s.steps(2);
    let a = s.p.push_init("video", vec![7, 7, 7]).unwrap();
    written(&mut s.p, a);
    s.step();
    let check = |text: &str, first_listed_map: &str| {
        let pl = parse(text);
        let m = parse_media(text);
        let maps: Vec<(u64, String)> = pl
            .segs
            .iter()
            .filter_map(|x| Some((x.msn, x.map.clone()?)))
            .collect();
        assert_eq!(
            maps[0],
            (pl.segs[0].msn, first_listed_map.to_string()),
            "{text}"
        );
        // Elsewhere only where the init changes, and the open segment's
        // MAP comes before its first part (checked by the reader).
        for w in pl.segs.windows(2) {
            let changed = w[1].msn == 8;
            assert_eq!(w[1].map.is_some(), changed, "segment {}: {text}", w[1].msn);
        }
        // m3u8-rs sees the same: a map on the first segment and segment 8.
        let with_map: Vec<usize> = m
            .segments
            .iter()
            .enumerate()
            .filter(|(_, x)| x.map.is_some())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(with_map[0], 0);
        pl
    };
    let pl = check(&s.playlist("video"), "init.mp4");
    let open = pl.open().unwrap();
    assert_eq!(open.msn, 8);
    assert_eq!(
        open.head,
        [
            "#EXT-X-DISCONTINUITY",
            "#EXT-X-MAP",
            "#EXT-X-PROGRAM-DATE-TIME"
        ]
    );
    assert_eq!(open.map.as_deref(), Some("init-1.mp4"));
    s.steps(60);
    let full = s.playlist("video");
    check(&full, "init.mp4");
    // A delta re-states the map before its first segment.
    let delta = s.delta("video").unwrap();
    let d = parse(&delta);
    let first_map = if d.segs[0].msn >= 8 {
        "init-1.mp4"
    } else {
        "init.mp4"
    };
    check(&delta, first_map);
    // The new init is served from memory too.
    let v = s.p.view("video").unwrap();
    assert_eq!(&v.files["init-1.mp4"][..], [7, 7, 7]);
    assert_eq!(&v.files["init.mp4"][..], [1, 2, 3]);
}

#[test]
fn rendition_reports_name_every_sibling_with_its_last_part() {
    let mut s = LlStream::new(
        ll_config(),
        vec![
            video("v720", 1280, 720, 2_500_000),
            video("v360", 640, 360, 800_000),
            audio("binaural", "Binaural", true),
        ],
    );
    for _ in 0..30 {
        s.step();
        let ids = ["v720", "v360", "binaural"];
        for id in ids {
            let pl = parse(&s.playlist(id));
            let expected: Vec<(String, u64, u64)> = ids
                .iter()
                .filter(|o| **o != id)
                .map(|o| {
                    let last = s.p.view(o).unwrap().last_part.unwrap();
                    (format!("../{o}/index.m3u8"), last.msn, last.part as u64)
                })
                .collect();
            assert_eq!(pl.reports, expected, "{id}");
            // A rendition's own last part, as its siblings report it.
            let own = pl.open().unwrap();
            let lp = s.p.view(id).unwrap().last_part.unwrap();
            assert_eq!((own.msn, own.parts.len() as u32 - 1), (lp.msn, lp.part));
        }
    }
}

#[test]
fn tags_come_in_order() {
    let mut s = LlStream::standard();
    s.steps(100);
    let full = s.playlist("video");
    let pl = parse(&full);
    let head = [
        "#EXT-X-VERSION",
        "#EXT-X-TARGETDURATION",
        "#EXT-X-SERVER-CONTROL",
        "#EXT-X-PART-INF",
        "#EXT-X-MEDIA-SEQUENCE",
        "#EXT-X-DISCONTINUITY-SEQUENCE",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        "#EXT-X-MAP",
        "#EXT-X-PROGRAM-DATE-TIME",
        "#EXTINF",
    ];
    assert_eq!(pl.order[..head.len()], head, "{full}");
    let tail: Vec<&str> = full.lines().rev().take(3).collect();
    assert!(
        tail[0].starts_with("#EXT-X-RENDITION-REPORT")
            && tail[1].starts_with("#EXT-X-RENDITION-REPORT")
    );
    assert!(tail[2].starts_with("#EXT-X-PRELOAD-HINT"), "{full}");
    let delta = s.delta("video").unwrap();
    let d = parse(&delta);
    let mut with_skip = head.to_vec();
    with_skip.insert(7, "#EXT-X-SKIP");
    assert_eq!(d.order[..with_skip.len()], with_skip, "{delta}");
    // Ended: EXT-X-ENDLIST closes the playlist.
    let a = s.p.flush();
    written(&mut s.p, a);
    s.p.end();
    let ended = s.playlist("video");
    assert!(ended.ends_with("#EXT-X-ENDLIST\n"), "{ended}");
    assert_eq!(ended.matches("#EXT-X-ENDLIST").count(), 1);
}

#[test]
fn the_view_holds_what_the_origin_serves() {
    let config = PackagerConfig {
        memory_segments: 10,
        ..ll_config()
    };
    let mut s = LlStream::new(config, renditions());
    s.steps(150);
    let v = s.p.view("video").unwrap();
    let pl = parse(text(&v.playlist));
    let last = pl.complete().last().unwrap().msn;
    assert_eq!(v.last_segment, Some(last));
    let open = pl.open().unwrap();
    assert_eq!(
        v.last_part.map(|p| (p.msn, p.part)),
        Some((open.msn, open.parts.len() as u32 - 1))
    );
    assert_eq!(v.first_msn, pl.media_sequence);
    assert_eq!(v.part_target, Some(0.334));
    assert!(v.satisfies(last, None) && !v.satisfies(last + 1, None));
    assert!(v.satisfies(open.msn, Some(open.parts.len() as u32 - 1)));
    // Init, the last ten segments, every part listed; older segments are
    // on disk only.
    for m in last - 9..=last {
        assert!(v.files.contains_key(&format!("seg{m:06}.m4s")), "{m}");
    }
    assert!(!v.files.contains_key(&format!("seg{:06}.m4s", last - 10)));
    assert!(!v
        .files
        .keys()
        .any(|f| f.starts_with(&format!("seg{:06}.", last - 10))));
    assert!(v.files.contains_key("init.mp4"));
    // A segment's bytes are its parts' bytes, in order.
    let seg = &v.files[&format!("seg{last:06}.m4s")];
    let joined: Vec<u8> = (0..6)
        .flat_map(|i| v.files[&format!("seg{last:06}.p{i}.m4s")].to_vec())
        .collect();
    assert_eq!(seg.to_vec(), joined);
    // Nothing changes without input; every push changes its rendition.
    s.p.take_changed();
    assert!(s.p.take_changed().is_empty());
    s.p.push_chunk("stereo", LlStream::audio_chunk(100))
        .unwrap();
    assert_eq!(s.p.take_changed(), ["stereo"]);
}

#[test]
fn a_failed_write_is_served_from_memory_then_marked_as_a_gap() {
    let mut s = LlStream::standard();
    s.steps(30); // segments 1..4 complete, 5 open
                 // Segment 5 closes at the next boundary; the disk refuses it.
    let a = s.p.push_chunk("video", LlStream::video_chunk(s.k)).unwrap();
    let [Action::WriteSegment { seq: 5, .. }] = a.as_slice() else {
        panic!("{a:?}")
    };
    let after = s.p.segment_written("video", 5, false).unwrap();
    assert!(after.iter().all(|a| !matches!(a, Action::Append { .. })));
    // While its bytes are in memory it is served and listed as usual.
    let v = s.p.view("video").unwrap();
    assert!(v.files.contains_key("seg000005.m4s"));
    let pl = parse(text(&v.playlist));
    assert!(!pl.segs.iter().any(|x| x.gap));
    // The file on disk says at once that it is not there.
    let disk = s.p.media_playlist("video", false).unwrap();
    assert!(disk.contains("#EXT-X-GAP\nseg000005.m4s"), "{disk}");
    // Once it leaves memory it is a gap in the live playlist too.
    for k in s.k + 1..s.k + 80 {
        push(&mut s.p, "video", LlStream::video_chunk(k)).unwrap();
    }
    let v = s.p.view("video").unwrap();
    assert!(!v.files.contains_key("seg000005.m4s"));
    let pl = parse(text(&v.playlist));
    let gaps: Vec<u64> = pl.segs.iter().filter(|x| x.gap).map(|x| x.msn).collect();
    assert_eq!(gaps, [5]);
    parse_media(text(&v.playlist));
    // Never in the VOD; the segment after it follows a discontinuity there.
    let flushed = s.p.flush();
    written(&mut s.p, flushed);
    s.p.end();
    let vod = parse_media(&s.p.media_playlist("video", true).unwrap());
    assert!(!vod.segments.iter().any(|x| x.uri == "seg000005.m4s"));
    let after_gap = vod
        .segments
        .iter()
        .find(|x| x.uri == "seg000006.m4s")
        .unwrap();
    assert!(after_gap.discontinuity);
}

#[test]
fn the_window_keeps_the_dvr_time_and_never_less_than_the_skip_boundary() {
    for (dvr, min) in [(0u64, 12.0f64), (30, 30.0), (7200, 7200.0)] {
        let config = PackagerConfig {
            dvr_seconds: dvr,
            ..ll_config()
        };
        let mut s = LlStream::new(config, vec![video("v", 640, 360, 1_000_000)]);
        let steps = (min * 3.0) as usize + 120;
        s.steps(steps.min(3 * 60 * 10));
        let pl = parse(&s.playlist("v"));
        let durs: Vec<f64> = pl.complete().map(|x| x.duration.unwrap()).collect();
        let total: f64 = durs.iter().sum();
        let streamed = ((s.k - 1) / 6) as f64 * 2.0; // complete segments
        assert!(
            total >= min.min(streamed) - 1e-6,
            "dvr {dvr}: {total} s listed"
        );
        if streamed > min + 4.0 {
            assert!(
                total - durs[0] < min,
                "dvr {dvr}: {total} s listed, one too many"
            );
        }
    }
}

#[test]
fn a_discontinuity_closes_the_open_segment_and_tags_the_next() {
    let mut s = LlStream::standard();
    s.steps(9); // segment 2 open with 3 parts
    let a = s.p.discontinuity_in("video").unwrap();
    let [Action::WriteSegment { seq: 2, .. }] = a.as_slice() else {
        panic!("{a:?}")
    };
    written(&mut s.p, a);
    // Mid-fragment: the rest of the fragment cannot start a segment.
    for k in 9..12 {
        assert!(s.p.push_chunk("video", LlStream::video_chunk(k)).is_err());
    }
    let pl = parse(&s.playlist("video"));
    assert!(pl.open().is_none());
    assert_eq!(pl.complete().last().unwrap().duration, Some(1.0));
    s.p.push_chunk("video", LlStream::video_chunk(12)).unwrap();
    let pl = parse(&s.playlist("video"));
    let open = pl.open().unwrap();
    assert_eq!((open.msn, open.discontinuity), (3, true));
    assert_eq!(
        open.pdt
            .as_deref()
            .map(|p| format!("#EXT-X-PROGRAM-DATE-TIME:{p}")),
        Some(pdt_line(T0 + 4000))
    );
}

#[test]
fn an_ended_stream_keeps_its_parts_and_drops_hint_and_delta() {
    let mut s = LlStream::standard();
    s.steps(100);
    let a = s.p.flush();
    written(&mut s.p, a);
    let actions = s.p.end();
    let files = write_map(&actions);
    let v = s.p.view("video").unwrap();
    assert!(v.ended && v.playlist_skip.is_none() && v.preload_hint.is_none());
    assert!(v.satisfies(u64::MAX, Some(9)));
    let pl = parse(text(&v.playlist));
    assert!(pl.endlist && pl.hint.is_none() && pl.open().is_none());
    parse_media(text(&v.playlist));
    // The files on disk have no parts: those live in memory only.
    for path in ["video/live.m3u8", "video/vod.m3u8", "binaural/vod.m3u8"] {
        let t = text(&files[path]);
        assert!(
            !t.contains("#EXT-X-PART") && !t.contains("#EXT-X-PRELOAD-HINT"),
            "{path}"
        );
        assert!(parse_media(t).end_list);
    }
}

/// A disk that fills: from some segment on, every write fails, and the
/// worker marks a discontinuity before each boundary (as it does after a
/// failed write). At every moment, each segment the live playlist lists
/// without `EXT-X-GAP`, now or in the last 5 s (a player's copy), is
/// served from memory or was written.
#[test]
fn a_listed_segment_is_always_served_or_marked_as_a_gap() {
    let cfg = studiocast_hls::PackagerConfig {
        dvr_seconds: 7200,
        ..ll_config()
    };
    let mut s = LlStream::new(cfg, renditions());
    let mut written: std::collections::HashSet<(String, u64)> = Default::default();
    let mut history: std::collections::HashMap<&str, std::collections::VecDeque<String>> =
        Default::default();
    for k in 0..600i64 {
        let ids: Vec<(String, bool)> =
            s.p.renditions()
                .map(|r| {
                    (
                        r.id.clone(),
                        matches!(r.kind, studiocast_hls::RenditionKind::Video { .. }),
                    )
                })
                .collect();
        for (id, video) in ids {
            let c = if video {
                LlStream::video_chunk(k)
            } else {
                LlStream::audio_chunk(k)
            };
            let mut actions = Vec::new();
            if c.boundary && k >= 60 {
                actions.extend(s.p.discontinuity_in(&id).unwrap());
            }
            match s.p.push_chunk(&id, c) {
                Ok(a) => actions.extend(a),
                Err(_) => actions.extend(s.p.take_actions()),
            }
            // Carry out the writes: they fail from chunk 60 on.
            let mut queue = actions;
            while let Some(a) = queue.pop() {
                if let studiocast_hls::Action::WriteSegment { rendition, seq, .. } = a {
                    let ok = k < 60;
                    if ok {
                        written.insert((rendition.clone(), seq));
                    }
                    queue.extend(s.p.segment_written(&rendition, seq, ok).unwrap());
                }
            }
            for r in ["video", "binaural", "stereo"] {
                let v = s.p.view(r).unwrap();
                // A player may hold a playlist up to 5 s (15 chunks) old:
                // what it lists must still be there.
                let h = history.entry(r).or_default();
                h.push_back(text(&v.playlist).to_string());
                if h.len() > 15 {
                    h.pop_front();
                }
                for text in h.iter() {
                    let mut gap = false;
                    for line in text.lines() {
                        if line == "#EXT-X-GAP" {
                            gap = true;
                        }
                        if line.starts_with('#') || !line.ends_with(".m4s") {
                            continue;
                        }
                        let seq: u64 = line[3..9].parse().unwrap();
                        let served =
                            v.files.contains_key(line) || written.contains(&(r.to_string(), seq));
                        assert!(
                        std::mem::take(&mut gap) || served,
                        "chunk {k}: {r} lists {line} without a gap, and it is neither in memory nor written"
                    );
                    }
                }
            }
        }
    }
}
