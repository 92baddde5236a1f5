#!/usr/bin/env bash
# benches/transcode_video.sh - a 1080p H.264 lesson with stereo AAC becomes
# the `lesson` preset's HLS ladder (1080p 5000, 720p 2800, 480p 1400,
# 360p 800 kb/s, 30 fps, IDR every 2 s and nowhere else, no B-frames) plus
# binaural and stereo AAC, two ways, in one run on this machine:
#   1. studiocast transcode (release build): the audio measured, rendered
#      and normalised, the picture decoded once and encoded by four x264
#      instances (preset veryfast, GStreamer's default CBR/VBV), packaged
#      as fMP4 HLS, a poster frame;
#   2. ffmpeg: one decode, split and scaled four ways, libx264 at the same
#      preset, rates, GOP (-g 60 -keyint_min 60 -sc_threshold 0 -bf 0) and
#      VBV (maxrate = bitrate, bufsize = 0.6 s, as GStreamer's x264enc),
#      two AAC renditions, the HLS muxer (fMP4, 2 s segments). It renders
#      no binaural and measures no loudness: it does less work.
# The x264 option strings of both outputs are printed side by side, so the
# encoders are seen to do the same work. Reported: wall seconds, x real
# time, user+sys CPU seconds, peak RSS.
#
#   bash benches/transcode_video.sh [SECONDS]   (default 600, the issue's
#   10 minutes; the input is generated once and cached)
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
SECS=${1:-600}
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "SECONDS must be a positive integer" >&2; exit 2; }
T=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p studiocast
BIN=$T/release/studiocast
CACHE=${TMPDIR:-/tmp}/studiocast-transcode-bench
mkdir -p "$CACHE"
INPUT=$CACHE/lesson-1080p25-${SECS}s-v1.mp4
if [[ ! -s $INPUT ]]; then
    echo "generating $INPUT" >&2
    # A moving picture (testsrc2) at a camera's 25 fps and a high rate, so
    # decoding it is real work; a tone with some noise for the sound.
    ffmpeg -v error -y -f lavfi -i "testsrc2=size=1920x1080:rate=25:duration=$SECS" \
        -f lavfi -i "sine=f=220:r=48000:d=$SECS,volume=0.3" \
        -c:v libx264 -preset veryfast -b:v 8M -g 50 -pix_fmt yuv420p \
        -c:a aac -ac 2 -b:a 192k "$INPUT.tmp.mp4" </dev/null
    mv "$INPUT.tmp.mp4" "$INPUT"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/studiocast-video-run.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

measure() {
    python3 - "$@" <<'PY'
import resource, subprocess, sys, time, json
t = time.monotonic()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.monotonic() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
if p.returncode != 0:
    sys.stderr.write(p.stderr.decode(errors="replace")[-2000:])
    sys.exit(1)
print(json.dumps({"wall": wall, "cpu": r.ru_utime + r.ru_stime, "rss_mb": r.ru_maxrss / 1024}))
PY
}

echo "machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) cores"
echo "input: $SECS s of 1920x1080 25 fps H.264 + stereo AAC ($(du -h "$INPUT" | cut -f1))"
echo

run_studiocast() {
    rm -rf "$WORK/sc"
    STUDIOCAST_LOG=warn measure "$BIN" transcode "$INPUT" --out "$WORK/sc" \
        --pipelines pipelines --input-format bed --layout stereo
}

run_ffmpeg() {
    rm -rf "$WORK/ff" && mkdir -p "$WORK/ff"
    local v="-c:v libx264 -preset veryfast -profile:v high -g 60 -keyint_min 60 -sc_threshold 0 -bf 0 -r 30"
    # shellcheck disable=SC2086
    measure ffmpeg -v error -y -i "$INPUT" \
        -filter_complex "[0:v]fps=30,split=4[a][b][c][d];[a]scale=1920:1080[v0];[b]scale=1280:720[v1];[c]scale=854:480[v2];[d]scale=640:360[v3]" \
        -map "[v0]" -map "[v1]" -map "[v2]" -map "[v3]" -map 0:a -map 0:a \
        $v \
        -b:v:0 5000k -maxrate:v:0 5000k -bufsize:v:0 3000k \
        -b:v:1 2800k -maxrate:v:1 2800k -bufsize:v:1 1680k \
        -b:v:2 1400k -maxrate:v:2 1400k -bufsize:v:2 840k -profile:v:2 main \
        -b:v:3 800k -maxrate:v:3 800k -bufsize:v:3 480k -profile:v:3 main \
        -c:a aac -b:a:0 160k -b:a:1 96k -ar 48000 \
        -f hls -hls_time 2 -hls_playlist_type vod -hls_segment_type fmp4 \
        -master_pl_name master.m3u8 \
        -var_stream_map "v:0,agroup:aud v:1,agroup:aud v:2,agroup:aud v:3,agroup:aud a:0,agroup:aud a:1,agroup:aud" \
        "$WORK/ff/v%v/index.m3u8"
}

row() {
    python3 - "$@" <<'PY'
import json, sys
name, secs, j = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
print("| %s | %.1f | %.2fx | %.1f | %.0f |" % (name, j["wall"], secs / j["wall"], j["cpu"], j["rss_mb"]))
PY
}

echo "| chain | wall (s) | x real time | CPU (s) | peak RSS (MB) |"
echo "|---|---|---|---|---|"
sc=$(run_studiocast)
row "studiocast transcode (lesson preset)" "$SECS" "$sc"
ff=$(run_ffmpeg)
row "ffmpeg, libx264 veryfast, same ladder" "$SECS" "$ff"
python3 - "$sc" "$ff" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
r = b["wall"] / a["wall"]
print("\nstudiocast against ffmpeg, wall: %.2fx %s" % (r if r >= 1 else 1 / r, "faster" if r >= 1 else "slower"))
PY

echo
echo "x264 settings of the 1080p rung (studiocast, then ffmpeg):"
keys='^(ref|subme|me|trellis|bframes|keyint|keyint_min|scenecut|rc_lookahead|rc|bitrate|vbv_maxrate|vbv_bufsize|threads)='
x264_options() {
    # (Not every file has the SEI; a miss prints nothing, not an abort.)
    { strings "$@" 2>/dev/null | grep -o 'options: .*' || true; } | head -1 | tr ' ' '\n' \
        | { grep -E "$keys" || true; } | tr '\n' ' '
    echo
}
x264_options "$WORK/sc/1080p/init.mp4" "$WORK/sc/1080p/seg000001.m4s"
x264_options "$WORK/ff/v0/"*.m4s
