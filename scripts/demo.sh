#!/usr/bin/env bash
# Set up (if needed) and run the demo on the bundled datasets. Extra arguments go to `trainwell demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/trainwell demo "$@"
