#!/usr/bin/env bash
# run_reference.sh PRECISION STEPS LOGDIR: the reference DreamerV3 at its smallest size (size1m, 637k
# parameters) on CartPole-v1 through the shim, batch 16 x 64, horizon 15, train ratio 32, 16
# environments, on the CPU; PRECISION float32 or bfloat16 (the reference's default). Needs
# REFERENCE_SOURCE and REFERENCE_VENV (setup.sh). LOGDIR is deleted first: the reference would resume.
set -euo pipefail
[ $# -eq 3 ] || { sed -n 2,6p "$0"; exit 2; }
PRECISION=$1; STEPS=$2; LOGDIR=$(realpath -m "$3")
rm -rf "$LOGDIR"; mkdir -p "$LOGDIR"
cd "$REFERENCE_SOURCE"
JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES= "$REFERENCE_VENV/bin/python" dreamerv3/main.py \
  --logdir "$LOGDIR" --configs size1m --task gym_CartPole-v1 --script train \
  --batch_size 16 --batch_length 64 --agent.imag_length 15 --run.train_ratio 32 --run.envs 16 \
  --run.steps "$STEPS" --run.log_every "${LOG_EVERY:-30}" --run.usage.nvsmi False \
  --jax.platform cpu --jax.prealloc False --jax.compute_dtype "$PRECISION" > "$LOGDIR/stdout.log" 2>&1
