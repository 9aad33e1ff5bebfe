"""Does a run's frozen world model already hold a better policy than its actor found? Refit the actor
and critic alone on it, and evaluate.

    python -m scripts.refit_behaviour --logdir runs/X [--step N] [--updates 1000] [--eval-every 250]
        [--episodes 5] [--set agent.actor_grad=reinforce ...] [--seed S] [--out F]

Loads the checkpoint (the latest, or ``--step``) of a flat run (``hierarchy.levels`` 1) and the
replay saved with it, then trains only the actor and critic, ``--updates`` updates as training makes
them (imagination from every posterior state of a replayed batch), with the world model frozen; the
greedy policy plays ``--episodes`` real episodes before the first update and every
``--eval-every``. ``--set`` changes the behaviour's settings for the refit (``agent.actor_grad``,
``agent.entropy``, the learning rates, ...: ``agents.behaviour_refit.REFIT_KEYS``).

- If the refit lifts the real return where training did not, the model and critic held the better
  policy and the actor's training was what held the run back (its estimator, its pace against a
  moving model).
- If no refit lifts it, whatever the estimator, the model's imagination is the suspect: its dynamics
  or rewards where the better policy would go, or a critic that cannot be fitted to them (or the
  policy is there for more updates than the refit made: a run's own training makes thousands).

Training's checkpoints and logs are not touched. Prints a table and writes JSON (default:
``refit_behaviour.json`` in the run directory).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

from scripts.common import UserError, report_user_errors, run_config, write_json

WATCHED = ("imagined_return", "entropy", "actor_grad_norm", "value_reward_corr")  # actor_critic/... per window


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", required=True, help="the run directory")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument("--updates", type=int, default=1000, help="actor-critic updates of the refit")
    parser.add_argument("--eval-every", type=int, default=250, help="updates between evaluations")
    parser.add_argument("--episodes", type=int, default=5, help="greedy episodes per evaluation")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="behaviour settings for the refit (agents.behaviour_refit.REFIT_KEYS)")
    parser.add_argument("--seed", type=int, default=123, help="seeds the refit's keys, batches and episodes")
    parser.add_argument("--out", help="JSON path (default: <logdir>/refit_behaviour.json)")
    args = parser.parse_args(argv)
    if args.updates < 1 or args.eval_every < 1 or args.episodes < 1:
        parser.error("--updates, --eval-every and --episodes must be at least 1")
    return args


def refit_config(config: dict, overrides: list[str]) -> dict:
    """The run's config with the refit's ``KEY=VALUE`` overrides, each checked against the defaults."""
    from agents.behaviour_refit import REFIT_KEYS
    from configs.loader import load_defaults, parse_override, set_key

    defaults = load_defaults()
    for text in overrides:
        key, value = parse_override(text)
        if key not in REFIT_KEYS:
            raise UserError(f"--set {text}: a refit changes only the behaviour's settings, one of {', '.join(REFIT_KEYS)}"
                            "; the rest shape the frozen model or the saved parameters")
        set_key(config, key, value, defaults)
    return config


def print_report(report: dict) -> None:
    changes = ", ".join(report["set"]) or "none"
    print(f"\n{report['logdir']}: behaviour refit on the frozen world model of step {report['step']:,} "
          f"(changes: {changes})")
    print("| updates | greedy return | episodes | imagined return | entropy | value ~ rewards |")
    print("| ---: | ---: | --- | ---: | ---: | ---: |")
    for row in report["rows"]:
        watched = " | ".join("" if row.get(name) is None else f"{row[name]:.3f}"
                             for name in ("imagined_return", "entropy", "value_reward_corr"))
        episodes = ", ".join(f"{score:.0f}" for score in row["returns"])
        print(f"| {row['updates']:,} | {np.mean(row['returns']):.1f} | {episodes} | {watched} |")


@report_user_errors
def main(argv=None) -> dict:
    args = parse_args(argv)
    from agents.behaviour_refit import behaviour_update, saved_replay
    from agents.evaluation import load_train_state, run_episodes
    from agents.hierarchical_agent import HierarchicalAgent
    from agents.run_lock import RunLock
    from envs.vector import make_vector_env

    logdir = Path(args.logdir)
    config = refit_config(run_config(logdir), args.set)
    if int(config["hierarchy"]["levels"]) != 1:
        raise UserError(f"{logdir} has {config['hierarchy']['levels']} levels: a refit trains level 0 of a flat "
                        "run (hierarchy.levels 1)")
    with RunLock(logdir):
        envs = make_vector_env(config["env_id"], config["env"], 1, "sync")
        try:
            agent = HierarchicalAgent.from_config(config, envs.single_observation_space, envs.single_action_space)
            state, step = load_train_state(agent, config, logdir, args.step)
            try:
                replay = saved_replay(agent, config, logdir, step)
            except ValueError as error:
                raise UserError(str(error)) from error
            if not replay.can_sample():
                raise UserError(f"{logdir}: the replay of checkpoint {step} holds too few steps for a batch")
            update = behaviour_update(agent)
            rng, key = np.random.default_rng(args.seed), jax.random.PRNGKey(args.seed)

            def evaluated(updates: int, window: dict[str, list[float]]) -> dict:
                episodes = run_episodes(agent, state, envs, args.episodes, seed=args.seed)
                means = {name: float(np.mean(values)) for name, values in window.items()}
                return {"updates": updates, "returns": [float(episode.score) for episode in episodes], **means}

            rows, window = [evaluated(0, {})], {}
            for updates in range(1, args.updates + 1):
                key, update_key = jax.random.split(key)
                state, metrics = update(state, replay.sample(rng), update_key)
                for name in WATCHED:
                    window.setdefault(name, []).append(float(metrics[f"actor_critic/{name}"]))
                if updates % args.eval_every == 0 or updates == args.updates:
                    rows.append(evaluated(updates, window))
                    window = {}
                    print(f"refit: {updates:,} updates, greedy return {np.mean(rows[-1]['returns']):.1f}", flush=True)
        finally:
            envs.close()
    report = {"logdir": str(logdir), "step": step, "set": list(args.set),
              "updates": args.updates, "episodes": args.episodes, "seed": args.seed, "rows": rows}
    print_report(report)
    write_json(report, Path(args.out) if args.out else logdir / "refit_behaviour.json")
    return report


if __name__ == "__main__":
    main()
