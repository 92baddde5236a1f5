#!/usr/bin/env bash
# Set up, build, and run the main job: the capture daemon with its embedded
# defaults and a demo session (test pattern with a burnt-in clock, and a
# synthetic third-order ambisonic scene rendered binaurally). Prints the URLs
# to open; Ctrl-C stops the daemon, which finalises the session as VOD.
#
# Environment: STUDIOCAST_LISTEN (default 127.0.0.1:8080),
# STUDIOCAST_DATA_DIR (default ./data), STUDIOCAST_API_TOKEN (default: a
# random one, printed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p studiocast

LISTEN=${STUDIOCAST_LISTEN:-127.0.0.1:8080}
export STUDIOCAST_API_TOKEN=${STUDIOCAST_API_TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
BASE="http://$LISTEN"

target/release/studiocast serve --listen "$LISTEN" &
DAEMON=$!
trap 'kill -TERM $DAEMON 2>/dev/null; wait $DAEMON' INT TERM

for _ in $(seq 1 100); do
  curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
  kill -0 $DAEMON 2>/dev/null || { echo "run: the daemon did not start" >&2; exit 1; }
  sleep 0.2
done

SESSION=$(curl -fsS -X POST "$BASE/api/v1/sessions" \
  -H "Authorization: Bearer $STUDIOCAST_API_TOKEN" -H 'Content-Type: application/json' \
  -d '{"pipeline":"demo","title":"Demo session","course":"studiocast"}')
ID=$(printf '%s' "$SESSION" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')

cat <<EOT

studiocast is running. Open the player:

  $BASE/embed/$ID

  API token:      $STUDIOCAST_API_TOKEN
  demo session:   $ID
  live HLS:       $BASE/live/$ID/master.m3u8   (first segments after ~3 s)
  VOD (on stop):  $BASE/vod/$ID/master.m3u8
  sessions:       curl -H "Authorization: Bearer $STUDIOCAST_API_TOKEN" $BASE/api/v1/sessions
  stop session:   curl -X POST -H "Authorization: Bearer $STUDIOCAST_API_TOKEN" $BASE/api/v1/sessions/$ID/stop
  other players:  ffplay $BASE/live/$ID/master.m3u8   (or Safari, VLC)
  embed it:       curl "$BASE/oembed?url=$BASE/embed/$ID"   (oEmbed: the iframe for a site)
  offline render: target/release/studiocast render IN.wav -o OUT.wav --input-format ambix --order 3

Ctrl-C stops the daemon; live sessions are finalised as VOD first.
EOT
wait $DAEMON
