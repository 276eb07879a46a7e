#!/bin/bash
# Installs the build into a temporary DESTDIR (PREFIX /usr/local) and checks the result:
# binaries, the example config (kept on reinstall), the sysusers file, the Python package,
# and the systemd units, which `systemd-analyze verify` must accept without a single
# warning. Usage: install_test.sh BUILD_DIR [CMAKE]
set -euo pipefail

build=${1:?usage: install_test.sh BUILD_DIR [CMAKE]}
cmake=${2:-cmake}
prefix=/usr/local

fail() { echo "FAIL: $*" >&2; exit 1; }

analyze=$(command -v systemd-analyze || true)
[ -n "$analyze" ] || fail "systemd-analyze not found: install the 'systemd' package (make deps does)"
sysusers=$(command -v systemd-sysusers || true)
[ -n "$sysusers" ] || fail "systemd-sysusers not found: install the 'systemd' package (make deps does)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fh-install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root

DESTDIR=$root "$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; fail "cmake --install failed"; }

# Binaries.
for bin in farmhandd farmhand farmhand-worker farmhand-media; do
  [ -x "$root$prefix/bin/$bin" ] || fail "$prefix/bin/$bin not installed"
done

# The Grafana dashboard.
[ -f "$root$prefix/share/farmhand/grafana/farmhand.json" ] ||
  fail "$prefix/share/farmhand/grafana/farmhand.json not installed"

# Config: the example, and farmhand.yaml itself, which the installed broker accepts.
conf=$root/etc/farmhand
[ -f "$conf/farmhand.yaml.example" ] || fail "/etc/farmhand/farmhand.yaml.example not installed"
[ -f "$conf/farmhand.yaml" ] || fail "/etc/farmhand/farmhand.yaml not installed"
"$root$prefix/bin/farmhandd" --check-config "$conf/farmhand.yaml" >/dev/null ||
  fail "the installed farmhand.yaml does not pass farmhandd --check-config"

# A reinstall keeps a site's farmhand.yaml.
echo "# site edit" >>"$conf/farmhand.yaml"
DESTDIR=$root "$cmake" --install "$build" --prefix "$prefix" >"$tmp/install2.log" 2>&1 ||
  { cat "$tmp/install2.log" >&2; fail "second cmake --install failed"; }
grep -q "^# site edit" "$conf/farmhand.yaml" || fail "reinstall overwrote /etc/farmhand/farmhand.yaml"

# The service user.
users=$root$prefix/lib/sysusers.d/farmhand.conf
[ -f "$users" ] || fail "$prefix/lib/sysusers.d/farmhand.conf not installed"
mkdir -p "$tmp/sysroot/etc"
out=$("$sysusers" --root="$tmp/sysroot" --dry-run "$users" 2>&1) ||
  { echo "$out" >&2; fail "systemd-sysusers rejects farmhand.conf"; }
echo "$out" | grep -q "Creating user 'farmhand'" || { echo "$out" >&2; fail "sysusers creates no farmhand user"; }

# The Python package, when the tree has one.
if [ -d "$(dirname "$0")/../../python/farmhand" ]; then
  for src in "$(dirname "$0")"/../../python/farmhand/*.py; do
    [ -e "$src" ] || continue
    ls "$root$prefix"/lib/python3*/dist-packages/farmhand/"$(basename "$src")" >/dev/null 2>&1 ||
      fail "python/farmhand/$(basename "$src") was not installed"
  done
  pydir=$(echo "$root$prefix"/lib/python3*/dist-packages)
  if [ -x /usr/bin/python3 ] && [ -f "$pydir/farmhand/__init__.py" ]; then
    (cd "$tmp" && PYTHONPATH=$pydir /usr/bin/python3 -c "import farmhand") ||
      fail "the installed Python package does not import (PYTHONPATH=$pydir)"
  fi
fi

# The units: every @VAR@ filled in, ExecStart naming the installed binaries.
units=$root$prefix/lib/systemd/system
for unit in farmhandd.service farmhand-worker@.service; do
  [ -f "$units/$unit" ] || fail "$prefix/lib/systemd/system/$unit not installed"
  ! grep -n "@[A-Z_]*@" "$units/$unit" || fail "$unit has an unfilled @VAR@"
done
grep -q "^ExecStart=$prefix/bin/farmhandd " "$units/farmhandd.service" ||
  fail "farmhandd.service does not start $prefix/bin/farmhandd"
grep -q "^ExecStart=$prefix/bin/farmhand-worker " "$units/farmhand-worker@.service" ||
  fail "farmhand-worker@.service does not start $prefix/bin/farmhand-worker"

# systemd-analyze resolves ExecStart= on this machine's file system, so verify copies
# whose $prefix/bin points into the DESTDIR (nothing else changes). verify exits 0
# on unknown keys and bad values, only warning: any output at all is a failure.
check=$tmp/check
mkdir -p "$check"
for unit in farmhandd.service farmhand-worker@.service; do
  sed "s|=$prefix/bin/|=$root$prefix/bin/|g" "$units/$unit" >"$check/$unit"
done
status=0
out=$(cd "$check" && SYSTEMD_LOG_COLOR=0 "$analyze" verify --man=no \
  ./farmhandd.service ./farmhand-worker@farm-broker.example.com.service 2>&1) || status=$?
echo "systemd-analyze verify farmhandd.service farmhand-worker@farm-broker.example.com.service:" \
  "exit $status${out:+, output:}"
[ -z "$out" ] || echo "$out"
[ "$status" -eq 0 ] && [ -z "$out" ] || fail "systemd-analyze verify reported problems"
echo "PASS: installed into a DESTDIR and the units verify cleanly"
