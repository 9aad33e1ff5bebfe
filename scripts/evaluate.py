"""Evaluate a trained run: ``python -m scripts.evaluate --logdir runs/X [--episodes N] [--seed S] [--video]``.

Prints the mean and standard deviation of the return and, where the environment reports success
(``info["success"]`` or ``info["is_success"]`` at an episode's end, ``envs.success``), the success
rate; says so where it does not. Writes ``eval/return_mean``, ``eval/return_std`` (and
``eval/success_rate``) to the run's TensorBoard and ``metrics.jsonl``; ``eval.json`` to the run
directory (``success_rate`` and ``successes`` null where the environment reports none) and, with
``--video``, ``eval.gif`` of the first episode. The same seed gives the same
returns. Exit status 2 with one paragraph for an error you can fix (a run being trained holds the
directory; an environment without rgb_array renders for ``--video``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

from scripts.common import UserError, add_debug_flag, import_modules, report_user_errors, run_config


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", required=True, help="the run directory")
    parser.add_argument("--episodes", type=positive_int, default=10)
    parser.add_argument("--seed", type=int, default=12345, help="seeds the environment and the policy")
    parser.add_argument("--video", action="store_true", help="write eval.gif of the first episode")
    parser.add_argument("--sample", action="store_true", help="sample actions instead of taking the mode")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    add_debug_flag(parser)
    return parser.parse_args(argv)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def check_renders(env_id: str, env_config: dict) -> None:
    """``--video`` needs rgb_array renders; say what the environment lacks instead of crashing."""
    from envs.registry import make_env

    env = make_env(env_id, env_config)
    modes = env.metadata.get("render_modes", [])
    env.close()
    if "rgb_array" not in modes:
        raise UserError(
            f"--video needs an environment that renders rgb_array frames; {env_id!r} lists render_modes "
            f"{modes}. Give it metadata = {{'render_modes': ['rgb_array']}}, a render_mode constructor "
            "argument and a render() that returns the frame, or evaluate without --video."
        )


def write_gif(frames: list[np.ndarray], path: Path, fps: int = 30) -> None:
    from PIL import Image

    images = [Image.fromarray(np.asarray(frame, np.uint8)) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)


@report_user_errors
def main(argv=None) -> dict:
    args = parse_args(argv)
    import_modules(args.imports)
    logdir = Path(args.logdir)
    config = run_config(logdir)

    from agents.run_lock import RunLock

    with RunLock(logdir):  # it writes eval.json and logs: not while a training run writes there
        return evaluate(args, logdir, config)


def evaluate(args: argparse.Namespace, logdir: Path, config: dict) -> dict:
    from agents.hierarchical_agent import HierarchicalAgent
    from agents.evaluation import evaluation_scalars, load_train_state, run_episodes
    from agents.logging import Logger
    from envs.vector import make_vector_env

    env_config = copy.deepcopy(config["env"])
    if args.video and not env_config["pixels"]:
        check_renders(config["env_id"], env_config)
        env_config["kwargs"] = {**env_config["kwargs"], "render_mode": "rgb_array"}
    envs = make_vector_env(config["env_id"], env_config, 1, "sync")
    agent = HierarchicalAgent.from_config(config, envs.single_observation_space, envs.single_action_space)
    state, step = load_train_state(agent, config, logdir)

    frames: list[np.ndarray] = []

    def grab_frame(vector_env):
        if len(frames) < 1000:
            frames.append(np.asarray(vector_env.render()[0]))

    episodes = run_episodes(agent, state, envs, args.episodes, args.seed, greedy=not args.sample,
                            on_step=grab_frame if args.video else None)
    envs.close()
    scalars = evaluation_scalars(episodes)
    result = evaluation_result(scalars, episodes, step, args.seed)
    (logdir / "eval.json").write_text(json.dumps(result, indent=2))
    logger = Logger(logdir)
    logger.scalars(scalars, step)
    logger.close()
    if args.video and frames:
        write_gif(frames, logdir / "eval.gif")
    print(summary_line(result))
    return result


def evaluation_result(scalars: dict[str, float], episodes: list, step: int, seed: int) -> dict:
    """What ``eval.json`` holds: ``success_rate`` and ``successes`` are None where the environment
    reports no success (never 0)."""
    reported = "eval/success_rate" in scalars
    return {"step": step, "episodes": len(episodes), "seed": seed,
            "return_mean": scalars["eval/return_mean"], "return_std": scalars["eval/return_std"],
            "success_rate": scalars.get("eval/success_rate"),
            "returns": [float(episode.score) for episode in episodes],
            "successes": [bool(episode.success) for episode in episodes] if reported else None}


def summary_line(result: dict) -> str:
    """``step 5,000: return 0.61 ± 0.20, success rate 0.70 over 10 episodes (seed 12345)``, or a
    note that the environment reports no success."""
    rate = result["success_rate"]
    success = (f", success rate {rate:.2f}" if rate is not None
               else ", no success rate (the environment reports no info['success'] or info['is_success'])")
    return (f"step {result['step']:,}: return {result['return_mean']:.2f} ± {result['return_std']:.2f}{success} "
            f"over {result['episodes']} episodes (seed {result['seed']})")


if __name__ == "__main__":
    main()
    sys.exit(0)
