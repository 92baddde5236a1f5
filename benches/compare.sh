#!/usr/bin/env bash
# benches/compare.sh - render one 60 s third-order AmbiX file to binaural three
# ways (studiocast, ffmpeg sofalizer, libspatialaudio) and compare CPU cost.
#
# Usage:  benches/compare.sh            (from anywhere; paths are repo-relative)
#
# Environment knobs (all optional):
#   STUDIOCAST_BIN       studiocast binary (default target/release/studiocast;
#                        built with cargo only if that default path is missing)
#   STUDIOCAST_NO_BUILD  =1: never run cargo; skip the studiocast row if the
#                        binary is missing
#   SOFA                 HRTF file (default: MIT KEMAR from Debian libmysofa1)
#   RUNS                 runs per renderer, the fastest is kept (default 2)
#   PIN_CPU              core to pin every renderer to (default 0)
#
# Debian 12 packages it needs: ffmpeg, sox, g++, libspatialaudio-dev (pulls
# libmysofa-dev), libmysofa1 (ships the SOFA file), util-linux (taskset, lscpu).
#
# What is measured: user+sys CPU seconds of each whole renderer process (file
# read, set-up, rendering, file write), pinned to one core, so the figure does
# not depend on how many cores a renderer could have used. x real time =
# 60 s / CPU s. Wall time is shown too but is noisy if the machine is busy.
set -euo pipefail
export LC_ALL=C   # "." decimal point in `time` output and awk, English tool messages

readonly DURATION=60 RATE=48000 CHANNELS=16 ORDER=3 BLOCK=512
readonly RUNS=${RUNS:-2}
readonly PIN_CPU=${PIN_CPU:-0}
readonly SOFA=${SOFA:-/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
cd "$REPO_ROOT"
readonly DEFAULT_STUDIOCAST_BIN=target/release/studiocast
readonly STUDIOCAST_BIN=${STUDIOCAST_BIN:-$DEFAULT_STUDIOCAST_BIN}

# The input is expensive-ish to make (184 MB), so it is cached between runs.
# Bump the version tag whenever the recipe in make_input changes.
readonly CACHE_DIR=${TMPDIR:-/tmp}/studiocast-compare
readonly INPUT=$CACHE_DIR/ambix-o3-16ch-48k-60s-f32-v1.wav
readonly INPUT_DATA_BYTES=$((DURATION * RATE * CHANNELS * 4))

die() { echo "compare.sh: error: $*" >&2; exit 1; }
note() { echo "compare.sh: $*" >&2; }
# need CMD DEBIAN_PACKAGE
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found: apt-get install $2"; }

case "${1:-}" in
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) die "unknown argument '$1' (this script takes none; see --help)" ;;
esac
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, got '$RUNS'"

# ---------------------------------------------------------------- tool checks
# All checks happen before any work so a missing package fails fast.
need ffmpeg ffmpeg
need ffprobe ffmpeg
need g++ g++
need awk mawk
[[ -r $SOFA ]] || die "HRTF file $SOFA not found: apt-get install libmysofa1 (or set SOFA=...)"
# ffmpeg's filter-graph syntax treats these characters specially; rather than
# escaping them twice over, refuse such paths.
[[ $SOFA != *[:,\;\'\\\[\]=]* ]] || die "SOFA path must not contain : , ; ' \\ [ ] = (ffmpeg filter syntax)"
[[ -r /usr/include/spatialaudio/Ambisonics.h ]] \
    || die "libspatialaudio headers not found: apt-get install libspatialaudio-dev"
# (captured first: `ffmpeg | grep -q` would trip pipefail when grep exits early)
FFMPEG_FILTERS=$(ffmpeg -hide_banner -filters 2>/dev/null) || true
grep -qw sofalizer <<<"$FFMPEG_FILTERS" \
    || die "this ffmpeg has no sofalizer filter (Debian's ffmpeg package has it, built with libmysofa)"
if [[ ! -s $INPUT ]]; then need sox sox; fi

# Pin to one core when taskset exists; CPU time is what we compare anyway, but
# pinning keeps any internal threads of a renderer from spreading out.
PIN=() PIN_DESC="NOT pinned (no taskset)"
if command -v taskset >/dev/null 2>&1; then
    PIN=(taskset -c "$PIN_CPU") PIN_DESC="pinned to core $PIN_CPU with taskset"
else
    note "taskset not found (apt-get install util-linux): renderers are not pinned"
fi

mkdir -p "$CACHE_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/studiocast-compare-run.XXXXXX")
readonly WORK
# Temp outputs (rendered WAVs, logs, the compiled driver) go; the cached input stays.
trap 'rm -rf "$WORK"' EXIT

# ------------------------------------------------------------------ the input
# 16 channels of distinct signals (noise of three colours and sines), one per
# ACN channel, at -20 dBFS peak. This is not a physically meaningful sound
# field, but the renderers' cost does not depend on the content, only on it
# being real non-silent audio (no denormals, no all-zero shortcuts). sox -R
# seeds its noise generators so the file is the same on every machine.
make_input() {
    local tmp=$INPUT.tmp.$$
    note "generating $INPUT (cached for later runs)"
    sox -R -n -r "$RATE" -c "$CHANNELS" -b 32 -e floating-point -t wav "$tmp" \
        synth "$DURATION" \
        pinknoise sine 110 whitenoise sine 220 brownnoise sine 330 pinknoise sine 440 \
        whitenoise sine 550 brownnoise sine 660 pinknoise sine 770 whitenoise sine 880 \
        gain -20 </dev/null || { rm -f "$tmp"; die "sox could not generate the input"; }
    mv -f "$tmp" "$INPUT"   # atomic: an interrupted run never leaves a half file
}
# A truncated or foreign file under the cache name is regenerated.
if [[ ! -s $INPUT ]] || (($(stat -c %s "$INPUT") < INPUT_DATA_BYTES)); then
    need sox sox
    make_input
fi

# ---------------------------------------------------------- renderer set-up
# studiocast: build only if the default binary is missing (a custom
# STUDIOCAST_BIN is the caller's business). STUDIOCAST_NO_BUILD=1 skips the row
# instead, for machines where building is not wanted.
STUDIOCAST_SKIP=""
if [[ ! -x $STUDIOCAST_BIN ]]; then
    if [[ $STUDIOCAST_BIN != "$DEFAULT_STUDIOCAST_BIN" ]]; then
        die "STUDIOCAST_BIN=$STUDIOCAST_BIN is not an executable file"
    elif [[ ${STUDIOCAST_NO_BUILD:-0} == 1 ]]; then
        STUDIOCAST_SKIP="binary $STUDIOCAST_BIN missing and STUDIOCAST_NO_BUILD=1"
        note "SKIPPING studiocast: $STUDIOCAST_SKIP"
    else
        need cargo "cargo (or a rustup toolchain)"
        note "$STUDIOCAST_BIN missing: cargo build --release -p studiocast"
        cargo build --release -p studiocast </dev/null \
            || die "cargo build --release -p studiocast failed"
        [[ -x $STUDIOCAST_BIN ]] || die "build finished but $STUDIOCAST_BIN does not exist"
    fi
fi

# libspatialaudio driver: compiled fresh each run (a few seconds) into the temp
# dir, so it can never be stale. Link flags from the .pc file when there is one.
LSA_BIN=$WORK/lsa_render
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists spatialaudio; then
    read -r -a LSA_FLAGS <<<"$(pkg-config --cflags --libs spatialaudio)"
else
    LSA_FLAGS=(-lspatialaudio -lmysofa -lm -lz)
fi
g++ -O2 -std=c++14 -o "$LSA_BIN" "$REPO_ROOT/benches/compare/lsa_render.cpp" "${LSA_FLAGS[@]}" \
    || die "could not compile benches/compare/lsa_render.cpp (is libspatialaudio-dev installed?)"

# ffmpeg sofalizer treats the 16 channels as 16 virtual loudspeakers (it has no
# ambisonic decoder). Positions: a 16-point Fibonacci (golden-angle) sphere,
# i.e. near-uniform coverage with every speaker at a different azimuth and
# elevation, so every channel gets its own HRIR pair. Speakers are addressed
# by channel index ("0 az el|1 az el|..."): ffmpeg 5.1 stores positions given
# by channel *name* under the channel's id but reads them back by channel
# index, and in hexadecagonal the two differ (TFL is id 12 but index 8).
# Azimuth is counter-clockwise from the front, elevation up, in degrees.
SPEAKERS=$(awk -v n="$CHANNELS" -f "$REPO_ROOT/benches/compare/speakers.awk")
# channelmap relabels the 16 channels by index as "hexadecagonal" (the only
# 16-channel layout ffmpeg knows, and one whose channels sofalizer accepts)
# whatever layout ffmpeg guessed for the WAV. sofalizer then runs at the SOFA
# file's own rate (44.1 kHz for MIT KEMAR): ffmpeg 5.1 cannot resample the
# HRIRs, so it auto-inserts a 16-channel 48 -> 44.1 kHz resampler before it and
# the output is 44.1 kHz. The "ref" row below measures that overhead alone.
FFMPEG_FILTER="channelmap=channel_layout=hexadecagonal,sofalizer=sofa=$SOFA:type=freq:speakers=$SPEAKERS"
# -threads 1 -filter_threads 1: one decoding/filtering thread, i.e. one core.
FFMPEG_COMMON=(ffmpeg -hide_banner -nostdin -nostats -loglevel error -y -threads 1 -filter_threads 1)

# ------------------------------------------------------------------ measuring
# Load before we start: anything else running skews even CPU times a little
# (shared caches, SMT siblings), so the report shows it.
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A BEST_CPU=() BEST_WALL=() FAILED=()
declare -A LABEL=(
    [studiocast]="studiocast (block $BLOCK)"
    [ffmpeg]="ffmpeg sofalizer (freq, 16 spk)"
    [lsa]="libspatialaudio binauralizer"
    [ffmpeg_ref]="ref: ffmpeg resample only"
)

# run_one NAME ROUND CMD...: time one run with bash's `time` (counts children
# too, needs no extra package); keep the fastest CPU time per renderer.
run_one() {
    local name=$1 round=$2; shift 2
    local log=$WORK/$name.$round.log tf=$WORK/$name.$round.time TIMEFORMAT='%R %U %S'
    [[ -n ${FAILED[$name]:-} ]] && return 0
    if ! { time "${PIN[@]}" "$@" </dev/null >"$log" 2>&1; } 2>"$tf"; then
        FAILED[$name]="exited non-zero (its output is shown above)"
        note "$name run $round FAILED; last lines of its output:"
        tail -n 15 "$log" >&2 || true
        return 0
    fi
    local wall user sys cpu
    read -r wall user sys <"$tf"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.3f", u + s }')
    note "$name run $round: wall ${wall}s cpu ${cpu}s"
    if [[ -z ${BEST_CPU[$name]:-} ]] || awk -v a="$cpu" -v b="${BEST_CPU[$name]}" 'BEGIN { exit !(a < b) }'; then
        BEST_CPU[$name]=$cpu BEST_WALL[$name]=$wall
        cp "$log" "$WORK/$name.best.log"
    fi
}

# check_output NAME FILE: a renderer only gets a figure if it wrote a stereo
# file at least as long as the input, so a stub or an early exit cannot "win".
check_output() {
    local name=$1 file=$2 info
    if [[ -z ${FAILED[$name]:-} ]]; then
        info=$(ffprobe -v error -select_streams a:0 -show_entries stream=channels:format=duration \
            -of default=nw=1:nk=1 "$file" 2>/dev/null | tr '\n' ' ') || info=""
        if ! awk -v d="$DURATION" -v info="$info" 'BEGIN {
                n = split(info, f, " "); exit !(n == 2 && f[1] == 2 && f[2] + 0.01 >= d) }'; then
            FAILED[$name]="wrote no ${DURATION} s stereo output (ffprobe: channels duration = '${info% }')"
            unset "BEST_CPU[$name]" "BEST_WALL[$name]"
            note "$name: ${FAILED[$name]}"
        fi
    fi
    rm -f "$file"   # outputs are only needed to prove the run did something
}

# Rounds interleave the renderers so slow drifts in machine load (thermal,
# neighbours) hit all of them alike rather than whichever ran last.
for ((round = 1; round <= RUNS; round++)); do
    if [[ -z $STUDIOCAST_SKIP ]]; then
        out=$WORK/studiocast.wav
        run_one studiocast "$round" "$STUDIOCAST_BIN" render "$INPUT" -o "$out" \
            --input-format ambix --order "$ORDER" --block "$BLOCK"
        check_output studiocast "$out"
    fi

    out=$WORK/ffmpeg.wav
    run_one ffmpeg "$round" "${FFMPEG_COMMON[@]}" -i "$INPUT" -af "$FFMPEG_FILTER" -c:a pcm_f32le "$out"
    # The rate sofalizer ran at decides the reference row's resampler.
    if [[ -s $out ]]; then
        FFMPEG_RATE=$(ffprobe -v error -select_streams a:0 \
            -show_entries stream=sample_rate -of default=nw=1:nk=1 "$out") || true
    fi
    check_output ffmpeg "$out"

    out=$WORK/lsa.wav
    run_one lsa "$round" "$LSA_BIN" "$INPUT" "$out" "$SOFA" "$BLOCK"
    check_output lsa "$out"

    # Overhead reference: everything the ffmpeg row does except the HRTF
    # convolution (decode, 16-channel resample, no encode). Not a renderer.
    if [[ -n ${FFMPEG_RATE:-} ]]; then
        run_one ffmpeg_ref "$round" "${FFMPEG_COMMON[@]}" -i "$INPUT" \
            -af "channelmap=channel_layout=hexadecagonal,aresample=$FFMPEG_RATE" -f null -
    else
        FAILED[ffmpeg_ref]="ffmpeg row produced no output to take the rate from"
    fi
done

# ------------------------------------------------------------------- report
# --no-optional-locks: read-only, git must not refresh/write the index.
GIT_DIRTY=""
if [[ -n $(git -C "$REPO_ROOT" --no-optional-locks status --porcelain 2>/dev/null) ]]; then
    GIT_DIRTY="+uncommitted changes"
fi
echo
echo "== studiocast binaural render comparison =="
echo "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "cpu:      $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1) ($(nproc) cores online; renderers $PIN_DESC)"
echo "load:     $LOAD_BEFORE (1/5/15 min, before the runs; well above 0 means noisy figures)"
echo "input:    $INPUT"
echo "          ${DURATION} s, ${CHANNELS} ch, ${RATE} Hz, f32, order-${ORDER} AmbiX (ACN/SN3D)"
echo "hrtf:     $SOFA"
echo "tools:    $(ffmpeg -hide_banner -version | head -n 1 | cut -d' ' -f1-3);" \
     "libspatialaudio $(dpkg-query -W -f '${Version}' libspatialaudio-dev 2>/dev/null || echo '?');" \
     "studiocast $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$GIT_DIRTY"
echo "runs:     $RUNS per renderer, fastest (by CPU s) kept"
echo

SC_CPU=""
[[ -z ${FAILED[studiocast]:-} ]] && SC_CPU=${BEST_CPU[studiocast]:-}
printf '%-34s %8s %8s %12s %14s\n' "renderer" "wall s" "cpu s" "x real time" "sc speed-up"
printf '%-34s %8s %8s %12s %14s\n' "--------" "------" "-----" "-----------" "-----------"
for name in studiocast ffmpeg lsa ffmpeg_ref; do
    if [[ $name == studiocast && -n $STUDIOCAST_SKIP ]]; then
        printf '%-34s %s\n' "${LABEL[$name]}" "skipped: $STUDIOCAST_SKIP"
    elif [[ -n ${FAILED[$name]:-} ]]; then
        printf '%-34s %s\n' "${LABEL[$name]}" "FAILED: ${FAILED[$name]}"
    else
        awk -v label="${LABEL[$name]}" -v wall="${BEST_WALL[$name]}" -v cpu="${BEST_CPU[$name]}" \
            -v dur="$DURATION" -v sc="$SC_CPU" -v isref="$([[ $name == ffmpeg_ref ]] && echo 1)" 'BEGIN {
            ratio = (sc == "" || isref) ? "n/a" : sprintf("%.2f", cpu / sc)
            printf "%-34s %8.2f %8.2f %12.1f %14s\n", label, wall, cpu, dur / cpu, ratio
        }'
    fi
done
echo
echo "x real time = ${DURATION} s / cpu s.  sc speed-up = this row's cpu s / studiocast's cpu s"
echo "(2.00: studiocast needs half the CPU; 0.50: studiocast needs twice as much)."
if [[ -z ${FAILED[lsa]:-} && -s $WORK/lsa.best.log ]]; then
    # The driver also times the library's Process() calls alone (no WAV I/O,
    # no SOFA loading/filter design).
    awk '/^LSA_RESULT/ {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "libspatialaudio: HRTF %s, %s taps, block %s; Process() alone: %s cpu s = %s x real time\n",
            v["hrtf"], v["taps"], v["block"], v["process_cpu_s"], v["process_xrt"]
    }' "$WORK/lsa.best.log" || true
fi
echo "ffmpeg: 16 virtual speakers on a Fibonacci sphere, frequency-domain convolution, 1024-sample"
echo "        frames (its minimum), run at the SOFA's rate ${FFMPEG_RATE:-?} Hz via an auto-inserted resampler."

status=0
for name in "${!FAILED[@]}"; do status=1; done
exit "$status"
