//! Presets are files a technician edits by hand: no preset, however broken,
//! may panic the daemon. Random text and mutations of the shipped presets
//! (a value swapped for a hostile one, a line dropped or repeated) go
//! through `PipelineSpec::parse`; whatever parses is then built into a real
//! GStreamer pipeline, which must succeed or fail with an error, never
//! panic (GStreamer's `set_property_from_str` used to abort the start on an
//! unknown test pattern or DeckLink mode).

use proptest::prelude::*;
use studiocast_media::{event_queue, BuildOptions, PipelineSpec, SessionPipeline};
use studiocast_spatial::{DecoderMethod, ShFilters};

fn shipped() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    v.sort();
    assert!(v.len() >= 5, "the shipped presets are missing");
    v
}

/// Values that have broken parsers and builders elsewhere.
const HOSTILE: &[&str] = &[
    "\"\"",
    "\"no-such-pattern\"",
    "\"1080p26\"",
    "\"auto\"",
    "\"../../etc/passwd\"",
    "\"/dev/null\"",
    "\"a\\u0000b\"",
    "\"line\\nbreak\"",
    "\"quote\\\"inside\"",
    "\"é𝄞\"",
    "0",
    "-1",
    "1",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "1e308",
    "-0.0",
    "nan",
    "inf",
    "true",
    "[]",
    "{}",
    "{ kind = \"srt\", mode = \"listener\", port = 65535 }",
    "{ kind = \"decklink\", mode = \"nope\" }",
    "{ kind = \"test-pattern\", pattern = \"ball\" }",
    "{ kind = \"v4l2\", device = \"/dev/video99\" }",
    "{ kind = \"embedded\", channels = 65535 }",
    "{ first_channel = 65535, layout = \"7.1.4\" }",
    "{ first_channel = 0, order = 7 }",
];

/// Mutate line `line`: replace its whole value (`key = value`) or one of
/// the values inside it (a quoted string or a number, so keys nested in
/// inline tables are reached) with `HOSTILE[value]`, or drop or repeat it.
fn mutate(text: &str, line: usize, value: usize, how: u8) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let i = line % lines.len().max(1);
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let hostile = HOSTILE[value % HOSTILE.len()];
    match how % 4 {
        0 => {
            if let Some((k, _)) = lines[i].split_once('=') {
                out[i] = format!("{k}= {hostile}");
            }
        }
        1 => {
            // The n-th value after an `=` inside the line.
            let eqs: Vec<usize> = lines[i].match_indices("= ").map(|(p, _)| p + 2).collect();
            if !eqs.is_empty() {
                let at = eqs[(how as usize / 4) % eqs.len()];
                let rest = &lines[i][at..];
                let end = if let Some(r) = rest.strip_prefix('"') {
                    r.find('"').map_or(rest.len(), |e| e + 2)
                } else {
                    rest.find([',', ' ', '}']).unwrap_or(rest.len())
                };
                out[i] = format!("{}{hostile}{}", &lines[i][..at], &rest[end..]);
            }
        }
        2 => {
            out.remove(i);
        }
        _ => out.insert(i, lines[i].to_string()),
    }
    out.join("\n")
}

fn filters(order: usize) -> ShFilters {
    let k = (order + 1) * (order + 1);
    ShFilters {
        order,
        sample_rate: 48_000,
        taps: 16,
        symmetric: true,
        left: vec![vec![0.0; 16]; k],
        right: vec![vec![0.0; 16]; k],
        method: DecoderMethod::Ls,
    }
}

/// Build what parsed (not started: nothing is opened or played).
fn build(spec: &PipelineSpec) {
    let (tx, _rx, _) = event_queue(1 << 20);
    let f = filters(spec.audio.source.order());
    let _ = SessionPipeline::build(spec, &f, &BuildOptions::default(), tx);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,400}") {
        let _ = PipelineSpec::parse(&text);
    }

    #[test]
    fn mutated_presets_never_panic(
        which in 0usize..16, line in 0usize..200, value in 0usize..64, how in any::<u8>(),
        second in 0usize..200, value2 in 0usize..64,
    ) {
        let presets = shipped();
        let base = &presets[which % presets.len()];
        let once = mutate(base, line, value, how);
        let twice = mutate(&once, second, value2, 0);
        for text in [once, twice] {
            if let Ok(spec) = PipelineSpec::parse(&text) {
                build(&spec);
            }
        }
    }
}

/// Every single mutation, exhaustively: each value of each line of each
/// shipped preset (nested ones included) swapped for each hostile value,
/// and each line dropped or repeated. Random sampling alone reaches a given
/// nested key too rarely to be trusted.
#[test]
fn every_single_mutation_of_the_shipped_presets_is_refused_or_builds() {
    let mut tried = 0;
    for base in shipped() {
        let lines = base.lines().count();
        for line in 0..lines {
            let eqs = base.lines().nth(line).unwrap_or("").matches("= ").count();
            for value in 0..HOSTILE.len() {
                // Whole value, then each inner value.
                let mut hows = vec![0u8];
                hows.extend((0..eqs).map(|k| 1 + 4 * k as u8));
                for how in hows {
                    let text = mutate(&base, line, value, how);
                    if let Ok(spec) = PipelineSpec::parse(&text) {
                        build(&spec);
                    }
                    tried += 1;
                }
            }
            for how in [2u8, 3] {
                if let Ok(spec) = PipelineSpec::parse(&mutate(&base, line, 0, how)) {
                    build(&spec);
                }
                tried += 1;
            }
        }
    }
    eprintln!("{tried} mutated presets parsed and, when valid, built");
}

/// The two strings that used to panic in the build are refused at load,
/// with the reason.
#[test]
fn unknown_pattern_and_decklink_mode_are_refused_when_the_preset_loads() {
    let presets = shipped();
    let demo = presets
        .iter()
        .find(|p| p.contains("name = \"demo\""))
        .unwrap();
    let bad = demo.replace("pattern = \"smpte\"", "pattern = \"smtpe\"");
    assert_ne!(&bad, demo, "the demo preset changed shape");
    let e = PipelineSpec::parse(&bad).unwrap_err().to_string();
    assert!(e.contains("test pattern 'smtpe' is unknown"), "{e}");
    let sdi = presets
        .iter()
        .find(|p| p.contains("kind = \"decklink\""))
        .unwrap();
    let bad = sdi.replace("mode = \"", "mode = \"x");
    assert_ne!(&bad, sdi, "the SDI preset changed shape");
    let e = PipelineSpec::parse(&bad).unwrap_err().to_string();
    assert!(e.contains("DeckLink mode 'x"), "{e}");
}
