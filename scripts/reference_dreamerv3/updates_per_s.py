"""Updates per second of a training loop, end to end, from its metrics file: the reference DreamerV3's
``metrics.jsonl`` (``--reference LOGDIR``) or ours (``--hmbrl LOGDIR``), read the same way.

Both loops log throughput in wall-clock windows that cover everything (acting, replay, updates,
logging). The windows before the first update and the first window with updates (compilation,
prefill) are left out; the rate is the updates of the remaining windows over their seconds.

- Reference (``embodied/run/train.py`` at e3f0224): every ``run.log_every`` seconds it logs
  ``fps/train`` (batch x length elements trained per second, 1,024 per update at batch 16 x 64) and
  ``fps/policy`` (environment steps per second, all environments). A window's length is not logged; it
  is the window's environment steps over ``fps/policy``. The reference traces updates 100-120 with
  JAX's profiler (no flag turns it off); those windows are marked and a rate without them is given too.
- hmbrl: every ``run.log_every`` environment steps ``throughput/env_steps_per_second`` and the
  cumulative ``throughput/updates``; a window's length is its environment steps over that rate.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

PROFILED_UPDATES = (100, 120)  # the reference's built-in profiler trace


@dataclass(frozen=True)
class Window:
    step: int  # environment steps at the window's end
    seconds: float
    updates: float
    profiled: bool = False


def reference_windows(rows: Iterable[dict], elements_per_update: int = 16 * 64) -> list[Window]:
    windows, previous_step, updates_before = [], 0, 0.0
    for row in rows:
        if "fps/train" not in row:
            continue
        seconds = (row["step"] - previous_step) / row["fps/policy"] if row.get("fps/policy") else float("nan")
        updates = row["fps/train"] / elements_per_update * seconds
        profiled = updates_before < PROFILED_UPDATES[1] + 1 and updates_before + updates > PROFILED_UPDATES[0]
        windows.append(Window(row["step"], seconds, updates, profiled))
        previous_step, updates_before = row["step"], updates_before + updates
    return windows


def hmbrl_windows(rows: Iterable[dict]) -> list[Window]:
    windows, previous_step, updates_before = [], 0, 0.0
    for row in rows:
        if "throughput/env_steps_per_second" not in row or "throughput/updates" not in row:
            continue
        seconds = (row["step"] - previous_step) / row["throughput/env_steps_per_second"]
        windows.append(Window(row["step"], seconds, row["throughput/updates"] - updates_before))
        previous_step, updates_before = row["step"], row["throughput/updates"]
    return windows


def steady_windows(windows: Sequence[Window]) -> list[Window]:
    """The windows after the first one with updates (the one that compiles and ends the prefill)."""
    first = next((i for i, window in enumerate(windows) if window.updates > 0), None)
    if first is None or first + 1 >= len(windows):
        raise ValueError("no window after the first one with updates: run longer or log more often")
    return list(windows[first + 1:])


def rate(windows: Sequence[Window]) -> float:
    return sum(w.updates for w in windows) / sum(w.seconds for w in windows)


def read_rows(logdir: Path) -> list[dict]:
    path = logdir / "metrics.jsonl"
    if not path.exists():
        raise SystemExit(f"error: no metrics.jsonl in {logdir}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--reference", type=Path, metavar="LOGDIR", help="a reference DreamerV3 run")
    which.add_argument("--hmbrl", type=Path, metavar="LOGDIR", help="a run of scripts.train")
    args = parser.parse_args(argv)
    logdir = args.reference or args.hmbrl
    windows = (reference_windows if args.reference else hmbrl_windows)(read_rows(logdir))
    print("| step | seconds | updates | updates/s | |\n| ---: | ---: | ---: | ---: | --- |")
    for w in windows:
        print(f"| {w.step} | {w.seconds:.1f} | {w.updates:.1f} | {w.updates / w.seconds if w.seconds else float('nan'):.3f} | "
              f"{'profiled' if w.profiled else ''} |")
    try:
        steady = steady_windows(windows)
    except ValueError as error:
        raise SystemExit(f"error: {logdir}: {error}") from None
    result = {"updates_per_second": rate(steady), "windows": len(steady),
              "seconds": sum(w.seconds for w in steady)}
    unprofiled = [w for w in steady if not w.profiled]
    if unprofiled and len(unprofiled) < len(steady):
        result["updates_per_second_unprofiled"] = rate(unprofiled)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
