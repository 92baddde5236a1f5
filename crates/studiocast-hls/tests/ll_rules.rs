//! RFC 8216bis server rules (6.2.2, 4.4.3.x, 4.4.4.9, 4.4.5.x, 6.2.5.1),
//! each checked on every playlist a low-latency stream publishes.

mod common;

use common::ll::{parse, Pl};
use common::*;
use studiocast_hls::HlsError;

const IDS: [&str; 3] = ["video", "binaural", "stereo"];

/// Run a stream for `n` steps; after each, hand every rendition's full
/// and delta playlists (parsed, and checked by m3u8-rs) to `check`.
fn each_publish(s: &mut LlStream, n: usize, mut check: impl FnMut(&str, &Pl, Option<&Pl>)) {
    for _ in 0..n {
        s.step();
        for id in IDS {
            let v = s.p.view(id).unwrap();
            let full = text(&v.playlist);
            parse_media(full);
            let delta = v.playlist_skip.as_ref().map(|d| {
                parse_media(text(d));
                parse(text(d))
            });
            check(id, &parse(full), delta.as_ref());
        }
    }
}

/// Seconds from each listed segment's start and end to the end of the
/// playlist (its last part), oldest first.
fn ages(pl: &Pl) -> Vec<(f64, f64)> {
    let durs: Vec<f64> = pl
        .segs
        .iter()
        .map(|s| {
            s.duration
                .unwrap_or_else(|| s.parts.iter().map(|p| p.duration).sum())
        })
        .collect();
    let total: f64 = durs.iter().sum();
    let mut at = 0.0;
    durs.iter()
        .map(|d| {
            let r = (total - at, total - at - d);
            at += d;
            r
        })
        .collect()
}

#[test]
fn target_duration_is_constant_and_bounds_every_segment() {
    let mut s = LlStream::standard();
    each_publish(&mut s, 60, |_, full, delta| {
        for pl in std::iter::once(full).chain(delta) {
            assert_eq!(pl.target, Some(2));
            for seg in pl.complete() {
                let d = seg.duration.unwrap();
                assert!(d.round() as u64 <= 2, "EXTINF {d} over the target");
            }
        }
    });
    // A chunk that would take the open segment past the target is refused
    // (7 chunks of 1/3 s round to 2 s, 8 to 3 s): the segment closes
    // before it, so nothing over-long is ever listed.
    let mut c = LlStream::video_chunk(60);
    s.p.push_chunk("video", c.clone()).unwrap();
    c.boundary = false;
    c.independent = false;
    for _ in 1..7 {
        s.p.push_chunk("video", c.clone()).unwrap();
    }
    let r = s.p.push_chunk("video", c.clone());
    assert!(
        matches!(
            r,
            Err(studiocast_hls::HlsError::TargetDurationExceeded { .. })
        ),
        "{r:?}"
    );
    let closed = s.p.take_actions();
    assert!(
        matches!(
            closed.as_slice(),
            [studiocast_hls::Action::WriteSegment { .. }]
        ),
        "{closed:?}"
    );
    let pl = parse(&s.playlist("video"));
    let last = pl.complete().last().unwrap();
    assert_eq!(last.duration, Some(2.33333));
    assert!(pl.open().is_none(), "the refused chunk opened nothing");
    // The rest of that fragment is refused too (no key frame to start on).
    assert!(s.p.push_chunk("video", c).is_err());
}

#[test]
fn media_sequence_counts_the_segments_that_left() {
    let mut s = LlStream::standard();
    let mut last: Option<(u64, Vec<String>)> = None;
    for _ in 0..150 {
        s.step();
        let v = s.p.view("video").unwrap();
        let pl = parse(text(&v.playlist));
        assert_eq!(v.first_msn, pl.media_sequence);
        // Each URI is its own media sequence number (implicit numbering).
        for seg in &pl.segs {
            if let Some(uri) = &seg.uri {
                assert_eq!(*uri, format!("seg{:06}.m4s", seg.msn));
            }
            for (i, p) in seg.parts.iter().enumerate() {
                assert_eq!(p.uri, format!("seg{:06}.p{i}.m4s", seg.msn));
            }
        }
        let uris: Vec<String> = pl.complete().map(|s| s.uri.clone().unwrap()).collect();
        if let Some((msn, old)) = &last {
            let gone = old.iter().filter(|u| !uris.contains(u)).count() as u64;
            assert_eq!(pl.media_sequence, msn + gone, "msn moves by what left");
            // Segments leave from the front only.
            assert!(old[gone as usize..].iter().zip(&uris).all(|(a, b)| a == b));
        }
        last = Some((pl.media_sequence, uris));
    }
    assert!(last.unwrap().0 > 5, "the window slid");
}

#[test]
fn discontinuity_sequence_counts_the_tags_that_left() {
    let mut s = LlStream::standard();
    s.steps(30);
    // Right before a boundary chunk (k = 30 starts a fragment).
    s.p.discontinuity();
    let tagged = parse(&s.playlist("video"))
        .segs
        .iter()
        .map(|x| x.msn)
        .max()
        .unwrap()
        + 1;
    let mut seen_tag = false;
    let mut seen_gone = false;
    each_publish(&mut s, 150, |id, full, delta| {
        if id != "video" {
            return;
        }
        let present = full.segs.iter().any(|x| x.msn == tagged);
        if present {
            let seg = full.segs.iter().find(|x| x.msn == tagged).unwrap();
            assert!(seg.discontinuity, "segment {tagged} is tagged");
            assert_eq!(full.discontinuity_sequence, 0);
            seen_tag = true;
        } else if seen_tag {
            assert_eq!(full.discontinuity_sequence, 1, "the removed tag is counted");
            seen_gone = true;
        }
        if let Some(d) = delta {
            // Skipping the tag does not change the sequence (4.4.5.2).
            assert_eq!(d.discontinuity_sequence, full.discontinuity_sequence);
        }
    });
    assert!(seen_tag && seen_gone);
}

#[test]
fn parts_stay_within_the_part_target_and_add_up_to_their_segment() {
    let mut s = LlStream::standard();
    let mut parts_seen = 0;
    each_publish(&mut s, 80, |_, full, _| {
        let pt = full.part_target.unwrap();
        for seg in &full.segs {
            for p in &seg.parts {
                assert!(
                    p.duration <= pt,
                    "part {} over PART-TARGET {pt}",
                    p.duration
                );
                parts_seen += 1;
            }
            if let (Some(d), false) = (seg.duration, seg.parts.is_empty()) {
                // Exact in ticks of 10 µs, as printed.
                let ticks = |x: f64| (x * 1e5).round() as i64;
                let sum: i64 = seg.parts.iter().map(|p| ticks(p.duration)).sum();
                assert_eq!(sum, ticks(d), "EXTINF is the sum of its parts");
            }
        }
    });
    assert!(parts_seen > 100);
    // A chunk longer than PART-TARGET is refused and never listed.
    let mut c = LlStream::audio_chunk(80);
    c.duration = 0.3351;
    let e = s.p.push_chunk("binaural", c).unwrap_err();
    assert!(
        matches!(e, studiocast_hls::HlsError::PartTargetExceeded { .. }),
        "{e:?}"
    );
    let pl = parse(&s.playlist("binaural"));
    assert!(pl
        .segs
        .iter()
        .flat_map(|x| &x.parts)
        .all(|p| p.duration <= 0.334));
}

#[test]
fn hold_back_and_skip_boundary_follow_the_targets() {
    for (target, part) in [(1, 0.2), (2, 0.333), (2, 0.5), (4, 1.0), (6, 0.25)] {
        let config = studiocast_hls::PackagerConfig {
            target_duration: target,
            part_target: Some(part),
            ..ll_config()
        };
        let mut s = LlStream::new(config, vec![video("v", 640, 360, 1_000_000)]);
        let mut c = LlStream::video_chunk(0);
        c.duration = part;
        s.p.push_chunk("v", c).unwrap();
        let pl = parse(&s.playlist("v"));
        let pt = pl.part_target.unwrap();
        let sc = &pl.server_control;
        assert_eq!(sc["CAN-BLOCK-RELOAD"], "YES");
        let phb: f64 = sc["PART-HOLD-BACK"].parse().unwrap();
        assert!(phb >= 3.0 * pt - 1e-9, "PART-HOLD-BACK {phb} < 3 × {pt}");
        let csu: f64 = sc["CAN-SKIP-UNTIL"].parse().unwrap();
        assert!(csu >= 6.0 * target as f64, "CAN-SKIP-UNTIL {csu}");
        if let Some(hb) = sc.get("HOLD-BACK") {
            assert!(hb.parse::<f64>().unwrap() >= 3.0 * target as f64);
        }
        assert!(pt >= part, "PART-TARGET {pt} below the chunks asked for");
    }
}

#[test]
fn parts_are_listed_for_the_last_three_target_durations_only() {
    let mut s = LlStream::standard();
    // part URI -> playlist end (seconds of stream) when it left the playlist
    let mut removed: std::collections::HashMap<String, f64> = Default::default();
    let mut listed: std::collections::HashSet<String> = Default::default();
    let mut stream_end = 0.0;
    for step in 0..150 {
        s.step();
        stream_end += VIDEO_PART;
        let v = s.p.view("video").unwrap();
        let pl = parse(text(&v.playlist));
        let ages = ages(&pl);
        let mut had_parts = false;
        for (seg, (from_start, _)) in pl.segs.iter().zip(&ages) {
            if seg.parts.is_empty() {
                assert!(!had_parts, "parts are removed oldest first ({step})");
            } else {
                had_parts = true;
                assert!(
                    *from_start <= 6.0 + 1e-6,
                    "parts of a segment {from_start} s old"
                );
            }
        }
        // Removed no earlier than they must be: the youngest segment
        // without parts starts more than 3 × 2 s from the end.
        if let Some(i) = pl.segs.iter().rposition(|x| x.parts.is_empty()) {
            assert!(ages[i].0 > 6.0, "parts removed too early at {step}");
        }
        assert!(
            !pl.open().unwrap().parts.is_empty(),
            "the open segment lists its parts"
        );
        let now: std::collections::HashSet<String> = pl
            .segs
            .iter()
            .flat_map(|x| &x.parts)
            .map(|p| p.uri.clone())
            .collect();
        for u in listed.difference(&now) {
            removed.entry(u.clone()).or_insert(stream_end);
        }
        listed = now;
        for u in &listed {
            assert!(v.files.contains_key(u), "listed part {u} not served");
        }
        // RFC 8216bis 6.2.2: fetchable 3 target durations after removal.
        for (u, at) in &removed {
            if stream_end - at < 6.0 - 1e-6 {
                assert!(
                    v.files.contains_key(u),
                    "{u} gone {} s after removal",
                    stream_end - at
                );
            }
        }
    }
    assert!(removed.len() > 100);
}

#[test]
fn the_preload_hint_names_the_next_part() {
    let mut s = LlStream::standard();
    let mut ahead = 0;
    each_publish(&mut s, 40, |id, full, delta| {
        let open = full.open().expect("an open segment");
        // A segment that has its length (2 s, within half the advertised
        // 0.334 s part target) ends with the next chunk: the hint names
        // the next segment's first part, not a part that never comes.
        let dur: f64 = open.parts.iter().map(|p| p.duration).sum();
        let next = if dur + 0.334 / 2.0 >= 2.0 - 1e-9 {
            ahead += 1;
            format!("seg{:06}.p0.m4s", open.msn + 1)
        } else {
            format!("seg{:06}.p{}.m4s", open.msn, open.parts.len())
        };
        assert_eq!(full.hint.as_deref(), Some(next.as_str()), "{id}");
        assert_eq!(
            delta.and_then(|d| d.hint.clone()),
            delta.map(|_| next.clone())
        );
    });
    assert!(
        ahead > 10,
        "the end of a segment was never hinted ({ahead})"
    );
    let v = s.p.view("video").unwrap();
    let pl = parse(text(&v.playlist));
    let hint = v.preload_hint.unwrap();
    assert_eq!(
        pl.hint.unwrap(),
        format!("seg{:06}.p{}.m4s", hint.msn, hint.part)
    );
    // The next chunk (not a boundary here) is exactly the hinted part.
    assert_ne!(s.k % 6, 0);
    s.step();
    let after = parse(&s.playlist("video"));
    let new_part = &after.open().unwrap().parts.last().unwrap().uri;
    assert_eq!(*new_part, format!("seg{:06}.p{}.m4s", hint.msn, hint.part));
    // With no segment open, the first part of the next one.
    let closed = s.p.flush();
    written(&mut s.p, closed);
    let pl = parse(&s.playlist("video"));
    let last = pl.complete().last().unwrap().msn;
    assert_eq!(pl.hint.unwrap(), format!("seg{:06}.p0.m4s", last + 1));
    // No hint once the playlist has EXT-X-ENDLIST (4.4.5.3).
    s.p.end();
    let pl = parse(&s.playlist("video"));
    assert!(pl.endlist && pl.hint.is_none());
    assert!(s.p.view("video").unwrap().preload_hint.is_none());
}

#[test]
fn a_delta_update_skips_exactly_the_segments_past_the_skip_boundary() {
    let mut s = LlStream::standard();
    let mut deltas = 0;
    each_publish(&mut s, 150, |id, full, delta| {
        let skip_until: f64 = full.server_control["CAN-SKIP-UNTIL"].parse().unwrap();
        let complete: Vec<_> = full.complete().collect();
        // Distance of each complete segment's end from the end of the last
        // complete (Parent) segment (6.2.5.1).
        let mut ends = Vec::new();
        let mut at = 0.0;
        for c in &complete {
            at += c.duration.unwrap();
            ends.push(at);
        }
        let last = at;
        let expected = ends
            .iter()
            .filter(|e| last - **e > skip_until + 1e-9)
            .count();
        let Some(d) = delta else {
            assert_eq!(expected, 0, "{id}: a delta was due");
            return;
        };
        deltas += 1;
        assert_eq!(d.skipped, Some(expected as u64), "{id}");
        assert_eq!(d.version, Some(9), "EXT-X-SKIP needs version 9");
        assert_eq!(full.version, Some(7));
        assert_eq!(d.media_sequence, full.media_sequence, "same media sequence");
        assert_eq!(d.discontinuity_sequence, full.discontinuity_sequence);
        assert_eq!(d.server_control, full.server_control);
        // What is left is the full playlist's tail, segment for segment.
        let tail: Vec<_> = full.segs[expected..]
            .iter()
            .map(|x| (&x.uri, x.msn, x.parts.len()))
            .collect();
        let got: Vec<_> = d
            .segs
            .iter()
            .map(|x| (&x.uri, x.msn, x.parts.len()))
            .collect();
        assert_eq!(got, tail);
        assert_eq!(d.reports, full.reports);
    });
    assert!(deltas > 100);
}

#[test]
fn program_date_time_on_the_first_segment_after_a_skip_and_after_discontinuities() {
    let mut s = LlStream::standard();
    s.steps(36);
    s.p.discontinuity();
    let mut checked = 0;
    each_publish(&mut s, 80, |_, full, delta| {
        for pl in std::iter::once(full).chain(delta) {
            for (i, seg) in pl.segs.iter().enumerate() {
                let wanted = i == 0 || seg.discontinuity;
                assert_eq!(seg.pdt.is_some(), wanted, "segment {} of {pl:?}", seg.msn);
                checked += usize::from(wanted);
            }
        }
    });
    assert!(checked > 200);
    // The values are the capture times of each segment's first sample.
    let pl = parse(&s.playlist("video"));
    let first = &pl.segs[0];
    let expected = pdt_line(T0 + (first.msn as i64 - 1) * 6 * 1000 / 3);
    assert_eq!(
        format!("#EXT-X-PROGRAM-DATE-TIME:{}", first.pdt.as_ref().unwrap()),
        expected
    );
}

#[test]
fn independent_marks_only_parts_that_start_with_a_key_frame() {
    let mut s = LlStream::standard();
    each_publish(&mut s, 40, |id, full, _| {
        for seg in &full.segs {
            for (i, p) in seg.parts.iter().enumerate() {
                let want = id != "video" || i == 0;
                assert_eq!(p.independent, want, "{id} {}", p.uri);
            }
        }
    });
}

/// After a refused chunk mid-segment (here an audio chunk too long for a
/// part), the rendition's following chunks are independent but not
/// boundaries: they wait for the next boundary instead of opening segment
/// N+1 early, so segment N still covers the same time in every rendition.
#[test]
fn after_a_refusal_audio_waits_for_the_boundary_and_stays_aligned() {
    let mut s = LlStream::standard();
    s.steps(8); // segment 1 done, segment 2 open with 2 parts
    let mut long = LlStream::audio_chunk(8);
    long.duration = 0.5;
    assert!(matches!(
        s.p.push_chunk("binaural", long),
        Err(HlsError::PartTargetExceeded { .. })
    ));
    s.p.take_actions();
    // Chunks 9..11: not boundaries; refused quietly, nothing opens.
    for k in 9..12 {
        let r = s.p.push_chunk("binaural", LlStream::audio_chunk(k));
        assert!(
            matches!(r, Err(HlsError::AwaitingBoundary(_))),
            "chunk {k}: {r:?}"
        );
        s.p.take_actions();
    }
    // The boundary (chunk 12) opens segment 3 in both audio renditions.
    for k in 12..14 {
        for id in ["binaural", "stereo"] {
            let a = s.p.push_chunk(id, LlStream::audio_chunk(k)).unwrap();
            written(&mut s.p, a);
        }
    }
    let b = s.p.view("binaural").unwrap();
    let st = s.p.view("stereo").unwrap();
    assert_eq!(b.last_part.map(|p| p.msn), Some(3));
    assert_eq!(st.last_part.map(|p| p.msn), Some(3));
    // Segment 2 of binaural closed short and the next one follows a
    // discontinuity (media is missing there).
    let pl = s.playlist("binaural");
    assert!(pl.contains("#EXT-X-DISCONTINUITY"), "{pl}");
}
