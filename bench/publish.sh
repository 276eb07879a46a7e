#!/usr/bin/env bash
# Publish benchmark (bench/README.md, "6. Publish", issue 5): publish-to-thumbnail latency
# on a warm broker side by side with the oiiotool command a publish hook runs today, and
# event intake (publishes acknowledged per second) side by side with a bare ZeroMQ echo
# and SQLite committing once per event, in the same run.
#
#   bench/publish.sh BUILD_DIR
#
# key=value results on stdout, progress on stderr, then a markdown table on stdout.
# Env: LATENCY_PUBLISHES (50), WARMUP (3), OIIO_REPS (5), INTAKE_PUBLISHES (20000),
# INTAKE_CLIENTS (2 processes), INTAKE_DEPTH (64 outstanding per client; the "met" column),
# INTAKE_OTHER_DEPTHS ("16 256": also reported, "" to skip), SQLITE_EVENTS (1000),
# PUBLISH_CACHE (where the EXR sequence is kept between runs; default
# ${TMPDIR:-/tmp}/farmhand-bench-cache/publish-exr-v1).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init "${1:-}"

LATENCY_PUBLISHES=${LATENCY_PUBLISHES:-50}
WARMUP=${WARMUP:-3}
OIIO_REPS=${OIIO_REPS:-5}
INTAKE_PUBLISHES=${INTAKE_PUBLISHES:-20000}
INTAKE_CLIENTS=${INTAKE_CLIENTS:-2}
INTAKE_DEPTH=${INTAKE_DEPTH:-64}
INTAKE_OTHER_DEPTHS=${INTAKE_OTHER_DEPTHS-16 256}
SQLITE_EVENTS=${SQLITE_EVENTS:-1000}
CACHE=${PUBLISH_CACHE:-${TMPDIR:-/tmp}/farmhand-bench-cache/publish-exr-v1}
FRAMES=10
WIDTH=2048
HEIGHT=1080
PY=/usr/bin/python3
HELPER=$SRC/bench/publish_bench.py

[[ -x "$BIN/farmhand-media" ]] || die "missing $BIN/farmhand-media: build first"
[[ -d "$BUILD/python/farmhand" ]] || die "missing $BUILD/python/farmhand: build first"
command -v oiiotool >/dev/null || die "oiiotool not found (openimageio-tools)"
export PYTHONPATH=$BUILD/python${PYTHONPATH:+:$PYTHONPATH}
"$PY" -c 'import zmq, google.protobuf, farmhand' ||
  die "the Python client needs python3-zmq and python3-protobuf"

declare -A R
# kv KEY=VALUE: one result, on stdout and kept in R for the table.
kv() { echo "$1"; R["${1%%=*}"]="${1#*=}"; }
D=$BENCH_WORK
STARTED=$(date +%s)

kv "publish_nproc=$(nproc)"
kv "publish_date=$(date -u '+%Y-%m-%d %H:%M UTC')"
kv "publish_loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- 1. Test data: a 2K EXR sequence, generated once and kept in $CACHE -----------------
# As media.sh: 2048x1080 RGBA half-float Gaussian noise (the worst case for compression), ZIP.
if [[ ! -f "$CACHE/done" ]]; then
  log "generating $FRAMES frames ${WIDTH}x$HEIGHT RGBA half ZIP into $CACHE (once)"
  rm -rf "$CACHE"
  mkdir -p "$CACHE/exr"
  for f in $(seq "$FRAMES"); do
    oiiotool --pattern "noise:type=gaussian:mean=0.5:stddev=0.2:seed=$f" "${WIDTH}x$HEIGHT" 4 \
      -d half --compression zip -o "$(printf '%s/exr/f.%04d.exr' "$CACHE" "$f")"
  done
  touch "$CACHE/done"
fi
SEQ=$CACHE/exr/f.####.exr
MIDDLE=$(printf '%s/exr/f.%04d.exr' "$CACHE" $((FRAMES / 2 + 1))) # frame_at(size / 2)
kv "publish_frame_bytes=$(stat -c %s "$MIDDLE")"
cat "$CACHE"/exr/*.exr >/dev/null # into the page cache: every number below is warm
# The no-match events: a DPX sequence outside the rule's "*.exr" glob (only names matter).
mkdir -p "$D/dpx"
for f in $(seq "$FRAMES"); do : >"$(printf '%s/dpx/f.%04d.dpx' "$D" "$f")"; done

# write_publish_config PATH OUT_DIR: lib.sh's config plus the issue's thumbnail rule.
write_publish_config() {
  write_config "$1" 1
  cat >>"$1" <<EOF
rules:
  - name: thumb
    match: { path: "*.exr", kind: sequence }
    jobs:
      thumb: { kind: thumbnail, output: "$2/{event}.jpg", size: 256x0 }
EOF
}

# ---- 2. Latency: publish ack -> thumbnail exists, 2 warm local workers --------------------
mkdir -p "$D/thumbs"
write_publish_config "$D/latency.yaml" "$D/thumbs"
log "starting farmhandd with 2 local workers"
start_broker "$D/latency.yaml" "$D/state-latency" 2
# latency PREFIX ARGS...: one latency run of the helper, its results as PREFIX_KEY=VALUE.
latency() {
  local prefix=$1
  shift
  "$PY" "$HELPER" latency --broker "$CLIENT_EP" --path "$SEQ" --out-dir "$D/thumbs" "$@" \
    >"$D/$prefix.out" || die "latency run failed ($prefix)"
  while IFS= read -r line; do kv "${prefix}_$line"; done <"$D/$prefix.out"
}
log "latency: $WARMUP warm-up + $LATENCY_PUBLISHES publishes of $SEQ, one at a time, 0-1 s apart"
latency publish --count "$LATENCY_PUBLISHES" --warmup "$WARMUP"
# Diagnostic: the same with one more request right after each ack, which wakes the broker
# (no pause between publishes: the broker's timers no longer matter).
log "latency, diagnostic: each ack followed by an \`events\` request"
latency publish_nudged --count "$LATENCY_PUBLISHES" --warmup 0 --gap-max-s 0 --nudge
stop_broker

log "peer: oiiotool thumbnail of the middle frame ($OIIO_REPS runs)"
runs=()
for r in $(seq "$OIIO_REPS"); do
  t0=$(now_ns)
  oiiotool "$MIDDLE" --ch R,G,B --resize 256x0 --colorconvert linear sRGB -o "$D/oiio_$r.jpg"
  runs+=("$(ms_since "$t0")")
done
log "oiiotool: ${runs[*]} ms"
kv "publish_oiiotool_ms=$(median "${runs[@]}")"
kv "publish_oiiotool_runs_ms=$(IFS=,; echo "${runs[*]}")"
kv "publish_latency_vs_oiiotool=$(calc "${R[publish_latency_median_ms]} / ${R[publish_oiiotool_ms]}")"
kv "publish_nudged_latency_vs_oiiotool=$(calc "${R[publish_nudged_latency_median_ms]} / ${R[publish_oiiotool_ms]}")"
if [[ -x "$BENCH_BIN/farmhand_bench_media_ops" ]]; then
  # farmhand's thumbnail code in one warm process, no farm: what the image work alone costs.
  ops=$("$BENCH_BIN/farmhand_bench_media_ops" thumbnail "$MIDDLE" "$D/ops.jpg" "$OIIO_REPS")
  kv "publish_inprocess_ms=$(grep '^thumbnail_ms=' <<<"$ops" | cut -d= -f2)"
fi

# ---- 3. Intake: publishes acknowledged per second, no workers -----------------------------
# Commits: SQLite (WAL, synchronous=FULL) calls fdatasync once per commit, plus two per
# checkpoint; counted with perf when it may trace syscalls (as dispatch.sh).
have_perf=0
if command -v perf >/dev/null &&
  perf stat -e syscalls:sys_enter_fdatasync -o /dev/null true >/dev/null 2>&1; then
  have_perf=1
fi
mkdir -p "$D/intake-out"
write_publish_config "$D/intake.yaml" "$D/intake-out"
log "starting farmhandd without workers"
start_broker "$D/intake.yaml" "$D/state-intake" 0
# intake NAME PATH EXPECT_JOBS: INTAKE_PUBLISHES publishes at INTAKE_CLIENTS × INTAKE_DEPTH
# (with the broker's CPU and fdatasync count), then again at each of INTAKE_OTHER_DEPTHS.
intake() {
  local name=$1 path=$2 jobs=$3 perf_pid="" cpu0 rss0 out=$D/intake-$1.out depth
  if [[ $have_perf = 1 ]]; then
    perf stat -x, -e syscalls:sys_enter_fdatasync -p "$BROKER_PID" -o "$D/perf-$name.csv" \
      2>/dev/null &
    perf_pid=$!
    BENCH_PIDS+=("$perf_pid")
    sleep 0.3
  fi
  cpu0=$(cpu_ms "$BROKER_PID")
  rss0=$(awk '/^VmRSS:/ { print $2 }' "/proc/$BROKER_PID/status")
  log "intake $name: $INTAKE_PUBLISHES publishes of $path, $INTAKE_CLIENTS clients ×" \
    "$INTAKE_DEPTH outstanding"
  "$PY" "$HELPER" intake --broker "$CLIENT_EP" --path "$path" --count "$INTAKE_PUBLISHES" \
    --clients "$INTAKE_CLIENTS" --depth "$INTAKE_DEPTH" --prefix "$name" --expect-jobs "$jobs" \
    >"$out" || die "intake $name failed"
  kv "publish_intake_${name}_broker_cpu_us=$(calc "($(cpu_ms "$BROKER_PID") - $cpu0) * 1000 / $INTAKE_PUBLISHES")"
  # Events (and their jobs) stay in the broker's memory: RSS growth per publish.
  kv "publish_intake_${name}_rss_bytes_per_publish=$(calc "($(awk '/^VmRSS:/ { print $2 }' \
    "/proc/$BROKER_PID/status") - $rss0) * 1024 / $INTAKE_PUBLISHES")"
  if [[ -n "$perf_pid" ]]; then
    stop_pid "$perf_pid" INT
    local syncs
    syncs=$(grep fdatasync "$D/perf-$name.csv" | cut -d, -f1)
    if [[ "$syncs" =~ ^[0-9]+$ && "$syncs" -gt 0 ]]; then
      kv "publish_intake_${name}_fdatasyncs=$syncs"
      kv "publish_intake_${name}_per_fdatasync=$(calc "$INTAKE_PUBLISHES / $syncs")"
    fi
  fi
  while IFS= read -r line; do kv "publish_intake_${name}_$line"; done <"$out"
  log "intake $name: ${R[publish_intake_${name}_per_s]} publishes/s"
  for depth in $INTAKE_OTHER_DEPTHS; do
    "$PY" "$HELPER" intake --broker "$CLIENT_EP" --path "$path" --count "$INTAKE_PUBLISHES" \
      --clients "$INTAKE_CLIENTS" --depth "$depth" --prefix "$name$depth" --expect-jobs "$jobs" \
      >"$out.$depth" || die "intake $name at depth $depth failed"
    kv "publish_intake_${name}_depth${depth}_per_s=$(val "$out.$depth" per_s)"
    kv "publish_intake_${name}_depth${depth}_ack_p99_ms=$(val "$out.$depth" ack_p99_ms)"
    log "intake $name, $INTAKE_CLIENTS clients × $depth: $(val "$out.$depth" per_s) publishes/s"
  done
}
intake nomatch "$D/dpx/f.####.dpx" 0
intake thumb "$SEQ" 1
stop_broker

# ---- Peers of the intake: bare ZeroMQ echo, SQLite -------------------------------------------
# The echo is Python like the clients, so it bounds what these clients can measure, not what
# the broker could do; 3 runs (it is noisy on a shared machine), median.
log "peer: ZeroMQ echo (Python ROUTER), same clients, 3 runs"
start_bg "$D/echo.out" "$PY" "$HELPER" echo --endpoint "ipc://$D/echo.sock"
echo_pid=$BG_PID
runs=()
for r in 1 2 3; do
  "$PY" "$HELPER" intake --broker "ipc://$D/echo.sock" --path "$SEQ" --count "$INTAKE_PUBLISHES" \
    --clients "$INTAKE_CLIENTS" --depth "$INTAKE_DEPTH" --prefix "echo$r" --expect-jobs 0 \
    >"$D/intake-echo.out" || die "echo run failed"
  runs+=("$(val "$D/intake-echo.out" per_s)")
done
stop_pid "$echo_pid"
log "echo: ${runs[*]} publishes/s"
kv "publish_intake_echo_per_s=$(median "${runs[@]}")"
kv "publish_intake_echo_runs=$(IFS=,; echo "${runs[*]}")"
# sqlite_peer NAME BATCH: the broker's events table, BATCH rows per transaction.
sqlite_peer() {
  local count=$SQLITE_EVENTS
  (($2 > 1)) && count=$((SQLITE_EVENTS * $2 / 4)) # as many commits / 4: comparable run time
  "$PY" "$HELPER" sqlite --db "$D/peer-$1.db" --count "$count" --batch "$2" \
    --schema "$SRC/daemon/store/migrations/0002_events.sql" >"$D/sqlite-$1.out" ||
    die "sqlite peer failed"
  kv "publish_sqlite_$1_batch=$2"
  kv "publish_sqlite_$1_per_s=$(val "$D/sqlite-$1.out" per_s)"
  log "sqlite, $2 events per commit: $(val "$D/sqlite-$1.out" per_s) events/s"
}
sqlite_peer single 1
for name in nomatch thumb; do
  b=${R[publish_intake_${name}_per_fdatasync]:-$((INTAKE_CLIENTS * INTAKE_DEPTH))}
  sqlite_peer "$name" "$(calc "int($b + 0.5)")"
done
kv "publish_loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)"
kv "publish_run_s=$(($(date +%s) - STARTED))"

# ---- Table ----------------------------------------------------------------------------------
# num V [DECIMALS]: V rounded, with thousands separators.
num() { awk -v v="$1" -v d="${2:-0}" 'BEGIN { printf "%.*f", d, v }' | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
met() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { ok = (op == "<") ? v < t : v >= t; print ok ? "yes" : "**no**" }'; }
lat() { # lat PREFIX: "median M ms, p90 ..., p99 ..., max ..."
  echo "median $(num "${R[${1}_latency_median_ms]}") ms, p90 $(num "${R[${1}_latency_p90_ms]}") ms," \
    "p99 $(num "${R[${1}_latency_p99_ms]}") ms, max $(num "${R[${1}_latency_max_ms]}") ms"
}
inproc=
[[ -n "${R[publish_inprocess_ms]:-}" ]] &&
  inproc="; farmhand thumbnail code in one warm process (no farm): $(num "${R[publish_inprocess_ms]}") ms"
peer="oiiotool on the middle frame: $(num "${R[publish_oiiotool_ms]}") ms (median of $OIIO_REPS)$inproc"
echo
echo "$(nproc) cores, ${R[publish_date]}, load average at start ${R[publish_loadavg_start]}," \
  "run took ${R[publish_run_s]} s"
echo
echo "| benchmark | farmhand | peer / ceiling (same run) | ratio | target | met |"
echo "| --- | --- | --- | --- | --- | --- |"
echo "| Publish → thumbnail: ${R[publish_latency_count]} publishes (0–1 s apart) of a $FRAMES-frame" \
  "2048x1080 RGBA half ZIP sequence ($(num "$(calc "${R[publish_frame_bytes]} / 1e6")" 1) MB/frame)," \
  "2 warm local workers; ack → 256 px JPEG exists | $(lat publish) (ack: median" \
  "$(num "${R[publish_latency_ack_median_ms]}" 1) ms) | $peer | $(num "${R[publish_latency_vs_oiiotool]}" 2)×" \
  "| median < 300 ms | $(met "${R[publish_latency_median_ms]}" 300 '<') |"
echo "| Diagnostic: the same, each ack followed by one more request (wakes the broker) |" \
  "$(lat publish_nudged) | $peer | $(num "${R[publish_nudged_latency_vs_oiiotool]}" 2)× | — | — |"
for name in nomatch thumb; do
  k=publish_intake_$name
  if [[ $name = nomatch ]]; then
    desc="no rule matches (a 10-frame DPX sequence)"
  else
    desc="each creates a thumbnail job (the EXR sequence; no workers)"
  fi
  others=
  for depth in $INTAKE_OTHER_DEPTHS; do
    others+="; at $INTAKE_CLIENTS × $depth: $(num "${R[${k}_depth${depth}_per_s]}")/s"
    others+=" (ack p99 $(num "${R[${k}_depth${depth}_ack_p99_ms]}" 1) ms)"
  done
  sq=${R[publish_sqlite_${name}_per_s]}
  ec=${R[publish_intake_echo_per_s]}
  lower=$(calc "($sq < $ec) ? $sq : $ec")
  echo "| Intake: $(num "${R[${k}_count]}") publishes, $desc; $INTAKE_CLIENTS clients ×" \
    "$INTAKE_DEPTH outstanding | $(num "${R[${k}_per_s]}")/s (ack p50" \
    "$(num "${R[${k}_ack_p50_ms]}" 1) ms, p99 $(num "${R[${k}_ack_p99_ms]}" 1) ms;" \
    "$(num "${R[${k}_per_fdatasync]:-0}") publishes per fdatasync; broker CPU" \
    "$(num "${R[${k}_broker_cpu_us]}") µs and RSS +$(num "${R[${k}_rss_bytes_per_publish]}") B" \
    "per publish)$others | SQLite, events table, ${R[publish_sqlite_${name}_batch]} rows per" \
    "commit (the broker's batch): $(num "$sq")/s; ZeroMQ echo (Python ROUTER, same clients, no" \
    "rules, no storage; median of 3): $(num "$ec")/s; SQLite, one commit per event:" \
    "$(num "${R[publish_sqlite_single_per_s]}")/s | $(num "$(calc "${R[${k}_per_s]} / $lower")" 2)×" \
    "lower ceiling | ≥ 5,000/s | $(met "${R[${k}_per_s]}" 5000 '>=') |"
done
