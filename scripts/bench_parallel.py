"""Data-parallel update benchmark: gradient steps/s and samples/s against the number of devices.

    python -m scripts.bench_parallel [--devices 1 2 4 8] [--config debug] [--batch 16 --length 64]

Each device count runs in its own subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
(simulated CPU devices unless real accelerators are visible): one compiled warm-up update, then
updates of the flat agent on a fixed global batch (``agents.parallel.DataParallel``) for
``--seconds``. Simulated CPU devices share the same cores, so they show the overhead of
partitioning, not a speed-up. Prints a table with the ratio to one device and writes JSON
(default ``benchmarks/out/parallel.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--config", default="debug", help="preset whose model sizes are used")
    parser.add_argument("--batch", type=int, default=16, help="global batch size (must divide by every device count)")
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", default="benchmarks/out/parallel.json")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one measurement, in a subprocess
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> dict:
    """Updates per second with ``args.child`` devices (run inside the subprocess)."""
    import gymnasium as gym
    import jax
    import numpy as np

    from agents.hierarchical_agent import HierarchicalAgent
    from agents.parallel import DataParallel
    from agents.spaces import replay_spec
    from configs.loader import load_config

    config = load_config([args.config], [("parallel.devices", args.child), ("replay.batch_size", args.batch),
                                         ("replay.batch_length", args.length)])
    agent = HierarchicalAgent.from_config(config, gym.spaces.Box(-5, 5, (4,), np.float32), gym.spaces.Discrete(2))
    parallel = DataParallel.from_config(config)
    rng = np.random.default_rng(0)
    spec = replay_spec(agent.obs_layout, agent.action_layout.dim)
    batch = {key: rng.normal(size=(args.length, args.batch) + shape).astype(dtype) for key, (shape, dtype) in spec.items()}
    batch["prev_action"] = np.eye(2, dtype=np.float32)[rng.integers(0, 2, (args.length, args.batch))]
    batch["is_first"] = rng.random((args.length, args.batch)) < 0.02
    batch["is_terminal"] = np.zeros((args.length, args.batch), bool)
    state = parallel.replicate(agent.init(jax.random.PRNGKey(0)))
    train_step = parallel.train_step(agent.train_step)
    start = time.perf_counter()
    state, _ = jax.block_until_ready(train_step(state, parallel.shard_batch(batch)))
    compile_seconds = time.perf_counter() - start
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        state, metrics = train_step(state, parallel.shard_batch(batch))  # the host-to-device split is timed too
        jax.block_until_ready(metrics)
        steps += 1
    seconds = time.perf_counter() - start
    return {"devices": parallel.num_devices, "platform": jax.default_backend(), "steps": steps, "seconds": seconds,
            "steps_per_second": steps / seconds, "samples_per_second": steps * args.batch * args.length / seconds,
            "compile_seconds": compile_seconds}


def run_child(args: argparse.Namespace, devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    env.setdefault("JAX_PLATFORMS", "cpu")
    command = [sys.executable, "-m", "scripts.bench_parallel", "--child", str(devices), "--config", args.config,
               "--batch", str(args.batch), "--length", str(args.length), "--seconds", str(args.seconds)]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=1800).stdout
    return json.loads(output.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    base = results[0]
    lines = ["| devices | gradient steps/s | samples/s | ratio to 1 device | compile (s) |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    for row in results:
        lines.append(f"| {row['devices']} | {row['steps_per_second']:.2f} | {row['samples_per_second']:,.0f} | "
                     f"{row['steps_per_second'] / base['steps_per_second']:.2f}x | {row['compile_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args)))
        return 0
    results = []
    for devices in args.devices:
        print(f"{devices} device(s) ...", flush=True)
        results.append(run_child(args, devices))
    print(table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": args.config, "batch": args.batch, "length": args.length,
                               "cpu_count": os.cpu_count(), "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
