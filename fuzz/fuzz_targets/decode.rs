//! The decode path a transcode job takes, on arbitrary bytes: open the
//! file (our WAV/RF64/W64 reader, else symphonia), then read it to the end.
//! The first byte picks the file name's extension, since symphonia takes
//! it as a hint. libFuzzer's -malloc_limit_mb (benches/fuzz.sh) turns an
//! allocation a hostile header asked for into a crash.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

const EXTENSIONS: [&str; 8] = ["wav", "w64", "flac", "m4a", "mp3", "ogg", "mkv", "caf"];

fuzz_target!(
    init: {
        // libfuzzer-sys aborts on any panic, even one the decode path
        // catches (it guards symphonia, whose parsers can panic): back to
        // the default hook, so that only a panic that escapes the decode
        // path (and reaches libfuzzer-sys's own catch, which aborts) is a
        // crash.
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let ext = EXTENSIONS[pick as usize % EXTENSIONS.len()];
    // tmpfs: the path API is what the job uses.
    let path = std::path::PathBuf::from(format!(
        "/dev/shm/studiocast-fuzz-{}.{ext}",
        std::process::id()
    ));
    let Ok(mut f) = std::fs::File::create(&path) else {
        return;
    };
    if f.write_all(bytes).is_err() {
        return;
    }
    drop(f);
    if let Ok(mut src) = studiocast_audiofile::open(&path) {
        let mut out = vec![Vec::new(); src.channels()];
        // A budget: a reader that never ends shows as a timeout.
        for _ in 0..10_000 {
            match src.read_planar(4096, &mut out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    }
);
