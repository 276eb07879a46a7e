#!/usr/bin/env bash
# The H.264 movie's CPU time against ffmpeg's on the same frames and flags (bench/README.md,
# "5. Media", issue 14's "one process, less CPU" line), REPS times interleaved: media.sh
# measures it once per run, and one pair moves by a few per cent on a shared machine.
#
#   bench/movie_cpu.sh BUILD_DIR
#
# farmhand: `farmhand submit transcode ... --codec h264 --fps 24 --crf 23 --wait` on a broker
# with one local worker; its CPU is the warm farmhand-media process' (/proc/PID/stat, user +
# system) over the job. ffmpeg: `-apply_trc iec61966_2_1 ... -c:v libx264 -preset veryfast
# -crf 23 -pix_fmt yuv420p -profile:v high -g 30 -bf 0`, user + system of the whole process.
# key=value results on stdout (each pair, then medians), progress on stderr.
# Env: FRAMES (100), DISTINCT (10 distinct noisy frames, copied round-robin), MEDIA_SIZE
# (2048x1080), REPS (5).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init "${1:-}"

FRAMES=${FRAMES:-100}
DISTINCT=${DISTINCT:-10}
REPS=${REPS:-5}
((DISTINCT > FRAMES)) && DISTINCT=$FRAMES
MEDIA_SIZE=${MEDIA_SIZE:-2048x1080}
WIDTH=${MEDIA_SIZE%x*}
HEIGHT=${MEDIA_SIZE#*x}
for tool in oiiotool ffmpeg; do
  command -v "$tool" >/dev/null || die "$tool not found (openimageio-tools, ffmpeg)"
done
FH=$BIN/farmhand
D=$BENCH_WORK
kv() { echo "$1"; }
kv "frames=$FRAMES"
kv "size=${WIDTH}x$HEIGHT"
kv "nproc=$(nproc)"
kv "date=$(date -u '+%Y-%m-%d %H:%M UTC')"

log "generating $DISTINCT distinct ${WIDTH}x$HEIGHT RGBA half frames (zip), $FRAMES-frame sequence"
noise_sequence "$D/src" "$D/zip" "$DISTINCT" "$FRAMES" "${WIDTH}x$HEIGHT"

write_config "$D/farmhand.yaml" 1
log "starting farmhandd with 1 local worker"
start_broker "$D/farmhand.yaml" "$D/state" 1
log "warm-up thumbnail (starts the warm farmhand-media process)"
"$FH" submit thumbnail "$D/src/1.exr" -o "$D/warm.jpg" --size 256 --wait >>"$D/cli.log" 2>&1 ||
  die "warm-up failed (see $D/cli.log, BENCH_KEEP=1)"

ratios=()
fh_all=()
ff_all=()
for rep in $(seq "$REPS"); do
  # shellcheck disable=SC2046  # one pid per word
  cpu0=$(cpu_ms $(media_pids))
  "$FH" submit transcode "$D/zip/f.####.exr" -o "$D/fh_$rep.mov" --codec h264 --fps 24 \
    --crf 23 --wait >>"$D/cli.log" 2>&1 || die "farmhand transcode failed (see $D/cli.log)"
  # shellcheck disable=SC2046
  fh=$(($(cpu_ms $(media_pids)) - cpu0))
  /usr/bin/time -f '%U %S' -o "$D/ff_cpu" ffmpeg -nostdin -y -loglevel error \
    -apply_trc iec61966_2_1 -framerate 24 -start_number 1 -i "$D/zip/f.%04d.exr" \
    -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p -profile:v high -g 30 -bf 0 \
    "$D/ff_$rep.mov"
  ff=$(tail -n 1 "$D/ff_cpu" | awk '{ printf "%.0f", ($1 + $2) * 1000 }')
  ratio=$(calc "$fh / $ff")
  log "pair $rep: farmhand $fh ms CPU, ffmpeg $ff ms CPU: $ratio"
  kv "pair_${rep}_farmhand_cpu_ms=$fh"
  kv "pair_${rep}_ffmpeg_cpu_ms=$ff"
  kv "pair_${rep}_cpu_vs_ffmpeg=$ratio"
  ratios+=("$ratio")
  fh_all+=("$fh")
  ff_all+=("$ff")
  rm -f "$D/fh_$rep.mov" "$D/ff_$rep.mov"
done
kv "farmhand_cpu_ms_median=$(median "${fh_all[@]}")"
kv "ffmpeg_cpu_ms_median=$(median "${ff_all[@]}")"
kv "cpu_vs_ffmpeg_median=$(median "${ratios[@]}")"
kv "cpu_vs_ffmpeg_min=$(printf '%s\n' "${ratios[@]}" | sort -g | head -n 1)"
kv "cpu_vs_ffmpeg_max=$(printf '%s\n' "${ratios[@]}" | sort -g | tail -n 1)"
