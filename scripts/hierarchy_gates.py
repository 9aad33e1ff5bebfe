"""Is a trained hierarchy ready for the long benchmark? The gates of issue 15, each minutes to check.

    python -m scripts.hierarchy_gates --logdir runs/X [--episodes N] [--out JSON]

Loads the run's agent at its latest checkpoint and real steps to probe it on: the last
``--replay-steps`` steps of each environment in the replay saved with the run or, with ``--fresh``
or where the run kept none, ``--episodes`` fresh episodes of the agent's sampling policy. Then it
measures (``agents.gates``):

1. cell decoding: level 0's posterior decodes the exact cell (every one-hot group), >= 0.95;
2. worker reach: placed in the cell of step t with the goal features of step t + k (k <= K, level
   1's period), level 0 (greedy, or sampling with ``--sample``) reaches the goal within K steps at
   least twice as often as with another pair's goal (and at all); the cell-level reach is reported;
3. codebook perplexity of level 1's goal codes over the visited states, > 30, and the share of
   visited cells its decoded goals land on, >= 0.5.

Beside the gates, not gates: the reward reach (``agents.reward_reach``), how often the worker enters
the rewarded cell when handed the rewarded state as its goal, through the codebook, or a random goal,
from each of the K steps before a rewarded step of the probed data; and the worker's reach of goals
farther ahead than K (``agents.gates.reach_by_distance``: 1-K, K+1-2K and 2K+1-4K steps ahead in
replay, as many steps to get there, own against shuffled goals). Probe the whole replay
(``--replay-steps`` as large as the run) to find the rewards of a run that rarely collects them.

Prints a table and writes JSON (default ``<logdir>/gates.json``). Exit status 0 when every gate
passes, 1 when one fails, 2 with one paragraph for a run it cannot probe (no checkpoint, one level,
an environment without one-hot cell observations such as ``hmbrl/GridFourRooms-v0`` has).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

from agents.probes import Gate
from scripts.common import UserError, add_debug_flag, import_modules, report_user_errors, run_config
from scripts.evaluate import positive_int


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", required=True, help="the run directory (two or more levels)")
    parser.add_argument("--episodes", type=positive_int, default=10, help="fresh episodes, where no replay is used")
    parser.add_argument("--replay-steps", type=positive_int, default=1000,
                        help="the last steps of each environment's replay to probe on")
    parser.add_argument("--fresh", action="store_true", help="collect fresh episodes even if the run kept its replay")
    parser.add_argument("--pairs", type=positive_int, default=256, help="(start, goal) pairs of the reach gate")
    parser.add_argument("--sample", action="store_true", help="the worker samples its actions in the reach gate")
    parser.add_argument("--code-samples", type=positive_int, default=4096,
                        help="random codes decoded for coverage (all codes where there are fewer)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON path (default <logdir>/gates.json)")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    add_debug_flag(parser)
    return parser.parse_args(argv)


@report_user_errors
def main(argv=None) -> dict:
    args = parse_args(argv)
    import_modules(args.imports)
    logdir = Path(args.logdir)
    config = run_config(logdir)
    if config["hierarchy"]["levels"] < 2:
        raise UserError(f"{logdir} is a flat run (hierarchy.levels: 1): the gates probe level 0 under the goals of "
                        "level 1; train with --config hierarchy2 or --set hierarchy.levels=2")
    agent, make, obs_key, groups = probe_target(config)
    require_checkpoint(logdir)
    from agents.run_lock import RunLock

    with RunLock(logdir):  # it reads the checkpoint and writes gates.json: not while a run writes there
        return probe(args, logdir, config, agent, make, obs_key, groups)


def require_checkpoint(logdir: Path) -> None:
    """`UserError` for a run without a checkpoint to probe."""
    from agents.checkpoint import latest_checkpoint_step

    if latest_checkpoint_step(logdir / "checkpoints") is None:
        raise UserError(f"no checkpoint in {logdir / 'checkpoints'}: train the run first (it checkpoints every "
                        "run.checkpoint_every steps and at its end)")


def probe_target(config: dict) -> tuple[Any, Callable[[], Any], str, tuple[int, ...]]:
    """The run's agent, an env factory, and the observation key and one-hot groups naming the cell;
    `UserError` for an environment without them."""
    from agents.gates import cell_groups
    from agents.hierarchical_agent import HierarchicalAgent
    from envs import make_env

    make = functools.partial(make_env, config["env_id"], config["env"])
    env = make()
    try:
        agent = HierarchicalAgent.from_config(config, env.observation_space, env.action_space)
        obs_key, groups = cell_groups(env, agent.obs_layout)
    except ValueError as error:
        raise UserError(f"{config['env_id']}: {error}") from None
    finally:
        env.close()
    return agent, make, obs_key, groups


def probe(args: argparse.Namespace, logdir: Path, config: dict, agent: Any, make: Callable[[], Any],
          obs_key: str, groups: tuple[int, ...]) -> dict:
    """Load the state and the steps, run the gates, print the table and write the JSON."""
    import jax
    import numpy as np

    from agents.evaluation import load_train_state
    from agents.gates import filter_level0, reach_by_distance, run_gates
    from agents.reward_reach import reward_reach
    from agents.run_data import collect_episodes, load_replay
    from configs.sections import run_sections
    from envs import make_vector_env

    state, step = load_train_state(agent, config, logdir)
    steps = None if args.fresh else load_replay(agent, config, logdir, args.replay_steps, step)
    source = "replay"
    if steps is None:
        source = "fresh"
        envs = make_vector_env(config["env_id"], config["env"], run_sections(config).run.num_envs)
        steps = collect_episodes(agent, state, envs, args.episodes, args.seed)
        envs.close()
    key = jax.random.PRNGKey(args.seed)
    filter_key, reward_key = jax.random.split(key)[0], jax.random.fold_in(key, 1)  # the gates' keys as before
    filtered = filter_level0(agent, state, steps, filter_key)
    gates = run_gates(agent, state, steps, filtered, make, obs_key, groups, args.pairs, not args.sample,
                      args.code_samples, args.seed)
    reward = reward_reach(agent, state, make, steps, *filtered[:2], obs_key, groups, args.pairs, not args.sample,
                          np.random.default_rng(args.seed), reward_key)
    by_distance = reach_by_distance(agent, state, make, steps, *filtered[:2], obs_key, groups, args.pairs,
                                    not args.sample, np.random.default_rng(args.seed), jax.random.fold_in(key, 2))
    result = {"logdir": str(logdir), "step": step, "env_id": config["env_id"], "source": source,
              "probed_steps": int(steps["is_first"].size), "seed": args.seed,
              "passed": all(gate.passed for gate in gates),
              "gates": {gate.key: gate._asdict() for gate in gates}, "reward_reach": reward,
              "reach_by_distance": by_distance}
    out = Path(args.out) if args.out else logdir / "gates.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"step {step:,}, {result['probed_steps']:,} {source} steps of {config['env_id']}")
    print(format_table(gates))
    print(format_reward_reach(reward))
    print(format_reach_by_distance(by_distance))
    print(f"wrote {out}")
    return result


def format_table(gates: list[Gate]) -> str:
    """One row per gate: measured value, threshold and PASS / FAIL (n/a with the reason where unmeasured)."""
    rows = [("gate", "value", "threshold", "verdict")]
    for gate in gates:
        value = "n/a" if gate.value is None else f"{gate.value:.3f}"
        verdict = f"n/a ({gate.note})" if gate.passed is None else ("PASS" if gate.passed else "FAIL")
        rows.append((gate.name, value, gate.threshold, verdict))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    reach = next((gate.details for gate in gates if gate.key == "reach"), {})
    if "K" in reach:
        lines.append(f"  reach: own {reach['reach_own']:.3f} vs shuffled {reach['reach_shuffled']:.3f}; by cell own "
                     f"{reach['cell_reach_own']:.3f} vs shuffled {reach['cell_reach_shuffled']:.3f} "
                     f"({reach['pairs']} pairs, K {reach['K']}, {reach['policy']} worker)")
    coverage = next((gate.details for gate in gates if gate.key == "coverage"), {})
    if coverage:  # the share is of the cells visited: a run that stays in one room covers them easily
        lines.append(f"  coverage: {coverage['cells_covered']} of {coverage['cells_visited']} visited cells, "
                     f"{coverage['codes_decoded']} codes decoded")
    return "\n".join(lines)


def format_reward_reach(reward: dict) -> str:
    """The reward-reach diagnostic in two lines (or why it could not be measured)."""
    head = f"reward reach ({reward['rewarded_steps']} rewarded steps probed"
    if not reward["pairs"]:
        return f"{head}): n/a ({reward['note']})"
    shares = ", ".join(f"{kind} goal {share:.3f}" for kind, share in reward["reach"].items())
    lines = [f"{head}, {reward['pairs']} pairs, K {reward['K']}, {reward['policy']} worker): enters the rewarded "
             f"cell with the {shares}"]
    if "code_similarity" in reward:
        similarity = reward["code_similarity"]
        lines.append(f"  codebook similarity to the state it codes: rewarded {similarity['rewarded']:.3f}, visited "
                     f"{similarity['visited']:.3f}")
    return "\n".join(lines)


def format_reach_by_distance(rows: list[dict]) -> str:
    """The worker's reach of goals farther ahead, in one line."""
    return "worker reach by cell with goals farther ahead (own / shuffled, as many steps to get there): " + "; ".join(
        f"{row['from']}-{row['to']} steps {format_band_reach(row)}" for row in rows)


def format_band_reach(row: dict) -> str:
    """One band of ``reach_by_distance``: ``0.52 / 0.10 (256 pairs)``, n/a where too few pairs."""
    if "cell_reach_own" not in row:
        return f"n/a ({row['pairs']} pairs)"
    return f"{row['cell_reach_own']:.2f} / {row['cell_reach_shuffled']:.2f} ({row['pairs']} pairs)"


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
