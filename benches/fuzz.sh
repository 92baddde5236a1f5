#!/usr/bin/env bash
# benches/fuzz.sh - the transcode decode path under libFuzzer (cargo-fuzz)
# for a bounded time: fuzz/fuzz_targets/decode.rs opens and reads whatever
# bytes it is given as WAV, W64, FLAC, M4A, MP3, Ogg, MKV or CAF. A panic,
# an allocation over 256 MB (-malloc_limit_mb), more than 2 GB resident or
# a 10 s input is a failure, and the input is kept in fuzz/artifacts/.
# The seeds are small valid files made with ffmpeg. CI runs the
# deterministic mutation test (crates/studiocast-audiofile/tests/
# mutations.rs) instead; this goes further when there is time.
#
#   bash benches/fuzz.sh [SECONDS]      (default 120)
# cargo-fuzz is installed from crates.io when missing. libFuzzer needs
# nightly-only flags: RUSTC_BOOTSTRAP lets the stable toolchain take them.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-120}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
CORPUS=fuzz/corpus/decode
mkdir -p "$CORPUS"
if [[ -z $(ls -A "$CORPUS") ]]; then
  SRC=$(mktemp --suffix=.wav)
  ffmpeg -nostdin -loglevel error -y -f lavfi -i "sine=f=440:d=0.3" -ac 2 -ar 48000 "$SRC"
  for spec in "wav:-c:a pcm_s16le" "w64:-c:a pcm_f32le -f w64" "flac:-c:a flac" \
              "m4a:-c:a aac -b:a 64k" "mp3:-c:a libmp3lame -b:a 64k" "ogg:-c:a libvorbis" \
              "mkv:-c:a flac" "caf:-c:a pcm_s24le"; do
    ext=${spec%%:*}; args=${spec#*:}
    # shellcheck disable=SC2086 # the codec arguments split on purpose
    ffmpeg -nostdin -loglevel error -y -i "$SRC" $args "$CORPUS/seed.$ext"
  done
  rm -f "$SRC"
  # The target takes its extension from the first byte: prefix each seed
  # with the byte that names its own.
  i=0
  for ext in wav w64 flac m4a mp3 ogg mkv caf; do
    { printf "\\x$(printf %02x $i)"; cat "$CORPUS/seed.$ext"; } > "$CORPUS/seed-$ext"
    rm "$CORPUS/seed.$ext"
    i=$((i + 1))
  done
fi
RUSTC_BOOTSTRAP=1 cargo fuzz run decode "$CORPUS" -- \
  -max_total_time="$SECS" -malloc_limit_mb=256 -rss_limit_mb=2048 -timeout=10 \
  -print_final_stats=1 2>&1 | tail -25
