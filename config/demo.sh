#!/usr/bin/env bash
# make demo: start farmhandd with the shipped config and a throw-away state dir,
# run a small render-style `command` job over two local workers, then publish
# the sample Beachball EXR sequence: the shipped rule makes a thumbnail, JPEG
# proxies and an H.264 review movie. Prints where they landed, shuts down cleanly.
set -euo pipefail
build=${1:-build}
bin=$(cd "$build/bin" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
state=$(mktemp -d /tmp/farmhand-demo.XXXXXX)
data=$(cd "$here/../.." && pwd)/shared/data/openexr-images/Beachball
out=${FARMHAND_DEMO_OUT:-/tmp/farmhand-demo-output}
export FARMHAND_BROKER=tcp://127.0.0.1:7600

cleanup() {
  if [ -n "${broker:-}" ] && kill -0 "$broker" 2>/dev/null; then
    kill -TERM "$broker"
    wait "$broker" || true
  fi
  rm -rf "$state"
}
trap cleanup EXIT

if "$bin/farmhand" ls --timeout 0.5 >/dev/null 2>&1; then
  echo "demo: something already answers on $FARMHAND_BROKER; stop it first" >&2
  exit 1
fi

echo "== starting farmhandd (state in $state, 2 local workers)"
"$bin/farmhandd" --config "$here/farmhand.yaml" --state-dir "$state" --local-workers 2 \
  2> "$state/farmhandd.log" &
broker=$!

# Wait for both local workers to register (at most 15 s).
for _ in $(seq 150); do
  alive=$("$bin/farmhand" workers --json --timeout 1 2>/dev/null | grep -c '"alive": true' || true)
  [ "$alive" -ge 2 ] && break
  kill -0 "$broker" 2>/dev/null || { cat "$state/farmhandd.log" >&2; exit 1; }
  sleep 0.1
done
"$bin/farmhand" workers

echo
echo "== submitting: render frames 1001-1024 in chunks of 4"
job=$("$bin/farmhand" submit command render --frames 1001-1024 --chunk 4 \
  --param scene=shots/sh010/sh010_lighting_v003.usd --param quality=high \
  --label shot=sh010 --name "sh010 lighting v003")
echo "job $job accepted"
"$bin/farmhand" watch "$job"

echo
echo "== farmhand status $job"
"$bin/farmhand" status "$job"
echo
echo "== farmhand logs $job --task 0"
"$bin/farmhand" logs "$job" --task 0

echo
echo "== publish: the sample Beachball EXR sequence, as a publish hook would"
# The shipped rule writes next to the publish (review/), so publish a copy made
# of links in a scratch folder rather than writing into the shared test data.
rm -rf "$out"
mkdir -p "$out"
for f in "$data"/singlepart.*.exr; do ln -s "$f" "$out/"; done
"$bin/farmhand" publish "$out/singlepart.####.exr" --meta shot=beachball --meta task=comp \
  --event-id demo-beachball-v001 --wait
echo
echo "== farmhand events"
"$bin/farmhand" events
echo
echo "thumbnail: $out/review/singlepart.thumb.jpg"
echo "proxies:   $out/review/proxy/ ($(ls "$out/review/proxy" | wc -l) frames)"
echo "movie:     $out/review/singlepart.mov"
if command -v ffprobe >/dev/null; then
  ffprobe -v error -count_frames -select_streams v:0 \
    -show_entries stream=codec_name,width,height,nb_read_frames,r_frame_rate \
    -of compact=p=0 "$out/review/singlepart.mov"
fi

echo
echo "== shutting down"
kill -TERM "$broker"
wait "$broker"
broker=
echo "farmhandd stopped cleanly (exit 0). Last lines of its log:"
tail -n 3 "$state/farmhandd.log"
