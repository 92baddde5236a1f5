//! File layout of one session and the mapping from playback URLs to files.
//!
//! ```text
//! master.m3u8           live multivariant playlist (any player's)
//! master-player.m3u8    the same with every rendition (the embedded player's)
//! master-vod.m3u8, master-player-vod.m3u8   the VOD ones (after the end)
//! <rendition>/init.mp4, <rendition>/init-1.mp4 … (after a change of init)
//! <rendition>/seg000001.m4s …
//! <rendition>/live.m3u8, <rendition>/vod.m3u8
//! <rendition>/iframes.m3u8   I-frame playlist of a video rendition (VOD)
//! poster.jpg            a transcoded lesson's poster frame
//! downloads/<rendition>.m4a  a transcoded lesson's audio as one file
//! ```
//! Playlists refer to `<rendition>/index.m3u8`, which resolves to
//! `live.m3u8` under `/live/…` and `vod.m3u8` under `/vod/…`. Parts
//! (`seg000012.p3.m4s`) live in memory only; they resolve like segments,
//! and a file that is not there is a 404.

/// Which listing a URL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Live,
    Vod,
}

/// `init.mp4`, or `init-N.mp4` after a change of init.
fn is_init(f: &str) -> bool {
    f == "init.mp4"
        || f.strip_prefix("init-")
            .and_then(|n| n.strip_suffix(".mp4"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Map a request path (below `/live/{id}/` or `/vod/{id}/`) to a file path
/// relative to the session folder. Anything that is not a known name is
/// `None`, so traversal (`..`, absolute paths, odd characters) never reaches
/// the file system.
pub fn resolve(listing: Listing, rel: &str) -> Option<String> {
    let parts: Vec<&str> = rel.split('/').collect();
    let safe = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    };
    match parts.as_slice() {
        ["master.m3u8"] => Some(match listing {
            Listing::Live => "master.m3u8".into(),
            Listing::Vod => "master-vod.m3u8".into(),
        }),
        ["master-player.m3u8"] => Some(match listing {
            Listing::Live => "master-player.m3u8".into(),
            Listing::Vod => "master-player-vod.m3u8".into(),
        }),
        [r, "index.m3u8"] if safe(r) => Some(format!(
            "{r}/{}",
            match listing {
                Listing::Live => "live.m3u8",
                Listing::Vod => "vod.m3u8",
            }
        )),
        [r, "iframes.m3u8"] if safe(r) && listing == Listing::Vod => {
            Some(format!("{r}/iframes.m3u8"))
        }
        // A lesson's poster frame (a transcoded file with a picture).
        ["poster.jpg"] if listing == Listing::Vod => Some("poster.jpg".into()),
        // A finished lesson's renditions as single files.
        ["download", f] if safe(f) && f.ends_with(".m4a") && listing == Listing::Vod => {
            Some(format!("downloads/{f}"))
        }
        [r, f] if safe(r) && safe(f) && (f.ends_with(".m4s") || is_init(f)) => {
            Some(format!("{r}/{f}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_never_resolves() {
        for bad in [
            "../x",
            "video/../../etc/passwd",
            "/etc/passwd",
            "video/..",
            "..%2f",
            "video/.hidden.m4s",
            "video/seg1.m4s/extra",
            "",
            "video/",
            "video/live.m3u8",
            "a\\b/seg.m4s",
            "video/seg.mp4",
            "video/iframes.m3u8",
            "video/seg000001.p1.m4s/x",
            "video/.p1.m4s",
            "../seg000001.p1.m4s",
        ] {
            assert_eq!(resolve(Listing::Live, bad), None, "{bad}");
        }
        assert_eq!(
            resolve(Listing::Vod, "video/index.m3u8").as_deref(),
            Some("video/vod.m3u8")
        );
        assert_eq!(
            resolve(Listing::Live, "binaural/seg000003.m4s").as_deref(),
            Some("binaural/seg000003.m4s")
        );
        assert_eq!(
            resolve(Listing::Vod, "master.m3u8").as_deref(),
            Some("master-vod.m3u8")
        );
        assert_eq!(
            resolve(Listing::Live, "master-player.m3u8").as_deref(),
            Some("master-player.m3u8")
        );
        assert_eq!(
            resolve(Listing::Vod, "master-player.m3u8").as_deref(),
            Some("master-player-vod.m3u8")
        );
        assert_eq!(
            resolve(Listing::Vod, "poster.jpg").as_deref(),
            Some("poster.jpg")
        );
        assert_eq!(resolve(Listing::Live, "poster.jpg"), None);
        assert_eq!(resolve(Listing::Vod, "x/poster.jpg"), None);
        // Parts resolve like any segment (the origin serves them from
        // memory; a name it does not hold is a 404).
        assert_eq!(
            resolve(Listing::Live, "v720/seg000012.p3.m4s").as_deref(),
            Some("v720/seg000012.p3.m4s")
        );
        // A changed init has a name of its own, which EXT-X-MAP names.
        assert_eq!(
            resolve(Listing::Vod, "video/init-1.mp4").as_deref(),
            Some("video/init-1.mp4")
        );
        for bad in [
            "video/init-.mp4",
            "video/init-x.mp4",
            "video/init-1.mp4.tmp",
        ] {
            assert_eq!(resolve(Listing::Vod, bad), None, "{bad}");
        }
        // A lesson's downloads: VOD only, .m4a only, no hidden names.
        assert_eq!(
            resolve(Listing::Vod, "download/binaural.m4a").as_deref(),
            Some("downloads/binaural.m4a")
        );
        for bad in ["download/binaural.m4a", "download/../x.m4a"] {
            assert_eq!(resolve(Listing::Live, bad), None, "{bad}");
        }
        for bad in ["download/.x.m4a", "download/x.mp3", "download/a/b.m4a"] {
            assert_eq!(resolve(Listing::Vod, bad), None, "{bad}");
        }
        // I-frame playlists exist for the VOD only.
        assert_eq!(
            resolve(Listing::Vod, "v720/iframes.m3u8").as_deref(),
            Some("v720/iframes.m3u8")
        );
        assert_eq!(resolve(Listing::Vod, "../iframes.m3u8"), None);
    }
}
