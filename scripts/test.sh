#!/usr/bin/env bash
# The README's second command: install and start everything the tests need, then run the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k engine).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/system-deps.sh
# The engine's own environment, set up exactly as the app does it for a user (idempotent), in .engine/ so
# that every test's private data folder shares it.
export FARNODE_ANVIL_SOURCE="${FARNODE_ANVIL_SOURCE:-$PWD/tools/foundry-rs-anvil-linux-amd64-1.7.1.tgz}"
export FARNODE_ENGINE_ROOT="${FARNODE_ENGINE_ROOT:-$PWD/.engine}"
# The engine package itself comes from the archive of its pinned commit in shared/ beside the repository
# (CI lays shared/ there), not from its Git source: the tests run offline.
export FARNODE_ENGINE_SOURCE="${FARNODE_ENGINE_SOURCE:-$(cd .. && pwd)/shared/engine/farmesh-75a473e.tar.gz}"
if [ ! -f "$FARNODE_ENGINE_SOURCE" ]; then
  echo "scripts/test.sh: the FarMesh engine archive $FARNODE_ENGINE_SOURCE is missing. Put shared/ beside the" \
       "repository (shared/engine/farmesh-75a473e.tar.gz) or set FARNODE_ENGINE_SOURCE to that archive." >&2
  exit 2
fi
.venv/bin/farnode-desktop engine setup --variant cpu
# The build tools pip needs to build the engine from its source archive, for the tests that install it against
# a local package index (they serve these two wheels): fetched here, before the tests watch the network.
.venv/bin/pip download --no-deps -q -d "$FARNODE_ENGINE_ROOT/build-tools" setuptools==84.2.1 wheel==0.45.1  # wheel 0.45: the last with no dependencies
# The previous release's engine (lock version 1, petals 2.2), for the test of the upgrade in place.
.venv/bin/python tests/engine/previous_engine.py "$FARNODE_ENGINE_ROOT"
.venv/bin/ruff check farnode_desktop tests benchmarks scripts packaging

mkdir -p test-artifacts
cleanup() { for p in ${BG_PIDS:-}; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
# A real X display with a real system tray, unless one is already there.
if [ -z "${DISPLAY:-}" ]; then
  for n in $(seq 90 120); do [ -e "/tmp/.X11-unix/X$n" ] || break; done
  Xvfb ":$n" -screen 0 1280x800x24 -nolisten tcp >test-artifacts/xvfb.log 2>&1 &
  BG_PIDS="$!"
  export DISPLAY=":$n"
  for _ in $(seq 50); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done
  trayer --edge top --align right --widthtype request --height 24 >test-artifacts/trayer.log 2>&1 &
  BG_PIDS="$BG_PIDS $!"
fi
# A real Secret Service keyring on a private D-Bus session bus, then the suite, under a guard that makes Ctrl-C
# stop the run within 10 s and leave nothing running (scripts/suite_guard.py). The suite runs in parallel
# (pytest-xdist, one worker more than cores unless FARNODE_TEST_WORKERS says otherwise; each worker has its own
# display, tray, keyring, ports and data folders; a module's tests stay on one worker), then the tests
# marked ``serial`` run alone.
# One worker more than cores: the engine tests spend much of their time waiting on FarMesh's processes.
# Measured on a 2-core machine: serial 1103 s of pytest, 2 workers 639 s, 3 workers 581 s.
export FARNODE_TEST_WORKERS="${FARNODE_TEST_WORKERS:-$(( $(nproc) + 1 ))}"
exec 3>&1
.venv/bin/python scripts/suite_guard.py -- dbus-run-session -- bash -c '
  eval "$(printf farnode-test | gnome-keyring-daemon --unlock --components=secrets)"
  export GNOME_KEYRING_CONTROL
  .venv/bin/python -m pytest -m "not serial" -n "$FARNODE_TEST_WORKERS" --dist loadfile "$@"
  rc=$?
  .venv/bin/python -m pytest -m serial -p no:xdist "$@"
  rc2=$?
  [ $rc2 -eq 5 ] && rc2=0  # no serial test among those asked for
  [ $rc -ne 0 ] && exit $rc
  exit $rc2
' bash "$@"
