#!/usr/bin/env bash
# Media benchmark (bench/README.md, "5. Media"): farmhand's thumbnail, convert and transcode
# jobs side by side with oiiotool, ffmpeg and an in-process decode floor, in the same run.
#
#   bench/media.sh BUILD_DIR          # FRAMES=100 by default; FRAMES=20 for a quick run
#
# key=value results on stdout, progress on stderr, then a markdown table on stdout.
# Env: FRAMES (100), DISTINCT (10 distinct noisy frames, copied round-robin), THUMB_REPS (5),
# OIIO_REPS (3), SEQ_VARIANTS ("zip": the sequences the proxy/movie sections run on; any of
# zip piz dwaa), LONG_FRAMES (1000: the length of the second peak-RSS run, 0 to skip it),
# MEDIA_SIZE (2048x1080; 4096x2160 for the 4K line: FRAMES=24 DISTINCT=4 LONG_FRAMES=0),
# MOVIE_FARM (1: then runs bench/movie_farm.sh, the parallel, streaming and publish lines).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init "${1:-}"

FRAMES=${FRAMES:-100}
DISTINCT=${DISTINCT:-10}
THUMB_REPS=${THUMB_REPS:-5}
OIIO_REPS=${OIIO_REPS:-3}
SEQ_VARIANTS=${SEQ_VARIANTS:-zip}
LONG_FRAMES=${LONG_FRAMES:-1000}
((DISTINCT > FRAMES)) && DISTINCT=$FRAMES
MEDIA_SIZE=${MEDIA_SIZE:-2048x1080}
WIDTH=${MEDIA_SIZE%x*}
HEIGHT=${MEDIA_SIZE#*x}
[[ "$WIDTH" =~ ^[0-9]+$ && "$HEIGHT" =~ ^[0-9]+$ ]] || die "MEDIA_SIZE must be WxH, not $MEDIA_SIZE"

for exe in "$BIN/farmhand-media" "$BENCH_BIN/farmhand_bench_decode" \
  "$BENCH_BIN/farmhand_bench_media_ops"; do
  [[ -x "$exe" ]] || die "missing $exe: build first (cmake --build $BUILD)"
done
for tool in oiiotool ffmpeg; do
  command -v "$tool" >/dev/null || die "$tool not found (openimageio-tools, ffmpeg)"
done

FH=$BIN/farmhand
declare -A R
# kv KEY=VALUE: one result, on stdout and kept in R for the table.
kv() { echo "$1"; R["${1%%=*}"]="${1#*=}"; }
D=$BENCH_WORK
NOISE=noise:type=gaussian:mean=0.5:stddev=0.2

kv "frames=$FRAMES"
kv "size=${WIDTH}x$HEIGHT"
kv "distinct_frames=$DISTINCT"
kv "nproc=$(nproc)"
kv "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
kv "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- 1. Test data ----------------------------------------------------------------------
# DISTINCT different noisy frames per compression, copied (cp: separate inodes, separate page
# cache pages) round-robin to FRAMES files, since generating 100 distinct frames takes minutes.
log "generating $DISTINCT distinct ${WIDTH}x$HEIGHT RGBA half frames (zip, piz, dwaa)"
mkdir -p "$D/src" "$D/zip" "$D/piz" "$D/dwaa"
for i in $(seq "$DISTINCT"); do
  oiiotool --pattern "$NOISE:seed=$i" "${WIDTH}x$HEIGHT" 4 -d half --compression zip \
    -o "$D/src/zip.$i.exr"
  oiiotool "$D/src/zip.$i.exr" --compression piz -o "$D/src/piz.$i.exr"
  oiiotool "$D/src/zip.$i.exr" --compression dwaa -o "$D/src/dwaa.$i.exr"
done
log "generating the 40-channel frame (RGBA + 36 AOV channels, zip)"
names=R,G,B,A
for aov in diffuse specular emission normal position depth albedo sss coat; do
  names+=",$aov.R,$aov.G,$aov.B,$aov.A"
done
oiiotool --pattern "$NOISE:seed=100" "${WIDTH}x$HEIGHT" 4 \
  --pattern "$NOISE:seed=101" "${WIDTH}x$HEIGHT" 36 \
  --chappend --chnames "$names" -d half --compression zip -o "$D/src/aov40.exr"
log "copying them to $FRAMES-frame sequences ($SEQ_VARIANTS)"
for v in $SEQ_VARIANTS; do
  for f in $(seq "$FRAMES"); do
    cp "$D/src/$v.$(((f - 1) % DISTINCT + 1)).exr" "$(printf '%s/%s/f.%04d.exr' "$D" "$v" "$f")"
  done
done
# Thumbnail inputs: one file per variant (frame 1 of each, as a single file).
mkdir -p "$D/thumb"
for v in zip piz dwaa; do cp "$D/src/$v.1.exr" "$D/thumb/$v.exr"; done
cp "$D/src/aov40.exr" "$D/thumb/aov40.exr"
for v in zip piz dwaa aov40; do kv "size_bytes_$v=$(stat -c %s "$D/thumb/$v.exr")"; done

# ---- Broker: 2 local workers, 1 slot each ------------------------------------------------
write_config "$D/farmhand.yaml" 1
log "starting farmhandd with 2 local workers"
start_broker "$D/farmhand.yaml" "$D/state" 2

# fh_time VAR CMD...: runs a farmhand CLI command, sets VAR to its wall time in ms.
fh_time() {
  local __var=$1 t0
  # shellcheck disable=SC2034
  shift
  t0=$(now_ns)
  "$@" >>"$D/cli.log" 2>&1 || die "failed: $* (see $D/cli.log, BENCH_KEEP=1)"
  printf -v "$__var" '%s' "$(ms_since "$t0")"
}


# ---- 2. Thumbnails -----------------------------------------------------------------------
log "warm-up thumbnail"
warm=0
fh_time warm "$FH" submit thumbnail "$D/thumb/zip.exr" -o "$D/warm.jpg" --size 256 --wait
kv "thumb_warmup_ms=$warm"
for v in zip piz dwaa aov40; do
  runs=()
  for r in $(seq "$THUMB_REPS"); do
    fh_time ms "$FH" submit thumbnail "$D/thumb/$v.exr" -o "$D/t_fh_${v}_$r.jpg" --size 256 --wait
    runs+=("$ms")
  done
  fh=$(median "${runs[@]}")
  log "thumbnail $v: farmhand submit --wait ${runs[*]} ms"
  runs_o=()
  for r in $(seq "$OIIO_REPS"); do
    t0=$(now_ns)
    oiiotool "$D/thumb/$v.exr" --ch R,G,B --resize 256x0 --colorconvert linear sRGB \
      -o "$D/t_oiio_${v}_$r.jpg"
    runs_o+=("$(ms_since "$t0")")
  done
  oi=$(median "${runs_o[@]}")
  log "thumbnail $v: oiiotool ${runs_o[*]} ms"
  floor_out=$("$BENCH_BIN/farmhand_bench_decode" "$D/thumb/$v.exr" "$THUMB_REPS")
  floor=$(grep '^decode_ms=' <<<"$floor_out" | cut -d= -f2)
  log "thumbnail $v: decode floor $(grep '^decode_runs_ms=' <<<"$floor_out" | cut -d= -f2) ms"
  # The same thumbnail in one warm process without the farm: what the image work costs.
  ops_out=$("$BENCH_BIN/farmhand_bench_media_ops" thumbnail "$D/thumb/$v.exr" "$D/t_ops_$v.jpg" \
    "$THUMB_REPS")
  ops=$(grep '^thumbnail_ms=' <<<"$ops_out" | cut -d= -f2)
  log "thumbnail $v: in-process $(grep '^thumbnail_runs_ms=' <<<"$ops_out" | cut -d= -f2) ms"
  kv "thumb_${v}_farmhand_ms=$fh"
  kv "thumb_${v}_farmhand_runs_ms=$(IFS=,; echo "${runs[*]}")"
  kv "thumb_${v}_oiiotool_ms=$oi"
  kv "thumb_${v}_oiiotool_runs_ms=$(IFS=,; echo "${runs_o[*]}")"
  kv "thumb_${v}_floor_ms=$floor"
  kv "thumb_${v}_floor_stored_ms=$(grep '^decode_stored_ms=' <<<"$floor_out" | cut -d= -f2)"
  kv "thumb_${v}_inprocess_ms=$ops"
  kv "thumb_${v}_inprocess_vs_floor=$(calc "$ops / $floor")"
  kv "thumb_${v}_vs_stored_floor=$(calc "$fh / ${R[thumb_${v}_floor_stored_ms]}")"
  kv "thumb_${v}_vs_oiiotool=$(calc "$fh / $oi")"
  kv "thumb_${v}_vs_floor=$(calc "$fh / $floor")"
done

# ---- 3. Proxies ---------------------------------------------------------------------------
for v in $SEQ_VARIANTS; do
  mkdir -p "$D/px_fh_$v" "$D/px_oiio_$v"
  log "proxies $v: farmhand convert, $FRAMES frames, chunk 10"
  fh_time fh "$FH" submit convert "$D/$v/f.####.exr" -o "$D/px_fh_$v/p.####.jpg" --resize 50% \
    --chunk 10 --wait
  n=$(find "$D/px_fh_$v" -name '*.jpg' | wc -l)
  [[ "$n" -eq "$FRAMES" ]] || die "farmhand convert wrote $n of $FRAMES proxies"
  log "proxies $v: oiiotool --frames"
  t0=$(now_ns)
  oiiotool --frames "1-$FRAMES" "$D/$v/f.%04d.exr" --ch R,G,B --resize 50% \
    --colorconvert linear sRGB -o "$D/px_oiio_$v/p.%04d.jpg"
  oi=$(ms_since "$t0")
  log "proxies $v: farmhand $fh ms, oiiotool $oi ms"
  kv "proxy_${v}_farmhand_ms=$fh"
  kv "proxy_${v}_oiiotool_ms=$oi"
  kv "proxy_${v}_vs_oiiotool=$(calc "$fh / $oi")"
done

# ---- 4. Movies with their floors, and 5. the media process' peak RSS ------------------
# VmHWM of the warm media processes is reset (clear_refs 5) before each movie and read after it.
peak_media_kib() {
  local p m=0 k
  for p in $(media_pids); do
    k=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
    ((k > m)) && m=$k
  done
  echo "$m"
}
# Encode floor input: the DISTINCT frames decoded once by ffmpeg (sRGB curve applied) into
# raw frames of each codec's pixel format; the timed run only pipes them into the encoder.
mkdir -p "$D/raw"
for v in $SEQ_VARIANTS; do
  for codec in h264 prores; do
    [[ $codec = h264 ]] && pf=yuv420p || pf=yuv422p10le
    for i in $(seq "$DISTINCT"); do
      ffmpeg -nostdin -y -loglevel error -apply_trc iec61966_2_1 -i "$D/src/$v.$i.exr" \
        -pix_fmt "$pf" -f rawvideo "$D/raw/$v.$i.$pf"
    done
  done
done
for v in $SEQ_VARIANTS; do
  for codec in h264 prores; do
    if [[ $codec = h264 ]]; then
      ff_args=(-c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p -profile:v high -g 30 -bf 0)
      pf=yuv420p
    else
      ff_args=(-c:v prores_ks -profile:v 3 -pix_fmt yuv422p10le)
      pf=yuv422p10le
    fi
    for p in $(media_pids); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done
    log "movie $v $codec: farmhand transcode, $FRAMES frames"
    # CPU time as well as wall time: on a machine shared with others the wall time of
    # each step depends on what else runs at that moment; the CPU time much less.
    # shellcheck disable=SC2046  # one pid per word
    cpu0=$(cpu_ms $(media_pids))
    fh_time fh "$FH" submit transcode "$D/$v/f.####.exr" -o "$D/fh_${v}_$codec.mov" \
      --codec "$codec" --fps 24 --crf 23 --wait
    # shellcheck disable=SC2046
    fh_cpu=$(($(cpu_ms $(media_pids)) - cpu0))
    rss=$(peak_media_kib)
    log "movie $v $codec: ffmpeg"
    t0=$(now_ns)
    /usr/bin/time -f '%M %U %S' -o "$D/ff_rss" ffmpeg -nostdin -y -loglevel error \
      -apply_trc iec61966_2_1 -framerate 24 -start_number 1 -i "$D/$v/f.%04d.exr" \
      "${ff_args[@]}" "$D/ff_${v}_$codec.mov"
    ff=$(ms_since "$t0")
    ff_rss=$(tail -n 1 "$D/ff_rss" | awk '{ print $1 }')
    ff_cpu=$(tail -n 1 "$D/ff_rss" | awk '{ printf "%.0f", ($2 + $3) * 1000 }')
    log "movie $v $codec: decode floor (all frames, R,G,B as stored, $(nproc) at a time)"
    dec=$(/usr/bin/time -f 'cpu_s %U %S' "$BENCH_BIN/farmhand_bench_decode" --sequence "$(nproc)" \
      "$D/$v"/f.*.exr 2>&1)
    dec_cpu=$(awk '/^cpu_s/ { printf "%.0f", ($2 + $3) * 1000 }' <<<"$dec")
    dec=$(grep '^sequence_decode_ms=' <<<"$dec" | cut -d= -f2)
    log "movie $v $codec: encode floor (ffmpeg from pre-decoded raw $pf frames on a pipe)"
    t0=$(now_ns)
    for f in $(seq "$FRAMES"); do cat "$D/raw/$v.$(((f - 1) % DISTINCT + 1)).$pf"; done |
      /usr/bin/time -f '%U %S' -o "$D/enc_cpu" ffmpeg -nostdin -y -loglevel error -f rawvideo \
        -pix_fmt "$pf" -s "${WIDTH}x$HEIGHT" -framerate 24 -i - "${ff_args[@]}" \
        "$D/enc_${v}_$codec.mov"
    enc=$(ms_since "$t0")
    enc_cpu=$(tail -n 1 "$D/enc_cpu" | awk '{ printf "%.0f", ($1 + $2) * 1000 }')
    floor=$(awk -v a="$dec" -v b="$enc" 'BEGIN { print (a > b) ? a : b }')
    log "movie $v $codec: farmhand $fh ms (media peak RSS $rss KiB), ffmpeg $ff ms" \
      "($ff_rss KiB), decode floor $dec ms, encode floor $enc ms"
    k=movie_${v}_${codec}
    kv "${k}_farmhand_ms=$fh"
    kv "${k}_ffmpeg_ms=$ff"
    kv "${k}_decode_floor_ms=$dec"
    kv "${k}_encode_floor_ms=$enc"
    kv "${k}_vs_ffmpeg=$(calc "$fh / $ff")"
    kv "${k}_vs_floor=$(calc "$fh / $floor")"
    kv "${k}_farmhand_cpu_ms=$fh_cpu"
    kv "${k}_ffmpeg_cpu_ms=$ff_cpu"
    kv "${k}_decode_floor_cpu_ms=$dec_cpu"
    kv "${k}_encode_floor_cpu_ms=$enc_cpu"
    kv "${k}_cpu_vs_ffmpeg=$(calc "$fh_cpu / $ff_cpu")"
    kv "${k}_cpu_vs_floors=$(calc "$fh_cpu / ($dec_cpu + $enc_cpu)")"
    kv "${k}_media_peak_rss_kib=$rss"
    kv "${k}_ffmpeg_peak_rss_kib=$ff_rss"
    kv "${k}_farmhand_bytes=$(stat -c %s "$D/fh_${v}_$codec.mov")"
    kv "${k}_ffmpeg_bytes=$(stat -c %s "$D/ff_${v}_$codec.mov")"
  done
done

# Peak RSS of the transcoding process itself for FRAMES and for LONG_FRAMES frames (the
# long sequence is symlinks to the FRAMES files, round-robin): `farmhand-media transcode`,
# the one-shot form of the media process' transcode, under /usr/bin/time.
rss_v=${SEQ_VARIANTS%% *}
rss_run() { # rss_run N PATTERN
  /usr/bin/time -f '%e %M' -o "$D/rss_$1" "$BIN/farmhand-media" transcode "$2" \
    "$D/rss_$1.mov" --frames "1-$1" --codec h264 >/dev/null
  kv "rss_h264_${1}_frames_kib=$(awk '{ print $2 }' "$D/rss_$1")"
  kv "rss_h264_${1}_frames_s=$(awk '{ print $1 }' "$D/rss_$1")"
}
log "peak RSS: farmhand-media transcode, $FRAMES frames"
rss_run "$FRAMES" "$D/$rss_v/f.####.exr"
if ((LONG_FRAMES > 0)); then
  mkdir -p "$D/long"
  for f in $(seq "$LONG_FRAMES"); do
    ln -s "$(printf '%s/%s/f.%04d.exr' "$D" "$rss_v" $(((f - 1) % FRAMES + 1)))" \
      "$(printf '%s/long/f.%05d.exr' "$D" "$f")"
  done
  log "peak RSS: farmhand-media transcode, $LONG_FRAMES frames"
  rss_run "$LONG_FRAMES" "$D/long/f.%05d.exr"
fi
kv "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)"
stop_broker

# ---- Table ----------------------------------------------------------------------------------
mib() { awk -v k="$1" 'BEGIN { if (k > 0) printf "%.0f MiB", k / 1024; else print "n/a" }'; }
row() { # row NAME FARMHAND PEER RATIO TARGET
  local met
  met=$(awk -v r="$4" -v t="$5" 'BEGIN { print (r <= t) ? "yes" : "**no**" }')
  printf '| %s | %s | %s | %.2f× | ≤ %s× | %s |\n' "$1" "$2" "$3" "$4" "$5" "$met"
}
echo
echo "FRAMES=$FRAMES at ${WIDTH}x$HEIGHT, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| benchmark | farmhand | peer / floor | ratio | target | met |"
echo "| --- | --- | --- | --- | --- | --- |"
for v in zip piz dwaa aov40; do
  desc="Thumbnail 256 px sRGB JPEG, $v (${WIDTH}x$HEIGHT half, ${R[size_bytes_$v]} B)"
  [[ $v = aov40 ]] && desc="Thumbnail 256 px sRGB JPEG, 40 channels zip (${R[size_bytes_$v]} B)"
  row "$desc, \`submit --wait\` vs oiiotool" "${R[thumb_${v}_farmhand_ms]} ms" \
    "oiiotool ${R[thumb_${v}_oiiotool_ms]} ms" "${R[thumb_${v}_vs_oiiotool]}" 0.25
  row "$desc, \`submit --wait\` vs decode floor" \
    "${R[thumb_${v}_farmhand_ms]} ms" "OIIO read R,G,B ${R[thumb_${v}_floor_ms]} ms" \
    "${R[thumb_${v}_vs_floor]}" 1.3
  row "$desc, \`submit --wait\` vs the floor read as stored (half)" \
    "${R[thumb_${v}_farmhand_ms]} ms" \
    "OIIO read R,G,B as half ${R[thumb_${v}_floor_stored_ms]} ms" \
    "${R[thumb_${v}_vs_stored_floor]}" 1.3
  row "$desc, in one warm process (no farm) vs decode floor" \
    "${R[thumb_${v}_inprocess_ms]} ms" "OIIO read R,G,B ${R[thumb_${v}_floor_ms]} ms" \
    "${R[thumb_${v}_inprocess_vs_floor]}" 1.3
done
for v in $SEQ_VARIANTS; do
  row "Proxies: $FRAMES frames $v, 50% JPEG (chunk 10)" "${R[proxy_${v}_farmhand_ms]} ms" \
    "oiiotool --frames ${R[proxy_${v}_oiiotool_ms]} ms" "${R[proxy_${v}_vs_oiiotool]}" 0.4
  for codec in h264 prores; do
    k=movie_${v}_${codec}
    row "Movie $codec: $FRAMES frames $v, submit → done" \
      "${R[${k}_farmhand_ms]} ms (media process peak RSS $(mib "${R[${k}_media_peak_rss_kib]}"))" \
      "ffmpeg ${R[${k}_ffmpeg_ms]} ms (peak RSS $(mib "${R[${k}_ffmpeg_peak_rss_kib]}"))" \
      "${R[movie_${v}_${codec}_vs_ffmpeg]}" 0.5
    row "Movie $codec: $FRAMES frames $v, submit → done vs the larger floor" \
      "${R[${k}_farmhand_ms]} ms" \
      "decode ${R[${k}_decode_floor_ms]} ms, encode ${R[${k}_encode_floor_ms]} ms" \
      "${R[${k}_vs_floor]}" 1.15
    echo "| Movie $codec: $FRAMES frames $v, CPU time (media process) | ${R[${k}_farmhand_cpu_ms]} ms |" \
      "ffmpeg ${R[${k}_ffmpeg_cpu_ms]} ms; decode ${R[${k}_decode_floor_cpu_ms]} +" \
      "encode ${R[${k}_encode_floor_cpu_ms]} ms | $(printf '%.2f× / %.2f×' \
        "${R[${k}_cpu_vs_ffmpeg]}" "${R[${k}_cpu_vs_floors]}") | (no target) | |"
  done
done
echo
echo "Peak RSS of \`farmhand-media transcode\` (H.264, $rss_v): $FRAMES frames" \
  "$(mib "${R[rss_h264_${FRAMES}_frames_kib]}") (${R[rss_h264_${FRAMES}_frames_s]} s)$(
    ((LONG_FRAMES > 0)) && echo ", $LONG_FRAMES frames $(mib "${R[rss_h264_${LONG_FRAMES}_frames_kib]}")" \
      "(${R[rss_h264_${LONG_FRAMES}_frames_s]} s)")."

# ---- 6. Movies on the farm: in segments, streamed behind a render, the whole publish ---------
if [[ "${MOVIE_FARM:-1}" = 1 ]]; then
  stop_broker
  echo
  FRAMES=$FRAMES DISTINCT=$DISTINCT MEDIA_SIZE=$MEDIA_SIZE "$SRC/bench/movie_farm.sh" "$BUILD"
fi
