#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine: system packages only.
# The Rust toolchain (cargo, rustc ≥ 1.95) must already be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential pkg-config
  # GStreamer 1.22: headers for the Rust bindings, and the runtime plugins
  # (x264enc: ugly, avenc_aac: libav, clockoverlay: x, srt/decklink: bad)
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-x
  # audio capture: ALSA and JACK headers for cpal, and the JACK server whose
  # dummy backend the capture tests use (no sound hardware needed)
  libasound2-dev libjack-jackd2-dev jackd2
  # HRTF data (MIT KEMAR SOFA) used by default
  libmysofa1
  # test peers: ffmpeg/ffprobe (FLAC fixtures, comparisons), sox
  ffmpeg sox
  # side-by-side benchmark against libspatialaudio (benches/compare.sh)
  libspatialaudio-dev g++
  # the browser test: Debian's Chromium (npm never downloads a browser)
  chromium
  # HTTPS and HTTP/2 checks (curl --http2), and the origin bench's side-by-side
  # file server (benches/origin.sh starts its own nginx on loopback)
  curl nginx-light
  # the shared job queue's tests and bench start their own throwaway server
  # (initdb and pg_ctl in a temporary folder); no system cluster is made
  postgresql
  # the OpenAPI fuzzer (schemathesis) runs from a virtualenv in .tools/
  python3-venv
)
command -v node >/dev/null || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  # Debian's postgresql makes and starts a "main" cluster on port 5432 at
  # install; the tests start their own, so none is made (the file is
  # postgresql-common's own setting, read at install).
  if [[ " ${missing[*]} " == *" postgresql "* && ! -e /etc/postgresql-common/createcluster.conf ]]; then
    $SUDO mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # env: sudo's env_reset would drop these; ucf (which installs
  # createcluster.conf) keeps the file written above with UCF_FORCE_CONFFOLD.
  $SUDO env DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 \
    apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
else
  echo "setup: system packages already present"
fi

# promtool, from Debian's prometheus package, for the metrics test:
# unpacked into .tools/, not installed, so no Prometheus server is set up
# or started on this machine.
PROMTOOL=.tools/prometheus/usr/bin/promtool
if [[ ! -x $PROMTOOL ]]; then
  echo "setup: unpacking promtool (Debian's prometheus package)"
  dl=$(mktemp -d)
  if ! (cd "$dl" && apt-get download prometheus >/dev/null 2>&1); then
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    (cd "$dl" && apt-get download prometheus >/dev/null)
  fi
  mkdir -p .tools/prometheus
  dpkg-deb -x "$dl"/prometheus_*.deb .tools/prometheus
  rm -rf "$dl"
fi

# hls.js and playwright-core for the browser test, from the lock file.
if [[ ! -d tests/browser/node_modules/playwright-core || tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]]; then
  echo "setup: npm ci (tests/browser)"
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi

# schemathesis, pinned, for the API fuzz test; a virtualenv in .tools/ so
# nothing is installed into the system Python.
ST=.tools/schemathesis
if [[ ! -x $ST/bin/st || tests/schemathesis/requirements.txt -nt $ST/.installed ]]; then
  echo "setup: schemathesis (pip, into $ST)"
  rm -rf "$ST"
  python3 -m venv "$ST"
  "$ST/bin/pip" install --quiet --disable-pip-version-check -r tests/schemathesis/requirements.txt
  touch "$ST/.installed"
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust 1.95 or newer (rustup) and retry" >&2
  exit 1
fi
