//! The VOD side: a ladder of video renditions, measured bit rates in the
//! VOD multivariant playlist, I-frame playlists, recovery of all of it.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::*;
use studiocast_hls::{Action, Chunk, Packager, PackagerConfig};

fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(kind);
    v.extend_from_slice(body);
    v
}

/// A CMAF chunk as cmafmux writes it: moof (mfhd, traf (tfhd with
/// default-base-is-moof, tfdt, trun with data offset, first-sample flags,
/// sizes and flags)) then mdat.
fn cmaf_chunk(sizes: &[u32], key: bool) -> Vec<u8> {
    let first_flags: u32 = if key { 0x0200_0000 } else { 0x0101_0000 };
    let build = |data_offset: u32| {
        let mut trun = vec![0, 0, 0x06, 0x05];
        trun.extend_from_slice(&(sizes.len() as u32).to_be_bytes());
        trun.extend_from_slice(&data_offset.to_be_bytes());
        trun.extend_from_slice(&first_flags.to_be_bytes());
        for s in sizes {
            trun.extend_from_slice(&s.to_be_bytes());
            trun.extend_from_slice(&0x0101_0000u32.to_be_bytes());
        }
        let mut traf = bx(b"tfhd", &[0, 0x02, 0, 0, 0, 0, 0, 1]);
        traf.extend_from_slice(&bx(b"tfdt", &[0; 8]));
        traf.extend_from_slice(&bx(b"trun", &trun));
        let mut moof = bx(b"mfhd", &[0, 0, 0, 0, 0, 0, 0, 1]);
        moof.extend_from_slice(&bx(b"traf", &traf));
        bx(b"moof", &moof)
    };
    let moof_len = build(0).len() as u32;
    let mut out = build(moof_len + 8);
    let total: u32 = sizes.iter().sum();
    out.extend_from_slice(&bx(b"mdat", &vec![0xab; total as usize]));
    out
}

fn ladder() -> Vec<studiocast_hls::Rendition> {
    let mut v360 = video("v360", 640, 360, 800_000);
    v360.codecs = "avc1.64001e".into();
    vec![
        video("v720", 1280, 720, 2_500_000),
        v360,
        audio("binaural", "Binaural (headphones)", true),
        audio("stereo", "Stereo", false),
    ]
}

/// The key frame of segment `seg` in a rendition: scene changes make
/// segment 3 heavier.
fn key_size(id: &str, seg: i64) -> u32 {
    let base = if id == "v720" { 6000 } else { 2500 };
    if seg == 3 {
        base * 3
    } else {
        base
    }
}

struct Run {
    p: Packager,
    /// Bytes of every segment written, by rendition.
    sizes: HashMap<String, Vec<usize>>,
    journals: HashMap<String, String>,
    files: HashMap<String, Bytes>,
}

impl Run {
    fn take(&mut self, actions: Vec<Action>) {
        for a in written(&mut self.p, actions) {
            match a {
                Action::WriteSegment {
                    rendition, data, ..
                } => self.sizes.entry(rendition).or_default().push(data.len()),
                Action::Append { path, data } => self
                    .journals
                    .entry(path.split('/').next().unwrap().to_string())
                    .or_default()
                    .push_str(text(&data)),
                Action::Write { path, data } => {
                    self.files.insert(path, data);
                }
            }
        }
    }
}

/// 8 segments of 2 s in every rendition, ended.
fn run() -> Run {
    let config = PackagerConfig {
        part_target: Some(0.333),
        ..PackagerConfig::default()
    };
    let mut r = Run {
        p: Packager::new(config, ladder()).unwrap(),
        sizes: HashMap::new(),
        journals: HashMap::new(),
        files: HashMap::new(),
    };
    for id in ["v720", "v360", "binaural", "stereo"] {
        let a = r.p.push_init(id, vec![1]).unwrap();
        r.take(a);
    }
    for k in 0..48i64 {
        let seg = k / 6 + 1;
        for id in ["v720", "v360"] {
            let key = k % 6 == 0;
            let first = if key { key_size(id, seg) } else { 400 };
            let c = Chunk {
                data: Bytes::from(cmaf_chunk(&[first, 300, 300], key)),
                duration: 1.0 / 3.0,
                independent: key,
                pdt_ms: Some(T0 + k * 1000 / 3),
                boundary: key,
            };
            let a = r.p.push_chunk(id, c).unwrap();
            r.take(a);
        }
        for (id, n) in [("binaural", 700), ("stereo", 500)] {
            let c = Chunk {
                data: Bytes::from(vec![0; n + (k % 6 == 0) as usize * 50]),
                duration: 1.0 / 3.0,
                independent: true,
                pdt_ms: Some(T0 + k * 1000 / 3),
                boundary: k % 6 == 0,
            };
            let a = r.p.push_chunk(id, c).unwrap();
            r.take(a);
        }
    }
    let a = r.p.flush();
    r.take(a);
    let a = r.p.end();
    r.take(a);
    r
}

fn bits(bytes: usize, secs: f64) -> u64 {
    (bytes as f64 * 8.0 / secs).ceil() as u64
}

#[test]
fn the_vod_master_announces_measured_bit_rates_and_iframe_streams() {
    let r = run();
    let peak = |id: &str| bits(*r.sizes[id].iter().max().unwrap(), 2.0);
    let avg = |id: &str| bits(r.sizes[id].iter().sum(), 2.0 * r.sizes[id].len() as f64);
    assert_eq!(r.sizes["v720"].len(), 8);
    for id in ["v720", "v360", "binaural", "stereo"] {
        let b = r.p.bitrate(id).unwrap();
        assert_eq!((b.peak, b.average), (peak(id), avg(id)), "{id}");
    }
    assert!(peak("v720") > avg("v720"), "segment 3 is heavier");
    let text = text(&r.files["master-vod.m3u8"]);
    let m = parse_master(text);
    let streams: Vec<_> = m.variants.iter().filter(|v| !v.is_i_frame).collect();
    let iframes: Vec<_> = m.variants.iter().filter(|v| v.is_i_frame).collect();
    assert_eq!(streams.len(), 2, "{text}");
    assert_eq!(iframes.len(), 2, "{text}");
    assert_eq!(m.alternatives.len(), 2);
    for (v, id, codecs, w) in [
        (streams[0], "v720", "avc1.64001f", 1280),
        (streams[1], "v360", "avc1.64001e", 640),
    ] {
        assert_eq!(v.uri, format!("{id}/index.m3u8"));
        // Video plus the largest audio (binaural).
        assert_eq!(v.bandwidth, peak(id) + peak("binaural"), "{id}");
        assert_eq!(v.average_bandwidth, Some(avg(id) + avg("binaural")), "{id}");
        assert_eq!(
            v.codecs.as_deref(),
            Some(format!("{codecs},mp4a.40.2").as_str())
        );
        assert_eq!(v.resolution.unwrap().width, w);
        assert_eq!(v.frame_rate, Some(30.0));
        assert_eq!(v.audio.as_deref(), Some("audio"));
    }
    for (v, id, codecs) in [
        (iframes[0], "v720", "avc1.64001f"),
        (iframes[1], "v360", "avc1.64001e"),
    ] {
        assert_eq!(v.uri, format!("{id}/iframes.m3u8"));
        assert_eq!(v.codecs.as_deref(), Some(codecs));
        assert!(v.resolution.is_some() && v.frame_rate.is_none() && v.audio.is_none());
        let pl = parse_media(self::text(&r.files[&format!("{id}/iframes.m3u8")]));
        let worst = pl
            .segments
            .iter()
            .map(|s| bits(s.byte_range.as_ref().unwrap().length as usize, 2.0))
            .max()
            .unwrap();
        assert_eq!(v.bandwidth, worst, "{id}");
    }
    // The live master keeps the configured estimates.
    let live = parse_master(&r.p.master_playlist());
    assert_eq!(live.variants[0].bandwidth, 2_500_000 + 160_000);
    assert!(live.variants.iter().all(|v| !v.is_i_frame));
}

#[test]
fn iframe_playlists_point_at_each_segments_key_frame() {
    let r = run();
    let text = text(&r.files["v720/iframes.m3u8"]);
    let pl = parse_media(text);
    assert!(pl.i_frames_only, "{text}");
    assert!(text.contains("#EXT-X-VERSION:7") && text.ends_with("#EXT-X-ENDLIST\n"));
    assert_eq!(pl.segments.len(), 8);
    assert_eq!(pl.segments[0].map.as_ref().unwrap().uri, "init.mp4");
    let moof_len = cmaf_chunk(&[1, 300, 300], true).len() - 8 - 601;
    for (i, s) in pl.segments.iter().enumerate() {
        let seg = i as i64 + 1;
        assert_eq!(s.uri, format!("seg{seg:06}.m4s"));
        assert!((s.duration - 2.0).abs() < 1e-6);
        let range = s.byte_range.as_ref().unwrap();
        assert_eq!(range.offset, Some(0));
        // moof, mdat header, key frame.
        let want = moof_len + 8 + key_size("v720", seg) as usize;
        assert_eq!(range.length as usize, want, "segment {seg}");
    }
    assert!(
        !r.files.contains_key("binaural/iframes.m3u8"),
        "audio has none"
    );
    assert_eq!(r.p.iframe_playlist("v720").as_deref(), Some(text));
}

#[test]
fn a_segment_without_a_locatable_key_frame_is_a_gap_in_the_iframe_playlist() {
    let config = PackagerConfig {
        part_target: Some(0.5),
        ..PackagerConfig::default()
    };
    let mut p = Packager::new(config, vec![video("v", 640, 360, 1_000_000)]).unwrap();
    p.push_init("v", vec![1]).unwrap();
    for seg in 0..3 {
        // Segment 2 is not CMAF at all.
        let data = if seg == 1 {
            Bytes::from_static(b"not boxes at all")
        } else {
            Bytes::from(cmaf_chunk(&[900, 100], true))
        };
        let c = Chunk {
            data,
            duration: 0.5,
            independent: true,
            pdt_ms: None,
            boundary: true,
        };
        let a = p.push_chunk("v", c).unwrap();
        written(&mut p, a);
    }
    let a = p.flush();
    written(&mut p, a);
    p.end();
    let text = p.iframe_playlist("v").unwrap();
    let pl = parse_media(&text);
    assert_eq!(pl.segments.len(), 3, "the timeline stays whole: {text}");
    assert!(pl.segments[1].byte_range.is_none());
    assert!(text.contains("#EXT-X-GAP\nseg000002.m4s"), "{text}");
    assert!(pl.segments[2].byte_range.is_some());
}

/// Without video the renditions are alternatives of one variant (on the
/// default one), not variants a player's bit-rate logic moves between.
#[test]
fn audio_only_streams_have_one_variant_and_their_renditions_as_alternatives() {
    let mut p = Packager::new(
        PackagerConfig::default(),
        vec![
            audio("binaural", "Binaural", true),
            audio("stereo", "Stereo", false),
        ],
    )
    .unwrap();
    for id in ["binaural", "stereo"] {
        p.push_init(id, vec![1]).unwrap();
        for i in 0..3 {
            push(&mut p, id, chunk(i, 2.0)).unwrap();
        }
    }
    let files = write_map(&finish(&mut p));
    let m = parse_master(text(&files["master-vod.m3u8"]));
    assert_eq!(m.variants.len(), 1);
    assert_eq!(m.variants[0].uri, "binaural/index.m3u8");
    assert_eq!(m.variants[0].audio.as_deref(), Some("audio"));
    assert_eq!(m.alternatives.len(), 2);
    // 10 bytes a segment over 2 s (the group's largest).
    assert_eq!(m.variants[0].bandwidth, 40);
    assert_eq!(m.variants[0].average_bandwidth, Some(40));
    // The player's master is the same here (no rendition kept from others).
    assert_eq!(
        text(&files["master-player-vod.m3u8"]),
        text(&files["master-vod.m3u8"])
    );
    assert!(!files.keys().any(|f| f.ends_with("iframes.m3u8")));
}

#[test]
fn a_recovered_stream_has_the_same_vod_master_and_iframe_playlists() {
    let r = run();
    let journals: Vec<(String, String)> = r.journals.clone().into_iter().collect();
    let config = PackagerConfig {
        part_target: Some(0.333),
        ..PackagerConfig::default()
    };
    let mut rec = Packager::recover(config, ladder(), &journals).unwrap();
    let files = write_map(&rec.end());
    for f in [
        "master-vod.m3u8",
        "v720/iframes.m3u8",
        "v360/iframes.m3u8",
        "v720/vod.m3u8",
        "stereo/vod.m3u8",
    ] {
        assert_eq!(files[f], r.files[f], "{f}");
    }
}
