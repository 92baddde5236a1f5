#!/usr/bin/env bash
# The live origin, measured in one run on this machine (release build; the
# encoders run in the daemon's process throughout):
#   1. glass-to-glass latency in Chromium + hls.js on loopback, from the
#      playing EXT-X-PROGRAM-DATE-TIME (the capture clock): the demo preset
#      in low-latency mode against the same preset with latency = standard;
#   2. our own lag: capture to publication of each part (one LL viewer's
#      blocking reloads; the playlist answers within a fraction of a ms of
#      the publication);
#   3. VIEWERS concurrent LL viewers (benches/examples/viewers.rs): viewers
#      held, publication-to-delivery p50/p99, errors, the daemon's CPU and
#      RSS, the generator's own CPU;
#   4. capacity against nginx: the same session folder served by nginx
#      (Debian's, started here on loopback, from disk) and by studiocast
#      (from memory), the same URLs fetched flat out by the same generator
#      over FLOOD connections, three rounds taken in turn (the machine is
#      noisy); requests per second and the ratios.
#
#   bash benches/live_origin.sh [VIEWERS] [SECONDS] [FLOOD]
set -euo pipefail
cd "$(dirname "$0")/.."
VIEWERS=${1:-1000}
MEASURE=${2:-30}
FLOOD=${3:-64}
TOKEN=bench-token
T=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p studiocast
cargo build --release -q -p studiocast-bench --example viewers
BIN=$T/release/studiocast
GEN=$T/release/examples/viewers
command -v nginx >/dev/null || NGINX=/usr/sbin/nginx
NGINX=${NGINX:-nginx}
WORK=$(mktemp -d /tmp/studiocast-origin.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/pipelines"
cp pipelines/demo.toml "$WORK/pipelines/"
sed -e 's/name = "demo"/name = "demo-standard"/' -e 's/latency = "low"/latency = "standard"/' \
  pipelines/demo.toml >"$WORK/pipelines/demo-standard.toml"

STUDIOCAST_API_TOKEN=$TOKEN STUDIOCAST_LOG=warn "$BIN" serve --listen 127.0.0.1:0 \
  --data-dir "$WORK/data" --pipelines "$WORK/pipelines" >"$WORK/daemon.out" 2>"$WORK/daemon.err" &
DAEMON=$!
PIDS+=($DAEMON)
for _ in $(seq 100); do grep -q "listening on" "$WORK/daemon.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/.*listening on http:\/\///p' "$WORK/daemon.out")
api() { curl -sf -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' "$@"; }
start() { # pipeline -> id, once three segments are out
  local id
  id=$(api -X POST "http://$ADDR/api/v1/sessions" -d "{\"pipeline\":\"$1\",\"title\":\"bench\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  for _ in $(seq 200); do
    [[ $(curl -s "http://$ADDR/live/$id/720p/index.m3u8" | grep -c '^#EXTINF') -ge 3 ]] && break
    sleep 0.25
  done
  echo "$id"
}
stop() { api -X POST "http://$ADDR/api/v1/sessions/$1/stop" >/dev/null; }
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d.get(sys.argv[2]))" "$1" "$2"; }

echo "machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) cores"
echo

# 1. Glass to glass, LL against standard.
echo "## glass to glass (Chromium + hls.js, loopback; latency from PROGRAM-DATE-TIME)"
echo "| preset | hls.js | median (ms) | max (ms) | stalls (s) |"
echo "|---|---|---|---|---|"
for preset in demo demo-standard; do
  id=$(start "$preset")
  for catchup in 1 1.5; do
    [[ $preset == demo-standard && $catchup != 1 ]] && continue
    mode="lowLatencyMode, catch-up $catchup"
    env=(PLAY_CATCHUP=$catchup)
    [[ $preset == demo-standard ]] && { env=(PLAY_STANDARD=1); mode="default config"; }
    r=$(env "${env[@]}" node tests/browser/play.mjs "http://$ADDR/live/$id/master.m3u8" 24 | tail -1)
    echo "| $preset | $mode | $(field "$r" latencyMsMedian) | $(field "$r" latencyMsMax) | $(field "$r" maxStallS) |"
  done
  stop "$id"
done
echo

ID=$(start demo)
URL="http://$ADDR/live/$ID/master.m3u8"

# 2. Capture to publication of each part.
r=$("$GEN" --url "$URL" --viewers 1 --ramp 0 --seconds 20 --pid "$DAEMON" --label lag)
echo "## capture to publication of a part (1 LL viewer, ms behind the capture clock at the part's end)"
echo "p50 $(field "$r" behind_live_ms_p50), p99 $(field "$r" behind_live_ms_p99)"
# The daemon's CPU with one viewer: the encoders, nearly all of it.
BASE_CORES=$(field "$r" server_cores)
echo "daemon CPU with one viewer (the encoders): $BASE_CORES cores"
echo

# 3. LL viewers.
echo "## $VIEWERS LL viewers for $MEASURE s (blocking reloads, parts)"
r=$("$GEN" --url "$URL" --viewers "$VIEWERS" --ramp 10 --seconds "$MEASURE" --pid "$DAEMON" --label studiocast)
echo "$r"
# The p99's floor from CPU alone. Every part's publication releases one
# burst: each viewer's blocking reload and part fetch per rendition. 99 %
# of the deliveries need at least 99 % of that burst's work done, the
# daemon's HTTP share and the generator's own: on every core of the
# machine at once (the encoders idle), that is a hard floor; with the
# cores the encoders leave, an estimate. A floor above the target means no
# scheduling can meet it at this CPU cost per request.
PART=$(curl -s "http://$ADDR/live/$ID/720p/index.m3u8" | sed -n 's/.*PART-TARGET=\([0-9.]*\).*/\1/p')
python3 - "$r" "$BASE_CORES" "$PART" "$(nproc)" <<'PY'
import json, sys
r, base, part, cores = json.loads(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
rps = r["requests_per_s"]
http = max(r["server_cores"] - base, 0.0) / rps      # daemon CPU s per request, beyond the encoders
gen = r["client_cores"] / rps                        # generator CPU s per request
burst = rps * part                                   # requests released by one publication
free = cores - base
work = 0.99 * burst * (http + gen)
print(f"p99 floor from CPU: {work / cores * 1000:.0f} ms on all {cores} cores, "
      f"{work / free * 1000:.0f} ms on the {free:.2f} the encoders leave "
      f"(a burst of {burst:.0f} requests every {part} s; {http * 1e6:.1f} us of daemon CPU "
      f"and {gen * 1e6:.1f} us of generator CPU per request); measured p99 {r['delivery_ms_p99']:.0f} ms")
PY
echo

# 4. Capacity against nginx, the same files.
SESSION="$WORK/data/sessions/$ID"
NPORT=$((30000 + $$ % 20000))
mkdir -p "$WORK/nginx"
USER_LINE=""
[[ $(id -u) -eq 0 ]] && USER_LINE="user root;"
cat >"$WORK/nginx/nginx.conf" <<EOF
$USER_LINE
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  types { application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; video/mp4 mp4; }
  server {
    listen 127.0.0.1:$NPORT;
    location ~ ^/live/[^/]+/master\.m3u8\$ { alias $SESSION/hls/master.m3u8; }
    location ~ ^/live/[^/]+/([^/]+)/index\.m3u8\$ {
      alias $SESSION/hls/\$1/live.m3u8;
      add_header Cache-Control no-cache;
    }
    location ~ ^/live/[^/]+/([^/]+)/([^/]+)\$ { alias $SESSION/hls/\$1/\$2; }
  }
}
EOF
"$NGINX" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
NGX=$!
PIDS+=($NGX)
sleep 1
echo "## capacity: $FLOOD connections flat out for 15 s, playlist + 2 recent segments each, 3 rounds alternating"
echo "| round | server | requests/s | errors | fetch p50 (ms) | fetch p99 (ms) | Mbit/s | server CPU (cores) |"
echo "|---|---|---|---|---|---|---|---|"
row() { # round label json
  echo "| $1 | $2 | $(field "$3" requests_per_s) | $(field "$3" errors) | $(field "$3" fetch_ms_p50) | $(field "$3" fetch_ms_p99) | $(field "$3" mbit_per_s) | $(field "$3" server_cores) |"
}
WORKERS=()
for w in $(pgrep -P "$NGX"); do WORKERS+=(--pid "$w"); done
RATIOS=()
for round in 1 2 3; do
  S=$("$GEN" --url "$URL" --mode flood --viewers "$FLOOD" --ramp 1 --seconds 15 --pid "$DAEMON" --label studiocast)
  row "$round" "studiocast (memory)" "$S"
  N=$("$GEN" --url "http://127.0.0.1:$NPORT/live/$ID/master.m3u8" --mode flood --viewers "$FLOOD" --ramp 1 --seconds 15 "${WORKERS[@]}" --label nginx)
  row "$round" "nginx (disk, sendfile)" "$N"
  RATIOS+=("$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['requests_per_s']/json.loads(sys.argv[2])['requests_per_s'])" "$S" "$N")")
done
python3 -c "import statistics,sys; r=sorted(map(float,sys.argv[1:])); print('studiocast / nginx requests per second: ' + ', '.join(f'{x:.2f}' for x in r) + f'; median {statistics.median(r):.2f}')" "${RATIOS[@]}"
stop "$ID"
