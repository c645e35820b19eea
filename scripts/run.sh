#!/usr/bin/env bash
# The README's first command: set up everything, then run the app on the embedded default
# (a private FarMesh swarm on this machine). Opens the window on a desktop, runs headless without one.
# The engine's own environment is set up by the app itself on first start (with progress).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && ! ldconfig -p 2>/dev/null | grep -q libxcb-cursor.so.0; then
  # Qt's X11 platform plugin needs libxcb-cursor0, which many desktops lack.
  if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -qq libxcb-cursor0 >/dev/null || true
  else
    echo "Note: the window needs the libxcb-cursor0 package (sudo apt install libxcb-cursor0)." >&2
  fi
fi
# FarMesh is on no package index; the app installs it from its Git source at the pinned commit. Where the
# source archive of that commit lies beside the repository (shared/engine/, as on offline machines), install
# from it instead: the same commit, verified the same way after install, and no network needed.
archive="$(cd .. && pwd)/shared/engine/farmesh-75a473e.tar.gz"
if [ -z "${FARNODE_ENGINE_SOURCE:-}" ] && [ -f "$archive" ]; then
  export FARNODE_ENGINE_SOURCE="$archive"
  echo "Engine source: $archive (the pinned FarMesh commit's archive beside the repository)"
fi
exec .venv/bin/farnode-desktop "$@"
