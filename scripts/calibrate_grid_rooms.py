"""How hard is ``hmbrl/GridFourRooms-v0``? Its shortest path and what uniform random actions achieve.

    python -m scripts.calibrate_grid_rooms
    python -m scripts.calibrate_grid_rooms --size 13 --doors 3 9 3 9 --out benchmarks/out/grid13.json

Measures the breadth-first-search shortest path from start to goal, and the success rate of a
uniform random policy over ``--episodes`` episodes of ``--steps`` steps (all walked at once in numpy
on the raw environment's movement rule, seeded by ``--seed``). As a check on the sampled rate it also
computes the exact probability, by pushing the distribution over cells through ``--steps`` steps.
Prints both against the issue's bounds (shortest path >= 30, random success <= 0.5%) and writes JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from envs.grid_rooms import MOVES, GridFourRooms, move, random_success_rate, shortest_path_length
from scripts.common import write_json

MIN_SHORTEST_PATH = 30
MAX_RANDOM_SUCCESS = 0.005


def exact_success_probability(env: GridFourRooms, steps: int) -> float:
    """Probability that uniform random actions reach the goal within ``steps`` steps (the goal
    absorbs: its mass is counted once and removed)."""
    cells = np.argwhere(env.free)
    index = {tuple(cell): i for i, cell in enumerate(cells.tolist())}
    transition = np.zeros((len(cells), len(cells)))  # [from, to]
    for action in range(len(MOVES)):
        after = move(env.free, cells, np.full(len(cells), action))
        for source, target in enumerate(after.tolist()):
            transition[source, index[tuple(target)]] += 1 / len(MOVES)
    mass = np.zeros(len(cells))
    mass[index[env.start]] = 1.0
    goal, reached = index[env.goal], 0.0
    for _ in range(steps):
        mass = mass @ transition
        reached += mass[goal]
        mass[goal] = 0.0
    return float(reached)


def calibrate(size: int, doors: list[int] | None, episodes: int, steps: int, seed: int) -> dict:
    env = GridFourRooms(size=size, doors=tuple(doors) if doors else None)
    successes = random_success_rate(env, episodes, steps, np.random.default_rng(seed)) * episodes
    return {
        "size": size, "doors": list(env.doors), "episodes": episodes, "steps": steps, "seed": seed,
        "shortest_path": shortest_path_length(env),
        "random_successes": int(round(successes)),
        "random_success_rate": successes / episodes,
        "random_success_exact": exact_success_probability(env, steps),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=GridFourRooms().size)
    parser.add_argument("--doors", type=int, nargs=4, metavar=("UPPER_ROW", "LOWER_ROW", "LEFT_COL", "RIGHT_COL"))
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/out/grid_rooms_calibration.json")
    args = parser.parse_args(argv)
    result = calibrate(args.size, args.doors, args.episodes, args.steps, args.seed)
    path_ok = result["shortest_path"] >= MIN_SHORTEST_PATH
    random_ok = result["random_success_rate"] <= MAX_RANDOM_SUCCESS
    print(f"GridFourRooms size {result['size']}, doors {result['doors']}")
    print(f"shortest path: {result['shortest_path']} steps "
          f"(need >= {MIN_SHORTEST_PATH}: {'ok' if path_ok else 'FAIL'})")
    print(f"random policy: {result['random_successes']} of {args.episodes} episodes of {args.steps} steps = "
          f"{result['random_success_rate']:.3%} (need <= {MAX_RANDOM_SUCCESS:.1%}: {'ok' if random_ok else 'FAIL'}); "
          f"exact probability {result['random_success_exact']:.3%}")
    out = Path(args.out)
    write_json(result, out)
    return result


if __name__ == "__main__":
    main()
