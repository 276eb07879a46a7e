#!/usr/bin/env bash
# Movies on the farm (bench/README.md, "5. Media": the parallel and streaming lines): a
# review movie in segments on one and on two workers against the same movie as one task,
# and a movie that follows a render frame by frame against one made after the render.
# bench/media.sh runs it at its end (MOVIE_FARM=0 skips it); alone:
#
#   bench/movie_farm.sh BUILD_DIR
#
# key=value results on stdout, progress on stderr, then a markdown table on stdout.
# Env: FRAMES (100), DISTINCT (10 distinct noisy frames, copied round-robin), MEDIA_SIZE
# (2048x1080), REPS (3: each case runs REPS times, interleaved, the median is reported),
# RENDER_S (0.5: the fake render's seconds per frame; chunks of 10 frames, 2 at a time),
# PUBLISH_REPS (1), PARTS ("parallel streaming publish": which lines to run),
# PUBLISH_MOVIE_AFTER ("frames", as shipped; "job": the movie after all the proxies).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init "${1:-}"

FRAMES=${FRAMES:-100}
DISTINCT=${DISTINCT:-10}
REPS=${REPS:-3}
RENDER_S=${RENDER_S:-0.5}
PARTS=${PARTS:-parallel streaming publish}
want() { [[ " $PARTS " == *" $1 "* ]]; }
((DISTINCT > FRAMES)) && DISTINCT=$FRAMES
MEDIA_SIZE=${MEDIA_SIZE:-2048x1080}
WIDTH=${MEDIA_SIZE%x*}
HEIGHT=${MEDIA_SIZE#*x}
command -v oiiotool >/dev/null || die "oiiotool not found (openimageio-tools)"
FH=$BIN/farmhand
D=$BENCH_WORK
declare -A R
kv() { echo "$1"; R["${1%%=*}"]="${1#*=}"; }
kv "frames=$FRAMES"
kv "size=${WIDTH}x$HEIGHT"
kv "nproc=$(nproc)"
kv "date=$(date -u '+%Y-%m-%d %H:%M UTC')"

log "generating $DISTINCT distinct ${WIDTH}x$HEIGHT RGBA half frames (zip)"
mkdir -p "$D/out"
noise_sequence "$D/src" "$D/zip" "$DISTINCT" "$FRAMES" "${WIDTH}x$HEIGHT"

# Two local workers of one slot each for the movies (the media work); the fake render
# sleeps and copies, so it takes slots but no CPU: two more slots each for it.
write_config "$D/farmhand.yaml" 3
cat >>"$D/farmhand.yaml" <<EOF
  render:
    argv: [/bin/sh, -c, 'sleep "\$1"; cp "\$2" "\$3"', sh, "{seconds}", "{src}/f.{frame:04}.exr",
      "{dst}/f.{frame:04}.exr"]
    params:
      seconds: { pattern: '^[0-9.]+$' }
      src: { pattern: '^[A-Za-z0-9_./-]+$' }
      dst: { pattern: '^[A-Za-z0-9_./-]+$' }
EOF
log "starting farmhandd with 2 local workers"
start_broker "$D/farmhand.yaml" "$D/state" 2

# submit ARGS...: submits, prints the job id.
submit() {
  "$FH" --json submit "$@" 2>>"$D/cli.log" | grep -o '"job_id": *[0-9]*' | grep -o '[0-9]*$' ||
    die "failed: submit $* (see $D/cli.log)"
}
# finish ID: waits for the job; fails unless it succeeded.
finish() { "$FH" watch "$1" >>"$D/cli.log" 2>&1 || die "job $1 did not succeed (see $D/cli.log)"; }
# job_ms ID KEY: a job's started_unix_ms or finished_unix_ms.
job_ms() {
  "$FH" --json status "$1" | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['job']['$2'])"
}
# join_s ID: the join task's own time, from its log.
join_s() {
  "$FH" logs "$1" 2>/dev/null | { grep -o 'bytes in [0-9.]* s' || echo 'bytes in 0 s'; } |
    tail -n 1 | awk '{ print $3 }'
}
frames_of() {
  ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames \
    -of csv=p=0 "$1"
}

log "warm-up movie"
finish "$(submit transcode "$D/zip/f.1-10####.exr" -o "$D/out/warm.mp4")"

# ---- Parallel: one task, two segments one at a time, two and four on two workers ----------
declare -A RUNS
want parallel || REPS_PARALLEL=0
for r in $(seq "${REPS_PARALLEL:-$REPS}"); do
  for c in whole seg2_one_worker seg2 seg4; do
    case $c in
      whole) args=(--segments 1) ;;
      seg2_one_worker) args=(--segments 2 --max-running 1) ;;
      seg2) args=(--segments 2) ;;
      seg4) args=(--segments 4) ;;
    esac
    log "parallel movie $c, run $r"
    t0=$(now_ns)
    id=$(submit transcode "$D/zip/f.####.exr" -o "$D/out/$c.$r.mp4" --fps 24 "${args[@]}")
    finish "$id"
    RUNS[$c]+="$(ms_since "$t0") "
    [[ $c = whole ]] || RUNS[${c}_join]+="$(join_s "$id") "
    n=$(frames_of "$D/out/$c.$r.mp4")
    [[ "$n" = "$FRAMES" ]] || die "$c movie has $n frames, not $FRAMES"
  done
done
for c in whole seg2_one_worker seg2 seg4; do
  want parallel || continue
  # shellcheck disable=SC2086
  kv "parallel_${c}_ms=$(median ${RUNS[$c]})"
  # shellcheck disable=SC2086
  [[ $c = whole ]] || kv "parallel_${c}_join_s=$(median ${RUNS[${c}_join]})"
done
for c in seg2_one_worker seg2 seg4; do
  want parallel || continue
  kv "parallel_${c}_vs_whole=$(calc "${R[parallel_${c}_ms]} / ${R[parallel_whole_ms]}")"
done

# ---- Streaming: the movie after the render against the movie behind it frame by frame -----
want streaming || REPS_STREAMING=0
for r in $(seq "${REPS_STREAMING:-$REPS}"); do
  for c in after streamed; do
    log "streaming movie $c, run $r"
    dst=$D/render_${c}_$r
    mkdir -p "$dst"
    render=$(submit command render --frames "1-$FRAMES" --chunk 10 --max-running 2 \
      --param "seconds=$RENDER_S" \
      --param "src=$D/zip" --param "dst=$dst")
    if [[ $c = after ]]; then dep=(--after "$render"); else dep=(--after-frames "$render"); fi
    movie=$(submit transcode "$(printf '%s/f.1-%d####.exr' "$dst" "$FRAMES")" -o "$dst/movie.mp4" \
      --fps 24 --priority 10 "${dep[@]}")
    finish "$movie"
    rendered=$(job_ms "$render" finished_unix_ms)
    started=$(job_ms "$render" started_unix_ms)
    done_ms=$(job_ms "$movie" finished_unix_ms)
    RUNS[stream_${c}_tail]+="$((done_ms - rendered)) "
    RUNS[stream_${c}_total]+="$((done_ms - started)) "
    n=$(frames_of "$dst/movie.mp4")
    [[ "$n" = "$FRAMES" ]] || die "$c movie has $n frames, not $FRAMES"
  done
done
for c in after streamed; do
  want streaming || continue
  # shellcheck disable=SC2086
  kv "stream_${c}_tail_ms=$(median ${RUNS[stream_${c}_tail]})"
  # shellcheck disable=SC2086
  kv "stream_${c}_total_ms=$(median ${RUNS[stream_${c}_total]})"
done
want streaming && kv "stream_tail_vs_after=$(calc "${R[stream_streamed_tail_ms]} / ${R[stream_after_tail_ms]}")"

# ---- The whole publish: the shipped review rule against the peers' scripts ---------------
# Thumbnail, half-size JPEG proxies (chunk 10) and an H.264 movie made from the proxies as
# they come (config/farmhand.yaml); the peers back to back on the same frames: oiiotool
# thumbnail, oiiotool --frames proxies, ffmpeg movie of the EXRs (PUBLISH_REPS runs each).
PUBLISH_REPS=${PUBLISH_REPS:-1}
want publish || PUBLISH_REPS=0
stop_broker
awk '/^rules:/ { on = 1 } on && /^# Watched folders/ { exit } on' "$SRC/config/farmhand.yaml" \
  >"$D/rules.yaml"
grep -q 'after_frames: proxies' "$D/rules.yaml" || die "no review rule in config/farmhand.yaml"
# PUBLISH_MOVIE_AFTER=job: the movie after the whole proxies job, as the rule was before it
# streamed (for the before/after).
if [[ "${PUBLISH_MOVIE_AFTER:-frames}" = job ]]; then
  sed -i 's/after_frames: proxies/after: [proxies]/' "$D/rules.yaml"
fi
write_config "$D/publish.yaml" 1
cat "$D/rules.yaml" >>"$D/publish.yaml"
log "starting farmhandd with 2 local workers and the shipped review rule"
start_broker "$D/publish.yaml" "$D/state_publish" 2
finish "$(submit thumbnail "$D/zip/f.0001.exr" -o "$D/out/warm.jpg")"
for r in $(seq "$PUBLISH_REPS"); do
  pub=$D/publish_$r
  mkdir -p "$pub"
  for f in $(seq "$FRAMES"); do ln "$(printf '%s/zip/f.%04d.exr' "$D" "$f")" "$pub/"; done
  log "publish $r: farmhand publish --wait"
  t0=$(now_ns)
  "$FH" publish "$pub/f.####.exr" --wait >>"$D/cli.log" 2>&1 || die "publish failed (see $D/cli.log)"
  RUNS[publish]+="$(ms_since "$t0") "
  # Each job's span from the publish, for the log.
  "$FH" --json ls 2>/dev/null | /usr/bin/python3 -c '
import json, sys
t0 = int(sys.argv[1]) // 1000000
for j in json.load(sys.stdin):
    s, f = j.get("started_unix_ms") or 0, j.get("finished_unix_ms") or 0
    if f and f >= t0:
        n = j["name"]
        print(f"  {n}: {(s - t0) / 1000:.2f}-{(f - t0) / 1000:.2f} s", file=sys.stderr)
' "$t0" || true
  n=$(frames_of "$pub/review/f.mov")
  [[ "$n" = "$FRAMES" ]] || die "the published movie has $n frames, not $FRAMES"
  log "publish $r: the peers' scripts"
  mkdir -p "$pub/peers/proxy"
  t0=$(now_ns)
  oiiotool "$pub/f.0001.exr" --ch R,G,B --resize 256x0 --colorconvert linear sRGB \
    -o "$pub/peers/thumb.jpg"
  RUNS[peer_thumb]+="$(ms_since "$t0") "
  t0=$(now_ns)
  oiiotool --frames "1-$FRAMES" "$pub/f.%04d.exr" --ch R,G,B --resize 50% \
    --colorconvert linear sRGB -o "$pub/peers/proxy/p.%04d.jpg"
  RUNS[peer_proxies]+="$(ms_since "$t0") "
  t0=$(now_ns)
  ffmpeg -nostdin -y -loglevel error -apply_trc iec61966_2_1 -framerate 24 -start_number 1 \
    -i "$pub/f.%04d.exr" -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p -profile:v high \
    -g 30 -bf 0 "$pub/peers/movie.mov"
  RUNS[peer_movie]+="$(ms_since "$t0") "
done
for c in publish peer_thumb peer_proxies peer_movie; do
  ((PUBLISH_REPS > 0)) || continue
  # shellcheck disable=SC2086
  kv "${c}_ms=$(median ${RUNS[$c]})"
done
((PUBLISH_REPS > 0)) && kv "peers_total_ms=$(calc "${R[peer_thumb_ms]} + ${R[peer_proxies_ms]} + ${R[peer_movie_ms]}")"
((PUBLISH_REPS > 0)) && kv "publish_vs_peers=$(calc "${R[publish_ms]} / ${R[peers_total_ms]}")"

echo
echo "FRAMES=$FRAMES at ${WIDTH}x$HEIGHT (zip EXR, H.264), $(nproc) cores, medians of $REPS," \
  "$(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| movie on the farm | farmhand | against | ratio | target | met |"
echo "| --- | --- | --- | --- | --- | --- |"
row() { # row NAME FARMHAND AGAINST RATIO TARGET
  local met='(no target)'
  [[ -n "$5" ]] && met=$(awk -v r="$4" -v t="$5" 'BEGIN { print (r <= t) ? "yes" : "**no**" }')
  printf '| %s | %s | %s | %.2f× | %s | %s |\n' "$1" "$2" "$3" "$4" "${5:+≤ $5×}" "$met"
}
want parallel && row "2 segments on 2 workers (join ${R[parallel_seg2_join_s]} s)" "${R[parallel_seg2_ms]} ms" \
  "one task ${R[parallel_whole_ms]} ms" "${R[parallel_seg2_vs_whole]}" 1.05
want parallel && row "2 segments on 1 worker (--max-running 1)" "${R[parallel_seg2_one_worker_ms]} ms" \
  "one task ${R[parallel_whole_ms]} ms" "${R[parallel_seg2_one_worker_vs_whole]}" ""
want parallel && row "4 segments on 2 workers (join ${R[parallel_seg4_join_s]} s)" "${R[parallel_seg4_ms]} ms" \
  "one task ${R[parallel_whole_ms]} ms" "${R[parallel_seg4_vs_whole]}" ""
want streaming && row "Last render task → movie done, streamed (total ${R[stream_streamed_total_ms]} ms)" \
  "${R[stream_streamed_tail_ms]} ms" \
  "after the render ${R[stream_after_tail_ms]} ms (total ${R[stream_after_total_ms]} ms)" \
  "${R[stream_tail_vs_after]}" ""
want publish && row "Whole publish (shipped rule: thumbnail, proxies, movie streamed from them)" \
  "${R[publish_ms]} ms" \
  "oiiotool ${R[peer_thumb_ms]} + oiiotool --frames ${R[peer_proxies_ms]} + ffmpeg ${R[peer_movie_ms]} = ${R[peers_total_ms]} ms" \
  "${R[publish_vs_peers]}" 0.15
true
