#!/usr/bin/env bash
# Generates the small demo media in samples/ (nothing large is committed).
# Needs sox and the studiocast binary (for `studiocast encode`).
# Idempotent: existing files are kept.
set -euo pipefail
cd "$(dirname "$0")"
BIN=${STUDIOCAST_BIN:-../target/release/studiocast}
command -v sox >/dev/null || { echo "make-samples: sox is required (apt-get install sox)" >&2; exit 1; }
[[ -x $BIN ]] || { echo "make-samples: build first: cargo build --release -p studiocast" >&2; exit 1; }

# Two mono sources (a plucked string and a sine), 8 s.
if [[ ! -f demo-objects.wav ]]; then
  sox -n -r 48000 -b 24 -c 2 demo-objects.wav synth 8 pluck 220 sine 660 gain -12
fi

# Third-order AmbiX (ACN/SN3D) scene made from them with the scene file:
# one source fixed at +30°, the other circling from -30° round the back.
if [[ ! -f demo-o3.wav ]]; then
  "$BIN" encode demo-objects.wav -o demo-o3.wav --order 3 --scene scene-example.toml
fi

# 5.1 bed (L R C LFE Ls Rs), 6 s: a different noise or tone per channel.
if [[ ! -f demo-5.1.wav ]]; then
  sox -n -r 48000 -c 6 -b 24 demo-5.1.wav synth 6 pinknoise sine 200 pinknoise brownnoise sine 300 pinknoise gain -18
fi
echo "samples: demo-objects.wav demo-o3.wav demo-5.1.wav ready"
