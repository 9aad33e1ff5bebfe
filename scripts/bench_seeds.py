"""Aggregate throughput of several seeds: in one process, vmapped, vs single-seed runs side by side.

    python -m scripts.bench_seeds --env CartPole-v1 --config debug --seeds 0 1 2 --steps 1000

Trains the seeds twice for ``--steps`` environment steps each: first all in this process, their
updates and acting vmapped over a seed axis (``scripts.train --seeds``), then one single-seed run per
seed, all at once, each in its own single-threaded process (``scripts.bench_learning --jobs N``).
Both modes use the whole machine. Prints a table of the aggregate updates/s and environment steps/s
and the wall-clock including compilation, with the ratio of the two modes, and writes the JSON beside
it (default prefix ``benchmarks/out/seeds_<env>``). Aggregate rates count each seed's log windows after
the first two that hold updates (the first update compiles the train step, the first policy step
after prefill the policy step): all seeds' updates over the longest seed's time for them. Not the sum of the seeds' rates: side by side, a process that compiles sooner
trains alone for a while, faster than when the others train too, and the sum would count that speed
for the whole run. No evaluation runs on the way and
only the final checkpoint is written, so the loop is what is measured. The load average at the start
and end goes into the JSON: on a shared machine, read the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

from agents.logging import read_metrics
from configs.loader import load_config
from scripts.benchmarking import train_run, train_seeds_together
from scripts.side_by_side import run_side_by_side


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--config", default="debug", help="presets, comma-separated (as scripts.train)")
    parser.add_argument("--steps", type=int, default=1000, help="environment steps per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--log-every", type=int, default=100, help="environment steps per measured window")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="output prefix (default benchmarks/out/seeds_<env>)")
    return parser.parse_args(argv)


def seed_config(args: argparse.Namespace, seed: int) -> dict:
    overrides = [("env_id", args.env), ("seed", seed), ("steps", args.steps), ("run.eval_every", 0),
                 ("run.checkpoint_every", 0), ("run.log_every", args.log_every), *args.overrides]
    return load_config(args.config.split(","), overrides)


def steady_counts(logdir: Path) -> dict[str, float]:
    """A run's updates, environment steps and seconds over its log windows after the first two that
    hold updates (the compilations of the train and the policy step), and its rates over them."""
    rows = [row for row in read_metrics(logdir) if "throughput/env_steps_per_second" in row]
    first_update = next(index for index, row in enumerate(rows) if row["throughput/updates"] > 0)
    before, steady = rows[first_update + 1:first_update + 2], rows[first_update + 2:]
    if not steady:
        raise SystemExit(f"{logdir}: no log window after the two holding the compilations; raise --steps or "
                         "lower --log-every")
    before = before[0]
    env_steps = steady[-1]["step"] - before["step"]
    updates = steady[-1]["throughput/updates"] - before["throughput/updates"]
    starts = [before["step"]] + [row["step"] for row in steady[:-1]]
    seconds = sum((row["step"] - start) / row["throughput/env_steps_per_second"] for row, start in zip(steady, starts))
    return {"updates": updates, "env_steps": env_steps, "seconds": seconds,
            "updates_per_second": updates / seconds, "env_steps_per_second": env_steps / seconds}


def aggregate(per_seed: dict) -> dict[str, float]:
    """Every seed's steady updates and environment steps over the longest seed's steady seconds."""
    seconds = max(counts["seconds"] for counts in per_seed.values())
    return {"updates_per_second": sum(counts["updates"] for counts in per_seed.values()) / seconds,
            "env_steps_per_second": sum(counts["env_steps"] for counts in per_seed.values()) / seconds}


def measure(mode: str, args: argparse.Namespace, root: Path) -> dict:
    """Train every seed in ``mode`` (``vmap`` or ``side_by_side``); aggregate rates and wall-clock."""
    configs = {seed: seed_config(args, seed) for seed in args.seeds}
    logdirs = {seed: root / mode / f"seed{seed}" for seed in args.seeds}
    start = time.time()
    if mode == "vmap":
        train_seeds_together(list(configs.values()), list(logdirs.values()))
    else:
        run_side_by_side(train_run, {seed: (configs[seed], logdirs[seed]) for seed in args.seeds}, len(args.seeds))
    wall = time.time() - start
    per_seed = {str(seed): steady_counts(logdirs[seed]) for seed in args.seeds}
    return {**aggregate(per_seed), "wall_seconds": wall, "logdir": str(root / mode), "per_seed": per_seed}


def print_table(result: dict) -> None:
    vmap, apart = result["modes"]["vmap"], result["modes"]["side_by_side"]
    count = len(result["seeds"])
    print(f"\n{result['env']} / {result['config']}: {count} seeds x {result['steps']:,} env steps "
          f"(load average {result['load_start']:.1f} at the start, {result['load_end']:.1f} at the end)")
    print("| mode | aggregate updates/s | aggregate env steps/s | wall-clock incl. compilation (s) |")
    print("| --- | ---: | ---: | ---: |")
    for name, row in ((f"{count} single-seed processes side by side", apart),
                      (f"{count} seeds in one process, vmapped", vmap)):
        print(f"| {name} | {row['updates_per_second']:.1f} | {row['env_steps_per_second']:.1f} | "
              f"{row['wall_seconds']:.0f} |")
    ratio = result["ratio"]
    print(f"| ratio (vmapped / side by side) | {ratio['updates_per_second']:.2f}x | "
          f"{ratio['env_steps_per_second']:.2f}x | {ratio['wall_seconds']:.2f}x |")


def main(argv=None) -> dict:
    args = parse_args(argv)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.env)
    root = Path("runs") / f"bench-seeds-{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    load_start = os.getloadavg()[0]
    # In-process first: run_side_by_side then sets the single-threaded XLA flags for its workers only.
    modes = {mode: measure(mode, args, root) for mode in ("vmap", "side_by_side")}
    result = {"env": args.env, "config": args.config, "steps": args.steps, "seeds": args.seeds,
              "overrides": args.overrides, "load_start": load_start, "load_end": os.getloadavg()[0], "modes": modes,
              "ratio": {key: modes["vmap"][key] / modes["side_by_side"][key]
                        for key in ("updates_per_second", "env_steps_per_second", "wall_seconds")}}
    print_table(result)
    prefix = Path(args.out or f"benchmarks/out/seeds_{name}")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".json").write_text(json.dumps(result, indent=2))
    print(f"wrote {prefix.with_suffix('.json')}")
    return result


if __name__ == "__main__":
    main()
