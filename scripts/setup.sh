#!/usr/bin/env bash
# Create .venv and install everything nni-noisydarts needs. Safe to re-run:
# each step is skipped when its result is already in place.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NOISYDARTS_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

stamp="$VENV/.noisydarts-setup"
fingerprint="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ]; then
    exit 0
fi

echo "[setup] installing torch 2.14.1, torchvision 0.29.1 and setuptools<81"
"${PIP[@]}" install --quiet "setuptools<81" wheel
"${PIP[@]}" install --quiet torch==2.14.1 torchvision==0.29.1

echo "[setup] installing nni 3.0, pytorch-lightning and nni-noisydarts"
"${PIP[@]}" install --quiet -e "$ROOT[test]"

echo "$fingerprint" > "$stamp"
echo "[setup] done"
