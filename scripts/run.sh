#!/usr/bin/env bash
# The README's first command: set up everything, then run the app on the embedded default
# (a private FarMesh swarm on this machine). Opens the window on a desktop, runs headless without one.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/farnode-desktop "$@"
