#!/usr/bin/env bash
# Creates .venv/ at the repo root with the pinned stack and installs this package (editable).
# Idempotent: re-running with unchanged requirements does nothing. Needs Python 3.11
# (3.10-3.12 work for the stack; RecBole 1.2.1 is tested here on 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
stamp=.venv/.setup-stamp
want=$(cat requirements.txt setup.cfg | sha1sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] creating .venv with $($PY --version) (takes 2-4 minutes on a cold cache)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q -r requirements.txt
# RecBole's metadata pins ray<=2.6.3 (old Tune API, numpy<2, setuptools<81): install it
# without its requirements; requirements.txt already holds everything it imports.
.venv/bin/python -m pip install -q --no-deps recbole==1.2.1
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
echo "[setup] done"
