#!/usr/bin/env bash
# Sequence scan vs the shell: `farmhand seq ls` on one directory of FILES frames
# (sh010_comp_v003.0001.exr ..., a few frames left out so there are gaps to report),
# side by side with `ls -f DIR | wc -l` (readdir only, no sorting, no grouping) and
# `find DIR -maxdepth 1 -type f | wc -l`. Each is run REPS times on a warm cache;
# the median wall time is reported and the ratio is farmhand / baseline.
#
# usage: bench/seq_scan.sh BUILD_DIR     (env: FILES=100000, REPS=5, BENCH_KEEP=1 keeps the dir)
# Results go to stdout as key=value lines, progress to stderr. Needs only bin/farmhand.
set -euo pipefail

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

die() {
  log "error: $*"
  exit 1
}

now_ns() { date +%s%N; }

calc() { awk "BEGIN { printf \"%.6g\", $1 }"; }

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

build=${1:-}
[[ -n "$build" ]] || die "usage: $0 BUILD_DIR"
FARMHAND=$(cd "$build" && pwd)/bin/farmhand
[[ -x "$FARMHAND" ]] || die "missing $FARMHAND: build first (cmake --build $build --target farmhand)"

FILES=${FILES:-100000}
REPS=${REPS:-5}
WORK=$(mktemp -d /tmp/fhseq.XXXXXX)
cleanup() {
  if [[ "${BENCH_KEEP:-0}" = 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One frame in 1000 is left out; the names are made by awk and created by one
# touch per batch (xargs), far faster than a shell loop.
DIR=$WORK/renders
mkdir "$DIR"
log "creating $FILES files in $DIR"
awk -v n="$FILES" 'BEGIN { made = 0; for (f = 1; made < n; f++) { if (f % 1000 == 500) continue;
  printf "sh010_comp_v003.%04d.exr\n", f; made++ } }' | (cd "$DIR" && xargs touch)
[[ $(ls -f "$DIR" | grep -vc '^\.') -eq $FILES ]] || die "expected $FILES files in $DIR"

# time_s CMD...: wall seconds of one run, output discarded.
time_s() {
  local t0
  t0=$(now_ns)
  "$@" >/dev/null
  calc "($(now_ns) - $t0) / 1e9"
}

ls_count() { ls -f "$DIR" | wc -l; }
find_count() { find "$DIR" -maxdepth 1 -type f | wc -l; }

line=$("$FARMHAND" seq ls "$DIR")
log "farmhand: $line"
count=$("$FARMHAND" seq ls --json "$DIR" | awk -F': ' '/"count"/ { gsub(/,/, "", $2); print $2 }')
[[ "$count" -eq "$FILES" ]] || die "farmhand seq ls counted $count frames, expected $FILES"

# One warm-up each, so every tool reads the directory from the cache.
time_s ls_count >/dev/null
time_s find_count >/dev/null
fh_all=() ls_all=() find_all=()
for rep in $(seq "$REPS"); do
  fh_all+=("$(time_s "$FARMHAND" seq ls "$DIR")")
  ls_all+=("$(time_s ls_count)")
  find_all+=("$(time_s find_count)")
  log "seq scan rep $rep/$REPS: farmhand ${fh_all[-1]} s, ls ${ls_all[-1]} s, find ${find_all[-1]} s"
done

fh=$(median "${fh_all[@]}")
ls_s=$(median "${ls_all[@]}")
find_s=$(median "${find_all[@]}")
echo "seq_scan_files=$FILES"
echo "seq_scan_reps=$REPS"
echo "seq_scan_farmhand_s=$fh"
echo "seq_scan_farmhand_all=${fh_all[*]}"
echo "seq_scan_ls_s=$ls_s"
echo "seq_scan_ls_all=${ls_all[*]}"
echo "seq_scan_find_s=$find_s"
echo "seq_scan_find_all=${find_all[*]}"
echo "seq_scan_ratio_ls=$(calc "$fh / $ls_s")"
echo "seq_scan_ratio_find=$(calc "$fh / $find_s")"
