#!/usr/bin/env bash
# compare.sh [ROUNDS] [STEPS] [OUT]: the reference (float32) and ours, one after the other, ROUNDS
# times (default 2 rounds of 11,500 environment steps, about 8 minutes a round on a 2-core CPU),
# on an otherwise quiet machine. Prints each run's steady updates/s; runs are kept under OUT.
set -euo pipefail
ROUNDS=${1:-2}; STEPS=${2:-11500}; OUT=${3:-runs/reference-comparison-$(date +%Y%m%d-%H%M%S)}
HERE=$(dirname "$(realpath "$0")"); cd "$HERE/../.."
for round in $(seq "$ROUNDS"); do
  "$HERE/run_reference.sh" float32 "$STEPS" "$OUT/reference-r$round"
  echo "round $round reference: $(python -m scripts.reference_dreamerv3.updates_per_s --reference "$OUT/reference-r$round" | tail -n 1)"
  "$HERE/run_hmbrl.sh" "$STEPS" "$OUT/hmbrl-r$round"
  echo "round $round hmbrl:     $(python -m scripts.reference_dreamerv3.updates_per_s --hmbrl "$OUT/hmbrl-r$round" | tail -n 1)"
done
