//! Private lessons: who may play what.
//!
//! A lesson (a session or a job's output) is `public` or `private`. Its
//! folder holds the answer in [`ACCESS_FILE`], written by the daemon before
//! any of its media can be fetched, so the origin knows it for live and VOD
//! alike, after a restart, and for lessons another daemon wrote into a
//! shared folder. A private lesson's every URL needs a playback token:
//! `?token=` with an expiry and an HMAC-SHA256 over the lesson id and that
//! expiry, made by [`PlaybackKey::mint`]. Playlists of a private lesson
//! carry the caller's token into each URI they list, so players that do
//! not copy query strings to child requests (Safari's) still send it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The file in a lesson's folder that says who may play it.
pub const ACCESS_FILE: &str = "access.json";
/// Longest `access.json` read; anything larger is not ours.
const MAX_ACCESS_BYTES: u64 = 4096;
/// Lessons whose visibility is remembered; the table starts again past it.
const CACHE_CAP: usize = 65_536;
/// Longest token lifetime a caller may ask for: 7 days.
pub const MAX_TOKEN_TTL_S: u64 = 7 * 24 * 3600;
/// Lifetime when the caller does not say: 4 hours (a long lesson, watched
/// late).
pub const DEFAULT_TOKEN_TTL_S: u64 = 4 * 3600;

/// Who may play a lesson.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Anyone with the URL, as a public video.
    #[default]
    Public,
    /// Only with a playback token. (`campus`, a value of the job spec
    /// before private lessons existed, means the same.)
    #[serde(alias = "campus")]
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }
}

/// What [`ACCESS_FILE`] holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccessRecord {
    pub visibility: Visibility,
}

/// Write a lesson's [`ACCESS_FILE`] into `dir` (whole, or not at all).
pub fn write_access(dir: &Path, visibility: Visibility) -> std::io::Result<()> {
    let tmp = dir.join(".access.json.tmp");
    let body = serde_json::to_vec(&AccessRecord { visibility }).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, body)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(ACCESS_FILE))
}

/// The secret playback tokens are signed with. Its `Debug` never shows it.
#[derive(Clone)]
pub struct PlaybackKey(Arc<[u8]>);

impl std::fmt::Debug for PlaybackKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlaybackKey(<redacted>)")
    }
}

/// Why a token was refused; only ever logged at debug level, never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    Expired,
    /// Tampered with, or minted for another lesson or with another key.
    BadSignature,
}

impl PlaybackKey {
    /// At least 16 bytes of secret.
    pub fn new(secret: &[u8]) -> Option<PlaybackKey> {
        (secret.len() >= 16).then(|| PlaybackKey(Arc::from(secret)))
    }

    fn mac(&self, id: &str, expires: u64) -> String {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        // The id cannot contain NUL (checked ids are [A-Za-z0-9_-]), so the
        // message is unambiguous.
        m.update(b"studiocast-playback-v1\0");
        m.update(id.as_bytes());
        m.update(b"\0");
        m.update(expires.to_string().as_bytes());
        hex(&m.finalize().into_bytes())
    }

    /// A token for lesson `id`, valid until `expires` (Unix seconds).
    pub fn mint(&self, id: &str, expires: u64) -> String {
        format!("{expires}.{}", self.mac(id, expires))
    }

    /// Whether `token` opens lesson `id` at `now` (Unix seconds). The
    /// signature is compared in constant time.
    pub fn verify(&self, id: &str, token: Option<&str>, now: u64) -> Result<(), Refusal> {
        let token = token.ok_or(Refusal::Missing)?;
        let (exp, sig) = token.split_once('.').ok_or(Refusal::Malformed)?;
        if exp.is_empty() || exp.len() > 20 || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Refusal::Malformed);
        }
        let expires: u64 = exp.parse().map_err(|_| Refusal::Malformed)?;
        if sig.len() != 64 {
            return Err(Refusal::Malformed);
        }
        // Checked before the expiry, so that a forged token learns nothing
        // from which answer comes faster.
        let good = self.mac(id, expires);
        if !bool::from(good.as_bytes().ct_eq(sig.as_bytes())) {
            return Err(Refusal::BadSignature);
        }
        if expires <= now {
            return Err(Refusal::Expired);
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `token` parameter of a query string, if any.
pub fn token_of(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .filter(|t| !t.is_empty())
}

/// Each lesson's visibility, read once from its folder. Only what a file
/// said is remembered: a lesson without the file yet (a job whose output
/// is not published) is asked again next time, so it cannot be remembered
/// as public before its file appears.
#[derive(Default)]
pub(crate) struct AccessCache {
    known: Mutex<HashMap<String, Visibility>>,
}

impl AccessCache {
    /// The visibility of the lesson in `folder`. No file: public (lessons
    /// from before private ones existed). A file that cannot be read or
    /// parsed: private, so a damaged file never opens a lesson.
    /// `folder` is only built when the answer is not known yet (a cache
    /// hit allocates nothing: this runs on every playback request).
    pub(crate) fn visibility(&self, id: &str, folder: impl FnOnce() -> PathBuf) -> Visibility {
        if let Some(v) = self.lock().get(id) {
            return *v;
        }
        let folder = folder();
        let folder_exists = std::fs::symlink_metadata(&folder).is_ok_and(|m| m.is_dir());
        match read_access(&folder) {
            Ok(Some(v)) => {
                self.remember(id, v);
                v
            }
            // A lesson's folder appears with its access file in it (a job's
            // by one rename, a session's likewise): a folder without one is
            // from before access files, public for good. No folder yet: not
            // remembered, it may appear private.
            Ok(None) => {
                if folder_exists {
                    self.remember(id, Visibility::Public);
                }
                Visibility::Public
            }
            Err(e) => {
                tracing::warn!(lesson = %id, error = %e, "unreadable access file: treated as private");
                Visibility::Private
            }
        }
    }

    fn remember(&self, id: &str, v: Visibility) {
        let mut known = self.lock();
        if known.len() >= CACHE_CAP {
            known.clear();
        }
        known.insert(id.to_string(), v);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Visibility>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn read_access(folder: &Path) -> std::io::Result<Option<Visibility>> {
    use std::io::Read;
    let path = folder.join(ACCESS_FILE);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !meta.is_file() || meta.len() > MAX_ACCESS_BYTES {
        return Err(std::io::Error::other("not a small regular file"));
    }
    let mut body = Vec::new();
    std::fs::File::open(&path)?
        .take(MAX_ACCESS_BYTES)
        .read_to_end(&mut body)?;
    let r: AccessRecord = serde_json::from_slice(&body).map_err(std::io::Error::other)?;
    Ok(Some(r.visibility))
}

/// `playlist` with `token` carried into every URI it lists: the URI lines
/// and the `URI="…"` attributes (maps, parts, preload hints, rendition
/// reports, media and I-frame playlists). Tokens are `[0-9a-f.]` only, so
/// they need no escaping.
pub fn with_token(playlist: &str, token: &str) -> String {
    let mut out = String::with_capacity(playlist.len() + 64 * 16);
    for line in playlist.split_inclusive('\n') {
        let (text, ending) = line.split_at(line.trim_end_matches(['\r', '\n']).len());
        if text.trim().is_empty() {
            out.push_str(line);
            continue;
        }
        if !text.starts_with('#') {
            push_uri(&mut out, text, token);
        } else {
            let mut rest = text;
            while let Some(at) = rest.find("URI=\"") {
                let open = at + 5;
                out.push_str(&rest[..open]);
                let Some(close) = rest[open..].find('"') else {
                    rest = &rest[open..];
                    break;
                };
                // `URI=` as an attribute of its own (after `:` or `,`), not
                // the end of another's name (`X-ASSET-URI`).
                let attribute = at == 0 || matches!(rest.as_bytes()[at - 1], b':' | b',');
                let uri = &rest[open..open + close];
                if attribute {
                    push_uri(&mut out, uri, token);
                } else {
                    out.push_str(uri);
                }
                rest = &rest[open + close..];
            }
            out.push_str(rest);
        }
        out.push_str(ending);
    }
    out
}

/// A relative URI gets the token; an absolute one (a scheme: another host,
/// `data:`, a key server's `skd:`) is left alone, so the token never leaves
/// for elsewhere.
fn push_uri(out: &mut String, uri: &str, token: &str) {
    out.push_str(uri);
    let scheme = uri
        .find(':')
        .is_some_and(|c| !uri[..c].contains(['/', '?', '#']));
    if scheme {
        return;
    }
    out.push(if uri.contains('?') { '&' } else { '?' });
    out.push_str("token=");
    out.push_str(token);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PlaybackKey {
        PlaybackKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn a_token_opens_its_lesson_until_it_expires() {
        let k = key();
        let t = k.mint("abc", 1000);
        assert_eq!(k.verify("abc", Some(&t), 999), Ok(()));
        assert_eq!(k.verify("abc", Some(&t), 1000), Err(Refusal::Expired));
        assert_eq!(k.verify("abd", Some(&t), 10), Err(Refusal::BadSignature));
        assert_eq!(k.verify("abc", None, 10), Err(Refusal::Missing));
        // Another key, a longer expiry with the old signature, a changed
        // signature, rubbish.
        let other = PlaybackKey::new(b"another secret of 32 bytes......").unwrap();
        assert_eq!(
            other.verify("abc", Some(&t), 10),
            Err(Refusal::BadSignature)
        );
        let (_, sig) = t.split_once('.').unwrap();
        let later = format!("2000.{sig}");
        assert_eq!(
            k.verify("abc", Some(&later), 1500),
            Err(Refusal::BadSignature)
        );
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            k.verify("abc", Some(&flipped), 10),
            Err(Refusal::BadSignature)
        );
        for bad in [
            "",
            ".",
            "1000",
            "x.y",
            "-1.aa",
            "1000.zz",
            "99999999999999999999999.aa",
        ] {
            assert_eq!(
                k.verify("abc", Some(bad), 10),
                Err(Refusal::Malformed),
                "{bad}"
            );
        }
        assert!(PlaybackKey::new(b"short").is_none());
        assert_eq!(format!("{k:?}"), "PlaybackKey(<redacted>)");
    }

    #[test]
    fn the_token_comes_from_the_query() {
        assert_eq!(
            token_of(Some("_HLS_msn=3&token=1.ab&_HLS_part=1")),
            Some("1.ab")
        );
        assert_eq!(token_of(Some("token=")), None);
        assert_eq!(token_of(Some("xtoken=1")), None);
        assert_eq!(token_of(None), None);
    }

    #[test]
    fn every_uri_of_a_playlist_carries_the_token() {
        let p = "#EXTM3U\r\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-PART:DURATION=0.33,URI=\"p1.m4s\",INDEPENDENT=YES\n\
                 #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p2.m4s\"\n#EXTINF:2.0,\nseg1.m4s\n\n\
                 #EXT-X-RENDITION-REPORT:URI=\"../360p/index.m3u8\",LAST-MSN=1\n\
                 #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"B\",URI=\"binaural/index.m3u8?x=1\"\n\
                 #EXT-X-STREAM-INF:BANDWIDTH=1\n720p/index.m3u8\n  \n\
                 #EXT-X-SESSION-DATA:DATA-ID=\"x\",X-ASSET-URI=\"a.json\"\n\
                 #EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://key\"\nhttps://cdn.example/seg.m4s";
        let t = with_token(p, "9.ff");
        assert_eq!(
            t,
            "#EXTM3U\r\n#EXT-X-MAP:URI=\"init.mp4?token=9.ff\"\n\
             #EXT-X-PART:DURATION=0.33,URI=\"p1.m4s?token=9.ff\",INDEPENDENT=YES\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p2.m4s?token=9.ff\"\n#EXTINF:2.0,\nseg1.m4s?token=9.ff\n\n\
             #EXT-X-RENDITION-REPORT:URI=\"../360p/index.m3u8?token=9.ff\",LAST-MSN=1\n\
             #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"B\",URI=\"binaural/index.m3u8?x=1&token=9.ff\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1\n720p/index.m3u8?token=9.ff\n  \n\
             #EXT-X-SESSION-DATA:DATA-ID=\"x\",X-ASSET-URI=\"a.json\"\n\
             #EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://key\"\nhttps://cdn.example/seg.m4s"
        );
    }

    #[test]
    fn a_folder_says_who_may_play() {
        let d = std::env::temp_dir().join(format!("sc-access-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let cache = AccessCache::default();
        // No folder yet: public, and not remembered.
        let a = d.join("a");
        assert_eq!(cache.visibility("a", || a.clone()), Visibility::Public);
        std::fs::create_dir_all(&a).unwrap();
        write_access(&a, Visibility::Private).unwrap();
        assert_eq!(cache.visibility("a", || a.clone()), Visibility::Private);
        // A folder without the file: from before access files, public for
        // good (remembered: a file appearing later changes nothing).
        let old = d.join("old");
        std::fs::create_dir_all(&old).unwrap();
        assert_eq!(cache.visibility("old", || old.clone()), Visibility::Public);
        write_access(&old, Visibility::Private).unwrap();
        assert_eq!(cache.visibility("old", || old.clone()), Visibility::Public);
        // Damaged: private.
        let e = d.join("e");
        std::fs::create_dir_all(&e).unwrap();
        std::fs::write(e.join(ACCESS_FILE), b"{\"visibility\":\"open\"}").unwrap();
        assert_eq!(cache.visibility("e", || e.clone()), Visibility::Private);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
