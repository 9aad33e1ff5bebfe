"""Replay memory benchmark: peak RSS and sampling throughput of ``memory`` vs ``disk`` storage.

    python -m scripts.bench_replay [--steps 1000000] [--image 64] [--batch 16 --length 64]

Each storage mode runs in its own subprocess (so that peak RSS is its own): it fills a replay of
``--steps`` image steps (uint8 ``image x image x 3`` plus a small vector and the flags), then samples
batches for ``--seconds``. Prints a table and writes JSON (default ``benchmarks/out/replay.json``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agents.replay import Replay


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--image", type=int, default=64)
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", default="benchmarks/out/replay.json")
    parser.add_argument("--storage", choices=["memory", "disk"], help=argparse.SUPPRESS)  # one child run
    return parser.parse_args(argv)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def rss_parts_mib() -> dict[str, float]:
    """Resident memory split into anonymous (must stay in RAM) and file-backed pages (memory-mapped
    replay files: clean pages the kernel may drop under pressure)."""
    parts = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile"):
            parts[name] = int(value.split()[0]) / 1024
    return parts


def measure(args: argparse.Namespace) -> dict:
    """Fill and sample one replay in this process."""
    spec = {
        "image": ((args.image, args.image, 3), np.uint8), "vector": ((8,), np.float32),
        "prev_action": ((4,), np.float32), "reward": ((), np.float32),
        "is_first": ((), bool), "is_terminal": ((), bool),
    }
    baseline = peak_rss_mib()
    with tempfile.TemporaryDirectory(dir=".") as directory:
        replay = Replay(spec, args.envs, args.steps, args.batch, args.length, storage=args.storage,
                        directory=Path(directory) / "replay", seed=0)
        rng = np.random.default_rng(0)
        block = {name: rng.integers(0, 255, (args.envs,) + shape).astype(dtype) for name, (shape, dtype) in spec.items()}
        start = time.time()
        for _ in range(args.steps // args.envs):
            replay.add(block)
        fill_seconds = time.time() - start
        replay.flush()
        start, batches = time.time(), 0
        while time.time() - start < args.seconds:
            replay.sample()
            batches += 1
        sample_seconds = time.time() - start
        parts = rss_parts_mib()
        return {
            "storage": args.storage, "steps": len(replay), "buffer_mib": replay.nbytes / 2**20,
            "peak_rss_mib": peak_rss_mib(), "rss_before_mib": baseline,
            "rss_anonymous_mib": parts.get("RssAnon", float("nan")),
            "rss_file_backed_mib": parts.get("RssFile", float("nan")),
            "fill_steps_per_second": len(replay) / fill_seconds,
            "batches_per_second": batches / sample_seconds,
            "sampled_steps_per_second": batches * args.batch * args.length / sample_seconds,
        }


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.storage:
        print(json.dumps(measure(args)))
        return []
    results = []
    for storage in ("memory", "disk"):
        command = [sys.executable, "-m", "scripts.bench_replay", "--storage", storage, *sys.argv[1:]]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    memory = results[0]
    print(f"\nreplay of {args.steps:,} steps of {args.image}x{args.image}x3 uint8 images "
          f"(buffer {memory['buffer_mib']:,.0f} MiB), batches of {args.batch} x {args.length}")
    print("| storage | peak RSS (MiB) | anonymous RSS (MiB) | anonymous vs memory | file-backed RSS (MiB) "
          "| fill (steps/s) | sample (batches/s) | sample vs memory |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in results:
        print(f"| {row['storage']} | {row['peak_rss_mib']:,.0f} | {row['rss_anonymous_mib']:,.0f} "
              f"| {row['rss_anonymous_mib'] / memory['rss_anonymous_mib']:.2f}x | {row['rss_file_backed_mib']:,.0f} "
              f"| {row['fill_steps_per_second']:,.0f} | {row['batches_per_second']:,.1f} "
              f"| {row['batches_per_second'] / memory['batches_per_second']:.2f}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
