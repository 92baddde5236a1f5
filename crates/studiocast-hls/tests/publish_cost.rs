//! What a publish costs with a full two-hour DVR window: three
//! renditions, 3600 segments each, parts of 1/3 s, one publish per part
//! per rendition (about 9 publishes a second in all).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::ll::parse;
use common::*;
use studiocast_hls::PackagerConfig;

#[test]
fn publishing_a_two_hour_window_is_cheap() {
    let config = PackagerConfig {
        part_target: Some(0.333),
        dvr_seconds: 7200,
        memory_segments: 12,
        target_duration: 2,
    };
    let mut s = LlStream::new(config, renditions());
    s.steps(7200 * 3 + 3);
    s.p.take_changed();
    let pl = parse(&s.playlist("video"));
    assert!(pl.complete().count() >= 3600, "a full window");
    let (mut views, mut n) = (Duration::ZERO, 0u32);
    let mut bytes = 0;
    for _ in 0..300 {
        s.step();
        for id in s.p.take_changed() {
            let t = Instant::now();
            let v = black_box(s.p.view(&id).unwrap());
            views += t.elapsed();
            n += 1;
            bytes = bytes.max(v.playlist.len());
        }
    }
    // For scale: formatting every line afresh (the VOD renderer does).
    let t = Instant::now();
    let vod = black_box(s.p.media_playlist("video", true).unwrap());
    let fresh = t.elapsed();
    let per = views / n;
    println!(
        "publish (full + delta playlists, files map) with a 2 h window: {per:?} \
         per rendition ({n} publishes, playlist {bytes} bytes); \
         formatting all {} lines afresh: {fresh:?}",
        vod.lines().count()
    );
    // A loose bound (debug build, shared CI machine): the point is that a
    // publish does not format thousands of lines.
    assert!(per < Duration::from_millis(20), "{per:?}");
}
