#!/usr/bin/env bash
# Trains every evidence grid of docs/evidence.md, one after the other, and tabulates them into
# runs/experiments/<grid>/results.{csv,md}. Resumable: run it again after an interruption and it
# continues where it stopped (finished cells are kept). Takes days on a 2-core machine; the grids
# are ordered cheapest first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
for grid in 100-labels 25-labels full-labels; do
  node dist/src/cli/main.js experiment "configs/grids/$grid.json"
done
