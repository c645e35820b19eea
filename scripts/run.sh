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
exec .venv/bin/farnode-desktop "$@"
