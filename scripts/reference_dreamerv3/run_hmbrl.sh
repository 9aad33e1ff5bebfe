#!/usr/bin/env bash
# run_hmbrl.sh STEPS LOGDIR [KEY=VALUE ...]: our flat agent at the size matched to the reference's
# size1m (scripts.bench_throughput's "matched": 654k parameters) under the same protocol: CartPole-v1,
# batch 16 x 64, horizon 15, train ratio 32, 16 environments. Extra overrides go to --set.
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,5p "$0"; exit 2; }
STEPS=$1; LOGDIR=$(realpath -m "$2"); shift 2
rm -rf "$LOGDIR"
cd "$(dirname "$(realpath "$0")")/../.."
python -m scripts.train --env CartPole-v1 --steps "$STEPS" --no-progress --logdir "$LOGDIR" --set \
  world_model.deter=320 world_model.units=64 world_model.stoch=32 world_model.classes=4 world_model.layers=2 \
  agent.units=64 agent.layers=3 replay.batch_size=16 replay.batch_length=64 agent.horizon=15 \
  run.train_ratio=32 run.num_envs=16 "$@" > "$LOGDIR.log" 2>&1
