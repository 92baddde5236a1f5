#!/usr/bin/env bash
# benches/transcode.sh - a third-order ambisonic recording (16 channels,
# 48 kHz, 24-bit) becomes a binaural + stereo AAC HLS VOD, two ways, in one
# run on this machine:
#   1. studiocast transcode (release build): two passes (EBU R128 per
#      rendition, then render, normalise, encode, package), the audio-only
#      preset's renditions (binaural 160 kb/s, stereo 96 kb/s);
#   2. the nearest ffmpeg chain: sofalizer (the 16 channels as 16 virtual
#      loudspeakers, as benches/compare.sh does) and a W/Y stereo pan, two
#      AAC encoders at the same rates, ffmpeg's HLS muxer (fMP4, 2 s). It
#      has no loudness pass: it does less work than studiocast.
# Reported: wall seconds, x real time, user+sys CPU seconds, peak RSS.
#
#   bash benches/transcode.sh [MINUTES]     (default 10; 60 needs ~8.3 GB free)
#   ROUNDS=N (default 2) rounds taken in turn; FFMPEG_FAST=0 skips the
#   ffmpeg row with the fast AAC coder.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
MINUTES=${1:-10}
[[ $MINUTES =~ ^[1-9][0-9]*$ ]] || { echo "MINUTES must be a positive integer" >&2; exit 2; }
SECS=$((MINUTES * 60))
SOFA=${SOFA:-/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa}
T=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p studiocast
BIN=$T/release/studiocast
CACHE=${TMPDIR:-/tmp}/studiocast-transcode-bench
mkdir -p "$CACHE"
INPUT=$CACHE/ambix-o3-16ch-48k-${MINUTES}min-s24-v1.wav
if [[ ! -s $INPUT ]]; then
    echo "generating $INPUT" >&2
    sox -R -n -r 48000 -c 16 -b 24 -e signed-integer -t wav "$INPUT.tmp" synth "$SECS" \
        pinknoise sine 110 whitenoise sine 220 brownnoise sine 330 pinknoise sine 440 \
        whitenoise sine 550 brownnoise sine 660 pinknoise sine 770 whitenoise sine 880 \
        gain -30 </dev/null
    mv "$INPUT.tmp" "$INPUT"
fi
# Read once before any run, so that neither chain pays for the first read
# from disk (studiocast reads the input twice, ffmpeg once: with a cold
# cache the first command measured also measures the disk).
cat "$INPUT" >/dev/null
WORK=$(mktemp -d "${TMPDIR:-/tmp}/studiocast-transcode-run.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Wall, CPU (user+sys of the process tree) and peak RSS of one command.
measure() {
    python3 - "$@" <<'EOF'
import resource, subprocess, sys, time, json
t = time.monotonic()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.monotonic() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
if p.returncode != 0:
    sys.stderr.write(p.stderr.decode(errors="replace")[-2000:])
    sys.exit(1)
print(json.dumps({"wall": wall, "cpu": r.ru_utime + r.ru_stime, "rss_mb": r.ru_maxrss / 1024}))
EOF
}

echo "machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) cores"
echo "input: $MINUTES min, 16 channels, 48 kHz, 24-bit ($(du -h "$INPUT" | cut -f1))"
echo

# The ffmpeg chain's loudspeakers: a 16-point Fibonacci sphere (compare.sh).
SPEAKERS=$(awk -v n=16 -f benches/compare/speakers.awk)
mkdir -p "$WORK/ff/binaural" "$WORK/ff/stereo"
FILTER="[0:a]asplit=2[a][b];[a]channelmap=channel_layout=hexadecagonal,sofalizer=sofa=$SOFA:type=freq:speakers=$SPEAKERS,aresample=48000[bin];[b]pan=stereo|c0=0.5*c0+0.5*c1|c1=0.5*c0-0.5*c1[st]"
HLS=(-f hls -hls_time 2 -hls_playlist_type vod -hls_segment_type fmp4)

FF_WALLS=()
echo "| chain | wall (s) | x real time | CPU (s) | peak RSS (MB) |"
echo "|---|---|---|---|---|"
for round in $(seq "${ROUNDS:-2}"); do
    rm -rf "$WORK/sc" "$WORK/ff"/*/*
    sc=$(measure "$BIN" transcode "$INPUT" --out "$WORK/sc" --pipelines pipelines \
        --input-format ambix --order 3)
    ff() {
        measure ffmpeg -hide_banner -nostdin -nostats -loglevel error -y -i "$INPUT" \
            -filter_complex "$FILTER" \
            -map '[bin]' -c:a aac "$@" -b:a 160k "${HLS[@]}" "$WORK/ff/binaural/index.m3u8" \
            -map '[st]' -c:a aac "$@" -b:a 96k "${HLS[@]}" "$WORK/ff/stereo/index.m3u8"
    }
    # ffmpeg's default AAC coder (two-loop), and the fast coder studiocast
    # uses at these rates.
    ffd=$(ff)
    rows=("studiocast transcode (2 passes, R128, fast coder):$sc"
        "ffmpeg sofalizer + aac + hls (two-loop coder):$ffd")
    if [[ ${FFMPEG_FAST:-1} == 1 ]]; then
        rows+=("ffmpeg sofalizer + aac + hls (fast coder):$(ff -aac_coder fast)")
    fi
    FF_WALLS+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["wall"])' "$ffd")")
    for row in "${rows[@]}"; do
        name=${row%%:\{*}
        json=${row#"$name":}
        python3 -c "
import json,sys; d=json.loads(sys.argv[2]); s=float(sys.argv[3])
print(f\"| {sys.argv[1]} (round $round) | {d['wall']:.1f} | {s/d['wall']:.1f} | {d['cpu']:.1f} | {d['rss_mb']:.0f} |\")
" "$name" "$json" "$SECS"
    done
done
echo
python3 - "$WORK/sc/loudness.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print("studiocast's lesson: " + ", ".join(
    "%s %.1f LUFS" % (r["id"], r["output"]["integrated_lufs"]) for r in d["renditions"]))
EOF

# The floors. Both chains encode with libavcodec's AAC encoder (studiocast
# through avenc_aac, with the fast coder at these rates; GStreamer's other
# AAC encoder here, voaacenc, is slower). Encoding the lesson's two
# renditions takes at least this much CPU, and no more than every core at
# once can share it: the wall time of any chain built on that encoder is
# at least that CPU over the core count, and so its speed-up over the
# ffmpeg chain at most the ffmpeg chain's wall over it. A normalised lesson
# also reads and renders the whole input before its first sample can be
# encoded (the gain needs the integrated loudness): adding one read and
# render (`studiocast render`, which also writes a WAV, and has no R128
# meter) gives a second floor. (The binaural render of the input stands in
# for both renditions' signals.)
render=$(measure "$BIN" render "$INPUT" -o "$WORK/bin.wav" --input-format ambix --order 3)
aac160=$(measure ffmpeg -v error -nostdin -i "$WORK/bin.wav" -c:a aac -aac_coder fast -b:a 160k -f null -)
aac96=$(measure ffmpeg -v error -nostdin -i "$WORK/bin.wav" -c:a aac -aac_coder fast -b:a 96k -f null -)
python3 - "$aac160" "$aac96" "$render" "$(nproc)" "${FF_WALLS[@]}" <<'EOF'
import json, sys
a, b, r = (json.loads(x) for x in sys.argv[1:4])
cores = int(sys.argv[4])
ff = [float(x) for x in sys.argv[5:]]
cpu = a["cpu"] + b["cpu"]
for what, c in (("AAC floor: the two renditions' AAC encode (fast coder, 160 + 96 kb/s)", cpu),
                (f"With one read and render of the input ({r['cpu']:.1f} CPU s)", cpu + r["cpu"])):
    floor = c / cores
    print(f"{what}: {c:.1f} CPU s; on {cores} cores at least {floor:.1f} s of wall time, "
          f"so at most {min(ff) / floor:.2f}-{max(ff) / floor:.2f}x the ffmpeg chain (two-loop) of this run")
EOF
