//! A published media segment, as the playlists and the journal record it.

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Segment {
    /// Media sequence number.
    pub(crate) seq: u64,
    /// Seconds.
    pub(crate) duration: f64,
    /// Capture time of the first sample, ms since the Unix epoch.
    pub(crate) pdt_ms: Option<i64>,
    /// An `EXT-X-DISCONTINUITY` goes before it.
    pub(crate) discontinuity: bool,
    /// Its initialisation segment (`EXT-X-MAP`).
    pub(crate) map: String,
}

impl Segment {
    /// The segment's file, relative to its rendition's folder.
    pub(crate) fn uri(&self) -> String {
        format!("seg{:06}.m4s", self.seq)
    }
}
