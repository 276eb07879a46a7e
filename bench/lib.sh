# shellcheck shell=bash
# Shared helpers for the bench/*.sh scripts; source it, then call bench_init BUILD_DIR.
#
# Every process a script starts goes through start_bg (or start_broker) and is
# stopped by the EXIT trap, whatever way the script ends; everything lives in
# one fresh temporary directory (short, for ipc:// paths) that the trap removes
# (set BENCH_KEEP=1 to keep it). Results go to stdout as key=value lines,
# progress to stderr.

BENCH_PIDS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

die() {
  log "error: $*"
  exit 1
}

# Integer nanoseconds since the epoch.
now_ns() { date +%s%N; }

ms_since() { echo "$(( ($(now_ns) - $1) / 1000 ))" | awk '{ printf "%.1f", $1 / 1000 }'; }

# val FILE KEY: the last value of KEY in a key=value file.
val() { grep "^$2=" "$1" | tail -n 1 | cut -d= -f2-; }

# calc EXPR: floating point arithmetic (awk), e.g. calc "3 / 2".
calc() { awk "BEGIN { printf \"%.6g\", $1 }"; }

# median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# cpu_ms PID...: CPU time (user + system) the processes used so far, in milliseconds.
cpu_ms() {
  local pid tck
  tck=$(getconf CLK_TCK)
  # Fields after the ")" that ends the command name: utime is the 12th, stime the 13th.
  for pid in "$@"; do cat "/proc/$pid/stat" 2>/dev/null || true; done | sed 's/^.*) //' |
    awk -v tck="$tck" '{ t += $12 + $13 } END { printf "%.0f", t * 1000 / tck }'
}

# broker_family: sets FAMILY to the broker's pid and its children's (the local workers).
# shellcheck disable=SC2034  # FAMILY is for the caller
broker_family() { mapfile -t FAMILY < <(echo "$BROKER_PID"; pgrep -P "$BROKER_PID" || true); }

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  BENCH_PIDS=()
  if [[ -n "${BENCH_WORK:-}" && -d "$BENCH_WORK" ]]; then
    if [[ "${BENCH_KEEP:-0}" = 1 ]]; then
      log "kept $BENCH_WORK"
    else
      rm -rf "$BENCH_WORK"
    fi
  fi
}

bench_init() {
  local build=${1:-}
  [[ -n "$build" ]] || die "usage: $0 BUILD_DIR"
  BUILD=$(cd "$build" && pwd) || die "no build dir $build"
  BIN=$BUILD/bin
  BENCH_BIN=$BUILD/bench
  # shellcheck disable=SC2034  # for the scripts that source this file
  SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  local exe
  for exe in "$BIN/farmhandd" "$BIN/farmhand" "$BIN/farmhand-worker" \
    "$BENCH_BIN/farmhand_bench_client" "$BENCH_BIN/farmhand_bench_worker" \
    "$BENCH_BIN/farmhand_bench_zmq" "$BENCH_BIN/farmhand_bench_sqlite"; do
    [[ -x "$exe" ]] || die "missing $exe: build first (cmake --build $build)"
  done
  BENCH_WORK=$(mktemp -d /tmp/fhb.XXXXXX)
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  CLIENT_EP=ipc://$BENCH_WORK/client.sock
  WORKER_EP=ipc://$BENCH_WORK/worker.sock
  export FARMHAND_BROKER=$CLIENT_EP
}

# start_bg OUT_FILE CMD...: runs CMD in the background, stdout to OUT_FILE; sets BG_PID.
start_bg() {
  local out=$1
  shift
  "$@" >"$out" 2>>"$BENCH_WORK/stderr.log" &
  BG_PID=$!
  BENCH_PIDS+=("$BG_PID")
}

# stop_pid PID [SIGNAL]: signal (TERM by default) and reap one process we started.
stop_pid() {
  local pid=$1 sig=${2:-TERM}
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local kept=() p
  for p in "${BENCH_PIDS[@]}"; do [[ "$p" = "$pid" ]] || kept+=("$p"); done
  BENCH_PIDS=("${kept[@]}")
}

# write_config PATH SLOTS: the broker config every benchmark uses (ipc endpoints in
# the work dir, the shipped defaults otherwise, a `true` template running /bin/true;
# WORKER_CURVE=false measures a plain worker endpoint; BENCH_HTTP=HOST:PORT turns the
# HTTP front on, off by default).
write_config() {
  cat >"$1" <<EOF
log_level: warn
broker:
  client_endpoint: $CLIENT_EP
  worker_endpoint: $WORKER_EP
  sqlite_synchronous: full
  worker_curve: ${WORKER_CURVE:-true}
http:
  listen: "${BENCH_HTTP:-off}"
local_workers:
  slots: $2
commands:
  "true":
    argv: [/bin/true]
EOF
}

# launch_broker CONFIG STATE_DIR LOCAL_WORKERS [EXTRA_ARGS...]: starts farmhandd in the
# background, its log (stdout and stderr) appended to BROKER_LOG; sets BROKER_PID.
# BENCH_BROKER_CPUS (a taskset list, e.g. 0): the broker runs on those CPUs only.
launch_broker() {
  local config=$1 state=$2 workers=$3 pin=()
  shift 3
  BROKER_LOG=$BENCH_WORK/broker.log
  [[ -z "${BENCH_BROKER_CPUS:-}" ]] || pin=(taskset -c "$BENCH_BROKER_CPUS")
  "${pin[@]}" "$BIN/farmhandd" --config "$config" --state-dir "$state" --local-workers "$workers" "$@" \
    >>"$BROKER_LOG" 2>&1 &
  BROKER_PID=$!
  BENCH_PIDS+=("$BROKER_PID")
}

# start_broker CONFIG STATE_DIR LOCAL_WORKERS [EXTRA_ARGS...]: launch_broker, then
# returns once the broker answers (and, with local workers, once all of them joined).
start_broker() {
  local workers=$3
  launch_broker "$@"
  "$BENCH_BIN/farmhand_bench_client" --broker "$CLIENT_EP" --timeout-s 30 wait-ready >/dev/null ||
    die "broker did not answer (see $BROKER_LOG)"
  if [[ "$workers" -gt 0 ]]; then
    "$BENCH_BIN/farmhand_bench_client" --broker "$CLIENT_EP" --timeout-s 30 wait-workers \
      --count "$workers" >/dev/null || die "local workers did not join"
  fi
}

stop_broker() { stop_pid "$BROKER_PID" TERM; }

# admit_fake_worker STATE_DIR: the worker endpoint is secured with CurveZMQ by default, so
# farmhand_bench_worker gets a key pair (made once) whose public key is put into the
# state dir's authorised keys before the broker starts; sets FAKE_WORKER_CURVE to its
# flags (the broker's key is read from STATE_DIR/keys/broker.pub once the broker runs).
admit_fake_worker() {
  local state=$1
  FAKE_WORKER_CURVE=()
  [[ "${WORKER_CURVE:-true}" == true ]] || return 0
  [[ -f "$BENCH_WORK/fake-worker.key" ]] ||
    "$BIN/farmhand" admin keygen "$BENCH_WORK/fake-worker" >/dev/null || die "keygen failed"
  mkdir -p "$state/keys/workers"
  cp "$BENCH_WORK/fake-worker.pub" "$state/keys/workers/"
  FAKE_WORKER_CURVE=(--curve-server-key "@$state/keys/broker.pub"
    --curve-key-file "$BENCH_WORK/fake-worker.key")
}

# noise_sequence SRC_DIR SEQ_DIR DISTINCT FRAMES WIDTHxHEIGHT: DISTINCT noisy RGBA half ZIP
# frames (SRC_DIR/1.exr ...), copied (cp: every file its own inode and page-cache pages)
# round-robin into the sequence SEQ_DIR/f.0001.exr ... f.FRAMES.exr.
noise_sequence() {
  local src=$1 seq_dir=$2 distinct=$3 frames=$4 size=$5 i f
  mkdir -p "$src" "$seq_dir"
  for i in $(seq "$distinct"); do
    oiiotool --pattern "noise:type=gaussian:mean=0.5:stddev=0.2:seed=$i" "$size" 4 \
      -d half --compression zip -o "$src/$i.exr"
  done
  for f in $(seq "$frames"); do
    cp "$src/$(((f - 1) % distinct + 1)).exr" "$(printf '%s/f.%04d.exr' "$seq_dir" "$f")"
  done
}

# media_pids: the farmhand-media children of the broker's local workers.
media_pids() {
  local w
  for w in $(pgrep -P "$BROKER_PID" || true); do pgrep -P "$w" || true; done
}
