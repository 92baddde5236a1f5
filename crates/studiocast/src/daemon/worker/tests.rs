//! The worker against scripted media events.

use super::*;
use studiocast_hls::LiveView;
use studiocast_media::event_queue;

/// The PDT of the segment right after each `EXT-X-DISCONTINUITY`.
fn discontinuities(playlist: &str) -> Vec<String> {
    let lines: Vec<&str> = playlist.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == "#EXT-X-DISCONTINUITY")
        .filter_map(|(i, _)| {
            lines[i..]
                .iter()
                .find_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
                .map(str::to_string)
        })
        .collect()
}

/// A video segment whose write fails (transiently) is not published,
/// and every rendition marks the gap on the same segment boundary.
#[test]
fn a_failed_write_marks_the_gap_in_every_rendition_at_once() {
    let spec = PipelineSpec::parse(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../pipelines/demo.toml"
        ))
        .unwrap()
        // Whole 2 s segments, one chunk each.
        .replace("latency = \"low\"", "latency = \"standard\""),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("studiocast-gap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (tx, rx, _) = event_queue(1 << 20);
    let (utx, mut urx) = tokio::sync::mpsc::unbounded_channel();
    let d2 = dir.clone();
    let live = LiveSet::new(&spec);
    let views = live.subscribe("720p").unwrap();
    let worker = std::thread::spawn(move || run(d2, spec, rx, utx, None, live));
    for r in ["720p", "360p", "binaural", "stereo"] {
        tx.send(MediaEvent::Init {
            rendition: r.into(),
            data: b"ftyp".to_vec(),
        });
    }
    let t0 = 1_764_460_800_000i64;
    let settle = || std::thread::sleep(std::time::Duration::from_millis(150));
    for k in 0..4i64 {
        if k == 2 {
            // The rename of video's second segment fails: a directory
            // stands where the file goes. (A segment is written when
            // the next one starts, here with k = 2.)
            std::fs::create_dir_all(dir.join("720p/seg000002.m4s")).unwrap();
        }
        for (r, skew) in [("720p", 0), ("360p", 0), ("binaural", -16), ("stereo", -16)] {
            tx.send(MediaEvent::Chunk {
                rendition: r.into(),
                data: vec![k as u8; 32],
                duration: 2.0,
                pdt_ms: t0 + k * 2000 + skew,
                independent: true,
                boundary: true,
                after_gap: false,
            });
            settle();
            if k == 2 && r == "720p" {
                std::fs::remove_dir(dir.join("720p/seg000002.m4s")).unwrap();
            }
        }
    }
    tx.send(MediaEvent::Eos);
    assert_eq!(worker.join().unwrap(), None);
    let mut alarm = false;
    while let Ok(u) = urx.try_recv() {
        alarm |= matches!(u, Update::WriteFailed { .. });
    }
    assert!(alarm, "the failure was reported");
    // The origin's view ended too, and still serves the segment the
    // disk refused from memory (viewers lose nothing).
    let view = views.borrow().clone();
    eprintln!("{}", String::from_utf8_lossy(&view.playlist));
    assert!(view.ended);
    assert!(view.file("seg000002.m4s").is_some());
    let video = std::fs::read_to_string(dir.join("720p/vod.m3u8")).unwrap();
    let bin = std::fs::read_to_string(dir.join("binaural/vod.m3u8")).unwrap();
    assert_eq!(video.matches(".m4s").count(), 3, "{video}");
    assert_eq!(bin.matches(".m4s").count(), 4, "{bin}");
    let (dv, db) = (discontinuities(&video), discontinuities(&bin));
    assert_eq!(dv.len(), 1, "{video}");
    assert_eq!(db.len(), 1, "{bin}");
    // The same boundary: the segment at t0 + 4 s in both (audio
    // fragments sit up to an AAC frame off the video's).
    let ms = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .timestamp_millis()
    };
    for t in [&dv[0], &db[0]] {
        assert!(
            (ms(t) - (t0 + 4000)).abs() <= 100,
            "video {dv:?}, audio {db:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An audio muxer that misses one split: its segment would run past
/// the target and be refused, silencing that rendition until the next
/// boundary. The worker cuts it at the chunk that goes past its length
/// instead: no refusal, no hole, and every rendition keeps segment N
/// on the same time (the counts match once the next boundary passes).
/// Runs 31 parts (6 a segment) of the demo's four renditions through a
/// worker, where `sent(rendition, k)` says whether chunk k is sent and
/// `split(rendition, k)` whether it starts a fragment; returns the
/// 720p and stereo views.
fn split_scenario(
    tag: &str,
    sent: impl Fn(&str, i64) -> bool,
    split: impl Fn(&str, i64) -> bool,
) -> (Arc<LiveView>, Arc<LiveView>) {
    let spec = PipelineSpec::parse(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../pipelines/demo.toml"
        ))
        .unwrap(),
    )
    .unwrap();
    let part = spec.part_duration().unwrap().as_secs_f64();
    let dir = std::env::temp_dir().join(format!("studiocast-split-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (tx, rx, _) = event_queue(1 << 20);
    let (utx, _urx) = tokio::sync::mpsc::unbounded_channel();
    let d2 = dir.clone();
    let live = LiveSet::new(&spec);
    let (video, audio) = (
        live.subscribe("720p").unwrap(),
        live.subscribe("stereo").unwrap(),
    );
    let worker = std::thread::spawn(move || run(d2, spec, rx, utx, None, live));
    for r in ["720p", "360p", "binaural", "stereo"] {
        tx.send(MediaEvent::Init {
            rendition: r.into(),
            data: b"ftyp".to_vec(),
        });
    }
    let t0 = 1_764_460_800_000i64;
    for k in 0..31i64 {
        for r in ["720p", "360p", "binaural", "stereo"] {
            if !sent(r, k) {
                continue;
            }
            let boundary = split(r, k);
            tx.send(MediaEvent::Chunk {
                rendition: r.into(),
                data: vec![k as u8; 32],
                duration: part,
                pdt_ms: t0 + k * 1000 / 3,
                independent: boundary || !r.ends_with('p'),
                boundary,
                after_gap: false,
            });
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let views = (video.borrow().clone(), audio.borrow().clone());
    tx.send(MediaEvent::Eos);
    assert_eq!(worker.join().unwrap(), None);
    let _ = std::fs::remove_dir_all(&dir);
    views
}

fn all_whole_segments(view: &LiveView) {
    let text = String::from_utf8_lossy(&view.playlist).into_owned();
    assert!(
        text.lines()
            .filter(|l| l.starts_with("#EXTINF"))
            .all(|l| l == "#EXTINF:2.00000,"),
        "{text}"
    );
}

#[test]
fn a_missed_audio_split_is_cut_at_the_segment_length() {
    // Stereo's split at chunk 18 (segment 4) is missed.
    let (v, a) = split_scenario(
        "missed",
        |_, _| true,
        |r, k| k % 6 == 0 && !(r == "stereo" && k == 18),
    );
    assert_eq!(v.last_segment, Some(5));
    assert_eq!(
        a.last_segment,
        v.last_segment,
        "stereo fell out of step: {}",
        String::from_utf8_lossy(&a.playlist)
    );
    assert_eq!(a.last_part.map(|p| p.msn), v.last_part.map(|p| p.msn));
    // The chunk that would take segment 3 past its length is the one
    // the split should have started: segment 4 starts on time.
    all_whole_segments(&a);
}

/// Seen under load: both audio muxers missed a split while the video
/// encoders ran seconds late, so the video's newest boundary was no
/// guide, and the audio was refused at 2.73 s. The length alone cuts.
#[test]
fn a_missed_split_is_cut_while_the_video_runs_late() {
    let (_, a) = split_scenario(
        "late-video",
        // The video stops after segment 1: its boundary stays at 6.
        |r, k| !r.ends_with('p') || k < 8,
        |r, k| k % 6 == 0 && !(r == "stereo" && (k == 18 || k == 24)),
    );
    assert_eq!(
        a.last_segment,
        Some(5),
        "{}",
        String::from_utf8_lossy(&a.playlist)
    );
    all_whole_segments(&a);
}

/// A rendition's first segment runs from wherever the audio began to
/// the video's first boundary, so it may pass the length a little (the
/// video's first frame comes tens of ms in); one that misses its split
/// is cut before the packager would refuse it (2.5 s of a 2 s target),
/// and the next boundary brings it back: segment N stays on the
/// video's segment N.
#[test]
fn a_first_audio_segment_is_held_below_the_target() {
    let (v, a) = split_scenario(
        "first",
        |_, _| true,
        |r, k| k % 6 == 0 && !(r == "stereo" && k == 6),
    );
    let text = String::from_utf8_lossy(&a.playlist).into_owned();
    assert_eq!(a.last_segment, v.last_segment, "{text}");
    let extinf: Vec<&str> = text.lines().filter(|l| l.starts_with("#EXTINF")).collect();
    assert_eq!(extinf[0], "#EXTINF:2.33333,", "{text}");
    assert_eq!(extinf[1], "#EXTINF:1.66667,", "{text}");
    assert!(
        extinf[2..].iter().all(|l| *l == "#EXTINF:2.00000,"),
        "{text}"
    );
}
