//! Just enough of ISO BMFF to read what the packager needs from an init
//! segment: the walk goes box by box (sizes checked, 64-bit sizes and
//! "to the end" included), never a byte scan that a payload could fool.

/// Boxes whose children are boxes.
const CONTAINERS: &[&[u8; 4]] = &[b"moov", b"trak", b"mdia", b"minf", b"stbl"];

/// One box: its type and its payload.
struct Mp4Box<'a> {
    kind: [u8; 4],
    body: &'a [u8],
}

/// The boxes laid end to end in `data`; stops at the first malformed one.
fn boxes(mut data: &[u8]) -> impl Iterator<Item = Mp4Box<'_>> {
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
        Some(Mp4Box { kind, body })
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
}
