#!/usr/bin/env bash
# Create or update the app's own environment (.venv: the GUI side, never torch). Idempotent and quick
# when nothing changed. The engine's environment is separate and managed by the app itself
# (`farnode-desktop engine setup`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "FarNode Desktop needs Python 3.10 or newer (found: $("$PY" --version 2>&1)). Install it and retry." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
  rm -rf .venv
  "$PY" -m venv .venv
fi
stamp=.venv/.farnode-installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Installing FarNode Desktop into .venv ..."
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
  echo "$want" > "$stamp"
fi
# uv (a dependency of the app) installs the engine's lock; without it the set-up falls back to pip, slowly.
if ! .venv/bin/uv --version >/dev/null 2>&1; then
  echo "scripts/setup.sh: uv is missing from .venv (pip install -e . should have installed it): the engine" \
       "set-up will fall back to pip, package by package." >&2
fi
