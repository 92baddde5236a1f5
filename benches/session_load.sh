#!/usr/bin/env bash
# Load of real studio sessions on this machine, in one run:
#   1. jack-16ch-3oa: 16 JACK channels (dummy backend, a 16-channel pink-noise
#      plane wave) as third-order AmbiX, plus 720p30 test video;
#   2. srt-listener: ffmpeg pushing 720p25 H.264 + AAC over SRT.
# For each: the daemon's CPU (cores, from /proc over MEASURE seconds after a
# warm-up), and from the session status the xruns (ring overruns and
# underruns), silence blocks, the drift estimate and the A/V offset.
#
#   bash benches/session_load.sh [MEASURE_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
MEASURE=${1:-60}
WARM=10
TOKEN=bench-token
cargo build --release -q -p studiocast
BIN=target/release/studiocast
WORK=$(mktemp -d /tmp/studiocast-load.XXXXXX)
SERVER=studiocast-load-$$
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/pipelines"
cp pipelines/jack-16ch-3oa.toml "$WORK/pipelines/"
PORT=$((20000 + $$ % 20000))
sed "s/port = 9000/port = $PORT/" pipelines/srt-listener.toml > "$WORK/pipelines/srt-listener.toml"

export JACK_DEFAULT_SERVER=$SERVER JACK_NO_AUDIO_RESERVATION=1
jackd -n "$SERVER" -r -d dummy -r 48000 -p 256 -C 16 -P 16 >"$WORK/jackd.log" 2>&1 &
PIDS+=($!)
jack_wait -w -t 10 >/dev/null

STUDIOCAST_API_TOKEN=$TOKEN STUDIOCAST_LOG=warn "$BIN" serve --listen 127.0.0.1:0 \
  --data-dir "$WORK/data" --pipelines "$WORK/pipelines" >"$WORK/daemon.out" 2>"$WORK/daemon.err" &
DAEMON=$!
PIDS+=($DAEMON)
for _ in $(seq 100); do grep -q "listening on" "$WORK/daemon.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/.*listening on http:\/\///p' "$WORK/daemon.out")

api() { curl -sf -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' "$@"; }
ticks() { awk '{print $14 + $15}' "/proc/$DAEMON/stat"; }
hz=$(getconf CLK_TCK)

measure() { # name id
  local name=$1 id=$2
  sleep "$WARM"
  local t0 c0 t1 c1
  t0=$(date +%s.%N); c0=$(ticks)
  sleep "$MEASURE"
  t1=$(date +%s.%N); c1=$(ticks)
  local st
  st=$(api "http://$ADDR/api/v1/sessions/$id")
  python3 - "$name" "$st" "$c0" "$c1" "$t0" "$t1" "$hz" <<'EOF'
import json, sys
name, st, c0, c1, t0, t1, hz = sys.argv[1:]
i = json.loads(st)["inputs"]
cores = (float(c1) - float(c0)) / float(hz) / (float(t1) - float(t0))
v = i.get("video") or {}
print(f"| {name} | {cores:.2f} | {i['overruns']} | {i['underruns']} | {i['silent_blocks']} | "
      f"{i['drift_ppm']:+.1f} | {i['av_offset_ms']:+.2f} | {v.get('dropped_frames', '-')} / {v.get('repeated_frames', '-')} | {i['video_lag_ms']} |")
EOF
  api -X POST "http://$ADDR/api/v1/sessions/$id/stop" >/dev/null
}

echo "machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) cores; ${MEASURE} s per session after ${WARM} s"
echo
echo "| session | CPU (cores) | overruns | underruns | silent blocks | drift (ppm) | A/V offset (ms) | video dropped / repeated | video lag (ms) |"
echo "|---|---|---|---|---|---|---|---|---|"

# 1. JACK 16 channels + 720p test video.
gst-launch-1.0 -q audiotestsrc is-live=true wave=pink-noise volume=0.2 \
  ! audio/x-raw,format=F32LE,rate=48000,channels=16 ! jackaudiosink connect=none client-name=feeder \
  >/dev/null 2>&1 &
PIDS+=($!)
ID=$(api -X POST "http://$ADDR/api/v1/sessions" -d '{"pipeline":"jack-16ch-3oa","title":"load"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
sleep 2
for c in $(seq 1 16); do jack_connect "feeder:out_$c" "$(jack_lsp 2>/dev/null | grep '_in:in_' | sed -n "${c}p")" 2>/dev/null || true; done
measure "jack-16ch-3oa (16 ch JACK + 720p30 test video)" "$ID"

# 2. SRT from ffmpeg.
ffmpeg -nostdin -v error -re -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine=f=1000:r=48000 \
  -c:v libx264 -preset ultrafast -tune zerolatency -g 25 -c:a aac -ac 2 -f mpegts \
  "srt://127.0.0.1:$PORT?mode=caller" >/dev/null 2>&1 &
FF=$!
PIDS+=($FF)
ID=$(api -X POST "http://$ADDR/api/v1/sessions" -d '{"pipeline":"srt-listener","title":"load"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
measure "srt-listener (720p25 H.264 + AAC in, 720p30 out)" "$ID"
kill "$FF" 2>/dev/null || true
