//! Probing a file for a picture never hands a WAV to GStreamer: its WAV
//! parser aborts the process on a chunk of 2 GiB or more (a g_assert), as
//! any WAV over 4 GiB written without RF64 has after its wrapped size.

use std::io::Write;

use studiocast_media::probe_video;

/// A 3 GiB sparse WAV (a few KiB on disk): 400 bytes of audio, then a
/// chunk header claiming 2.25 GiB, which is within the file.
fn huge_chunk_wav(path: &std::path::Path, form: &[u8; 4]) {
    let mut fmt = Vec::new();
    for v in [1u16, 2] {
        fmt.extend_from_slice(&v.to_le_bytes());
    }
    fmt.extend_from_slice(&48_000u32.to_le_bytes());
    fmt.extend_from_slice(&(48_000u32 * 4).to_le_bytes());
    for v in [4u16, 16] {
        fmt.extend_from_slice(&v.to_le_bytes());
    }
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(form).unwrap();
    f.write_all(&u32::MAX.to_le_bytes()).unwrap();
    f.write_all(b"WAVEfmt ").unwrap();
    f.write_all(&16u32.to_le_bytes()).unwrap();
    f.write_all(&fmt).unwrap();
    f.write_all(b"data").unwrap();
    f.write_all(&400u32.to_le_bytes()).unwrap();
    f.write_all(&[1u8; 400]).unwrap();
    f.write_all(b"abcd").unwrap();
    f.write_all(&0x9000_0000u32.to_le_bytes()).unwrap();
    f.set_len(3 << 30).unwrap();
}

#[test]
fn a_wav_with_a_huge_chunk_is_not_probed_by_gstreamer() {
    let dir = std::env::temp_dir().join(format!("sc-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for form in [b"RIFF", b"RF64"] {
        let p = dir.join("huge.wav");
        huge_chunk_wav(&p, form);
        // Before the sniff, this aborted the test process.
        assert!(probe_video(&p).unwrap().is_none());
        assert!(studiocast_media::pipeline::audio_only_container(&p));
    }
    // Not a WAV (AVI is RIFF too): left to GStreamer, which finds no picture
    // in this one.
    let p = dir.join("x.avi");
    std::fs::write(&p, b"RIFF\x04\0\0\0AVI ").unwrap();
    assert!(!studiocast_media::pipeline::audio_only_container(&p));
    std::fs::remove_dir_all(&dir).unwrap();
}
