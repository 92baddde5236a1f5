//! Just enough of ISO BMFF to read what the packager needs: the codec of an
//! init segment, and where a media segment's first (key) frame lies for the
//! I-frame playlists. The walk goes box by box (sizes checked, 64-bit sizes
//! and "to the end" included), never a byte scan that a payload could fool.

/// Boxes whose children are boxes.
const CONTAINERS: &[&[u8; 4]] = &[b"moov", b"trak", b"mdia", b"minf", b"stbl"];

/// One box: its type, its payload, and where it sits.
struct Mp4Box<'a> {
    kind: [u8; 4],
    body: &'a [u8],
    /// Offset of the box (its header) from the start of the walked bytes.
    start: usize,
    /// Offset of its payload, likewise.
    body_start: usize,
}

/// The boxes laid end to end in `data`; stops at the first malformed one.
fn boxes(mut data: &[u8]) -> impl Iterator<Item = Mp4Box<'_>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let head = data.get(..8)?;
        let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as u64;
        let kind = [head[4], head[5], head[6], head[7]];
        let (size, header) = match size32 {
            0 => (data.len() as u64, 8),
            1 => {
                let b = data.get(8..16)?;
                let mut v = [0u8; 8];
                v.copy_from_slice(b);
                (u64::from_be_bytes(v), 16)
            }
            n => (n, 8),
        };
        if size < header as u64 || size > data.len() as u64 {
            data = &[];
            return None;
        }
        let body = &data[header..size as usize];
        data = &data[size as usize..];
        let b = Mp4Box {
            kind,
            body,
            start: at,
            body_start: at + header,
        };
        at += size as usize;
        Some(b)
    })
}

/// The first box of type `path[last]` under `path[..last]`.
fn find<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> Option<&'a [u8]> {
    let (first, rest) = path.split_first()?;
    let b = boxes(data).find(|b| &b.kind == *first)?;
    if rest.is_empty() {
        return Some(b.body);
    }
    if !CONTAINERS.contains(first) && *first != b"stsd" {
        return None;
    }
    find(b.body, rest)
}

/// RFC 6381 codec string of an H.264 init segment, from the `avcC` box of
/// its first video sample entry (profile, constraint flags, level), e.g.
/// `avc1.64001f`.
pub fn avc_codec_string(init: &[u8]) -> Option<String> {
    // stsd: version/flags (4) and entry count (4), then sample entries.
    let stsd = find(
        init,
        &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"],
    )?;
    let entry = boxes(stsd.get(8..)?).find(|b| &b.kind == b"avc1" || &b.kind == b"avc3")?;
    // A visual sample entry has 78 bytes of fields before its child boxes.
    let avcc = boxes(entry.body.get(78..)?).find(|b| &b.kind == b"avcC")?;
    // configurationVersion, then profile, compatibility, level.
    let b = avcc.body.get(1..4)?;
    Some(format!(
        "{}.{:02x}{:02x}{:02x}",
        String::from_utf8_lossy(&entry.kind),
        b[0],
        b[1],
        b[2]
    ))
}

/// A byte range of a file (`EXT-X-BYTERANGE`): `length` bytes from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub offset: u64,
    pub length: u64,
}

/// `sample_is_non_sync_sample` in ISO BMFF sample flags.
const NON_SYNC: u32 = 0x0001_0000;

/// Big-endian fields read in order; `None` past the end.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u32(&mut self) -> Option<u32> {
        let (h, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*h))
    }

    fn u64(&mut self) -> Option<u64> {
        let (h, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_be_bytes(*h))
    }
}

/// What a `tfhd` says about the samples of its track fragment.
struct TrackDefaults {
    base: Option<u64>,
    size: Option<u32>,
    flags: Option<u32>,
}

fn tfhd(body: &[u8]) -> Option<TrackDefaults> {
    let mut f = Fields(body);
    let flags = f.u32()? & 0x00ff_ffff;
    let _track_id = f.u32()?;
    let base = if flags & 0x01 != 0 {
        Some(f.u64()?)
    } else {
        None
    };
    if flags & 0x02 != 0 {
        f.u32()?; // sample description index
    }
    if flags & 0x08 != 0 {
        f.u32()?; // default sample duration
    }
    let size = if flags & 0x10 != 0 {
        Some(f.u32()?)
    } else {
        None
    };
    let sample_flags = if flags & 0x20 != 0 {
        Some(f.u32()?)
    } else {
        None
    };
    Some(TrackDefaults {
        base,
        size,
        flags: sample_flags,
    })
}

/// The first sample of a `trun`: its data offset, size and flags.
fn first_sample(body: &[u8], d: &TrackDefaults) -> Option<(i64, u32, Option<u32>)> {
    let mut f = Fields(body);
    let flags = f.u32()? & 0x00ff_ffff;
    if f.u32()? == 0 {
        return None; // no samples
    }
    // Without a data offset the run's place depends on earlier runs (or
    // on a base that points into the moof itself): not worth guessing.
    if flags & 0x01 == 0 {
        return None;
    }
    let data_offset = f.u32()? as i32 as i64;
    let first_flags = if flags & 0x04 != 0 {
        Some(f.u32()?)
    } else {
        None
    };
    if flags & 0x100 != 0 {
        f.u32()?; // duration
    }
    let size = if flags & 0x200 != 0 {
        Some(f.u32()?)
    } else {
        d.size
    };
    let sample_flags = if flags & 0x400 != 0 {
        Some(f.u32()?)
    } else {
        None
    };
    let flags = first_flags.or(sample_flags).or(d.flags);
    Some((data_offset, size?, flags))
}

/// Where the first frame of a CMAF media segment lies, for an I-frame
/// playlist: from the first `moof` through the `mdat` header to the end
/// of the first sample (RFC 8216bis 4.4.3.6: the byte range must hold the
/// fragment's boxes and the frame). `None` when the boxes are missing or
/// odd, when the sample would fall outside its `mdat`, or when the first
/// sample is flagged as not a sync sample: such a segment is left out.
pub fn iframe_range(segment: &[u8]) -> Option<ByteRange> {
    let mut top = boxes(segment);
    let moof = top.find(|b| &b.kind == b"moof")?;
    // The samples of a CMAF fragment are in the mdat right after it.
    let mdat = top.find(|b| &b.kind == b"mdat")?;
    let traf = boxes(moof.body).find(|b| &b.kind == b"traf")?;
    let defaults = tfhd(boxes(traf.body).find(|b| &b.kind == b"tfhd")?.body)?;
    let trun = boxes(traf.body).find(|b| &b.kind == b"trun")?;
    let (data_offset, size, flags) = first_sample(trun.body, &defaults)?;
    if size == 0 || flags.is_some_and(|f| f & NON_SYNC != 0) {
        return None;
    }
    // Offsets are from the moof unless the tfhd gives a base of its own
    // (CMAF requires default-base-is-moof).
    let base = defaults.base.unwrap_or(moof.start as u64);
    let start = i64::try_from(base).ok()?.checked_add(data_offset)?;
    let start = u64::try_from(start).ok()?;
    let end = start.checked_add(size as u64)?;
    let (data_from, data_to) = (
        mdat.body_start as u64,
        (mdat.body_start + mdat.body.len()) as u64,
    );
    if start < data_from || end > data_to {
        return None;
    }
    Some(ByteRange {
        offset: moof.start as u64,
        length: end - moof.start as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn init(profile: [u8; 3], decoy: bool) -> Vec<u8> {
        let avcc = bx(b"avcC", &[1, profile[0], profile[1], profile[2], 0xff]);
        let mut entry = vec![0u8; 78];
        entry.extend_from_slice(&avcc);
        let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stsd.extend_from_slice(&bx(b"avc1", &entry));
        let stbl = bx(b"stbl", &bx(b"stsd", &stsd));
        let trak = bx(b"trak", &bx(b"mdia", &bx(b"minf", &stbl)));
        // A decoy "avcC" in a box that precedes moov (as a byte scan would
        // find it first): an ftyp brand or a free box's payload.
        let mut out = bx(b"ftyp", b"iso6cmfc");
        if decoy {
            out.extend_from_slice(&bx(b"free", b"xxavcC\x01\x42\x00\x0d"));
        }
        out.extend_from_slice(&bx(b"moov", &trak));
        out
    }

    #[test]
    fn reads_the_avcc_of_the_sample_entry_not_a_lookalike() {
        assert_eq!(
            avc_codec_string(&init([0x64, 0x00, 0x1f], false)).as_deref(),
            Some("avc1.64001f")
        );
        // A byte scan would read the decoy's 42000d.
        assert_eq!(
            avc_codec_string(&init([0x64, 0x00, 0x28], true)).as_deref(),
            Some("avc1.640028")
        );
    }

    #[test]
    fn damaged_inits_give_none_not_a_panic() {
        let good = init([0x64, 0x00, 0x1f], false);
        for cut in 0..good.len() {
            let _ = avc_codec_string(&good[..cut]);
        }
        let mut huge = good.clone();
        // A moov claiming to be larger than the file.
        let at = huge.windows(4).position(|w| w == b"moov").unwrap() - 4;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(avc_codec_string(&huge), None);
        assert_eq!(avc_codec_string(&[]), None);
    }

    /// A CMAF fragment: moof (mfhd, traf (tfhd with default-base-is-moof,
    /// tfdt, trun with data offset, sizes and flags)) then mdat.
    fn fragment(sizes: &[u32], first_flags: u32, offset_fix: i32) -> Vec<u8> {
        let mut trun = vec![0, 0, 0x06, 0x05]; // sizes, flags; data offset, first flags
        trun.extend_from_slice(&(sizes.len() as u32).to_be_bytes());
        let at = trun.len();
        trun.extend_from_slice(&0u32.to_be_bytes()); // data offset, set below
        trun.extend_from_slice(&first_flags.to_be_bytes());
        for s in sizes {
            trun.extend_from_slice(&s.to_be_bytes());
            trun.extend_from_slice(&NON_SYNC.to_be_bytes());
        }
        let tfhd = [0, 0x02, 0, 0, 0, 0, 0, 1]; // default-base-is-moof, track 1
        let build = |trun: &[u8]| {
            let mut traf = bx(b"tfhd", &tfhd);
            traf.extend_from_slice(&bx(b"tfdt", &[0; 8]));
            traf.extend_from_slice(&bx(b"trun", trun));
            let mut moof = bx(b"mfhd", &[0, 0, 0, 0, 0, 0, 0, 1]);
            moof.extend_from_slice(&bx(b"traf", &traf));
            bx(b"moof", &moof)
        };
        let moof_len = build(&trun).len() as i32;
        // The first sample starts right after the mdat header.
        trun[at..at + 4].copy_from_slice(&(moof_len + 8 + offset_fix).to_be_bytes());
        let mut out = build(&trun);
        let payload: Vec<u8> = sizes
            .iter()
            .enumerate()
            .flat_map(|(i, s)| vec![i as u8; *s as usize])
            .collect();
        out.extend_from_slice(&bx(b"mdat", &payload));
        out
    }

    #[test]
    fn the_iframe_range_covers_moof_mdat_header_and_first_sample() {
        let f = fragment(&[100, 20, 30], 0, 0);
        let moof_len = f.len() as u64 - 8 - 150;
        assert_eq!(
            iframe_range(&f),
            Some(ByteRange {
                offset: 0,
                length: moof_len + 8 + 100
            })
        );
        // A styp before the fragment moves the range, not its length.
        let mut with_styp = bx(b"styp", b"cmfs");
        with_styp.extend_from_slice(&f);
        assert_eq!(
            iframe_range(&with_styp),
            Some(ByteRange {
                offset: 12,
                length: moof_len + 8 + 100
            })
        );
        // A second fragment (the segment's next chunk) changes nothing.
        let mut two = f.clone();
        two.extend_from_slice(&fragment(&[7], NON_SYNC, 0));
        assert_eq!(iframe_range(&two), iframe_range(&f));
    }

    #[test]
    fn odd_segments_give_no_range_and_never_panic() {
        // First sample flagged non-sync: not an I-frame.
        assert_eq!(iframe_range(&fragment(&[100], NON_SYNC, 0)), None);
        // A data offset pointing before the mdat's payload or past its end.
        assert_eq!(iframe_range(&fragment(&[100], 0, -4)), None);
        assert_eq!(iframe_range(&fragment(&[100], 0, 1)), None);
        // No mdat, no moof.
        let f = fragment(&[100, 20], 0, 0);
        let moof_len = f.len() - 8 - 120;
        assert_eq!(iframe_range(&f[..moof_len]), None);
        assert_eq!(iframe_range(&bx(b"mdat", &[0; 10])), None);
        for cut in 0..f.len() {
            let _ = iframe_range(&f[..cut]);
        }
        let mut flipped = f.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = iframe_range(&flipped);
            flipped[i] ^= 0xff;
        }
    }
}
