#!/usr/bin/env bash
# What the test suite needs from the system: an X server with a tray, a Secret Service keyring, D-Bus,
# xdotool, ImageMagick, libxss1 (idle time) and heaptrack (benchmarks/heap_growth.py) (Debian packages), and an Ethereum node (anvil) plus solc-js (npm).
# Idempotent: installs only what is missing. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PKGS="binutils xvfb xauth trayer libxcb-cursor0 libegl1 libgl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1
  libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxcb-image0 libxcb-render-util0 libxcb-xkb1 libfontconfig1
  libdbus-1-3 x11-utils xdotool imagemagick gnome-keyring dbus dbus-x11 fonts-dejavu-core libnotify-bin libxss1
  heaptrack zstd"
missing=""
for p in $APT_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "Installing system packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ ! -x tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ] || [ ! -d tools/node_modules/solc ]; then
  echo "Installing anvil and solc-js (npm) into tools/ ..."
  mkdir -p tools
  (cd tools && npm install --silent --no-audit --no-fund --prefix . @foundry-rs/anvil-linux-amd64@1.7.1 solc@0.8.37 >/dev/null)
fi
# The anvil tarball itself, for the app's own installer (FARNODE_ANVIL_SOURCE in scripts/test.sh).
if [ ! -f tools/foundry-rs-anvil-linux-amd64-1.7.1.tgz ]; then
  (cd tools && npm pack --silent @foundry-rs/anvil-linux-amd64@1.7.1 >/dev/null)
fi
