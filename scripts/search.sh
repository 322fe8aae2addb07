#!/usr/bin/env bash
# Set up (if needed), then run the quick NoisyDARTS search on CIFAR-10 with derivation and plots.
# Extra arguments go to `noisydarts search` (for example --preset paper --output runs/paper).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"

if [ -z "${NOISYDARTS_DATA:-}" ]; then
    echo "error: set NOISYDARTS_DATA to the folder that contains cifar10-jpeg/ (or pass --data-root)" >&2
    exit 2
fi
exec "$ROOT/.venv/bin/noisydarts" search --space darts --preset quick \
    --data-root "$NOISYDARTS_DATA/cifar10-jpeg" --output "$ROOT/runs/quick-search" "$@"
