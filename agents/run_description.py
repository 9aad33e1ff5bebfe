"""The lines that describe a new run before it starts: seeds, devices, sizes and spaces."""

from __future__ import annotations

from typing import Any, Mapping

import jax

from agents.parallel import DataParallel
from agents.replay import Replay
from agents.spaces import ActionLayout, ObsLayout
from configs.sections import run_sections


def run_description(config: Mapping[str, Any], parallel: DataParallel, parameter_counts: Mapping[str, int],
                    obs_layout: ObsLayout, action_layout: ActionLayout, replay: Replay) -> list[str]:
    """What a user should see first: where randomness comes from, what runs where (with a loud
    warning for a GPU preset on a CPU), how big the parts are, what the agent sees and does, and
    how much the replay will hold."""
    seed = int(config["seed"])
    lines = [f"seed {seed}: JAX keys, NumPy, env i gets {seed} + i, evaluation envs {seed + 10_000}",
             f"JAX devices: {', '.join(str(d) for d in jax.devices())} (backend {jax.default_backend()})",
             *parallel.describe()]
    if run_sections(config).run.gpu_recommended and jax.default_backend() == "cpu":
        lines.append("WARNING: this preset is meant for a GPU but runs on the CPU: expect it to be very slow.")
    lines.append("parameters: " + ", ".join(f"{name} {count:,}" for name, count in parameter_counts.items()))
    streams = {key: f"up to {stream.max_events} events, count in {stream.count_key!r}"
               for key, stream in obs_layout.event_streams.items()}
    lines.append(f"observations: mlp {obs_layout.mlp_shapes} cnn {obs_layout.cnn_shapes}"
                 + (f" event encoder {streams}" if streams else "")
                 + (f" (targets only: {sorted(obs_layout.decoder_only)})" if obs_layout.decoder_only else "")
                 + (f" (inputs only: {sorted(obs_layout.encoder_only)})" if obs_layout.encoder_only else "") + "; "
                 f"actions: {'discrete' if action_layout.discrete else 'continuous'} {action_layout.dim}")
    size = replay.nbytes / 2**20
    where = "on disk (memory-mapped)" if replay.storage == "disk" else "in memory"
    lines.append(f"replay: {replay.length * replay.num_envs:,} steps, {size:,.1f} MiB {where} at capacity")
    return lines
