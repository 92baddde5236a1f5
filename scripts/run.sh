#!/usr/bin/env bash
# Set up, build, and run the main job: render the demo third-order ambisonic
# scene to binaural stereo and print the accuracy report of the engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p studiocast
bash samples/make-samples.sh
BIN=target/release/studiocast
OUT=samples/out
mkdir -p "$OUT"
"$BIN" render samples/demo-o3.wav -o "$OUT/demo-o3-binaural.wav" --input-format ambix --order 3
"$BIN" render samples/demo-5.1.wav -o "$OUT/demo-5.1-binaural.wav" --input-format bed --layout 5.1
"$BIN" render samples/demo-objects.wav -o "$OUT/demo-objects-binaural.wav" --input-format objects --scene samples/scene-example.toml
"$BIN" accuracy --orders 1,3,5
echo
echo "Binaural renders (48 kHz, 32-bit float, listen on headphones):"
ls -1 "$OUT"/*.wav
