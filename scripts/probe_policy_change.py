"""Did a run's own objective call for a change of its policy? Two checkpoints' actors, each judged by
each checkpoint's world model and critic.

    python -m scripts.probe_policy_change --logdir runs/X --before N1 [--after N2] [--steps 2000]
        [--samples 4] [--episodes 3] [--seed S] [--out F]

For a policy that got worse between two checkpoints (a return that collapsed between evaluations),
the question before any tuning is whether the actor followed its objective there or strayed from it.
This probe takes the starts the actor trains from, every posterior state of the last ``--steps``
replay records per environment saved with the later checkpoint (the records of the change), and
imagines from them under each checkpoint's actor in each checkpoint's world model, valued by that
checkpoint's critic: the actor's objective (normalised λ-returns weighted by the discounted
continuation, averaged over the horizon, without the entropy bonus; ``ActorCritic.judge``), split
into the λ-return from the start, the discounted imagined reward over the horizon and the critic's
value at its end. Both actors see the same starts and the same keys (``--samples`` imaginations
each), so their difference is paired; its standard error is over the starts. Beside each judge and
actor, the correlation over the starts between the judge's value of each start and the rewards
imagined from it (as ``actor_critic/value_reward_corr`` in training): near 0, the critic does not rank
states as its own model's rewards do, and its value at the horizon steers the actor by noise.

- If a judge rates the later actor above the earlier one while the real episodes (``--episodes``
  of each actor, greedy and sampled) say the reverse, the judge's model or critic misleads the actor:
  the split says which part does (the imagined rewards of the horizon, or the value beyond it).
- If the judge rates the earlier actor higher, its objective did not call for the change: the actor's
  optimisation left a better policy by its own measure.

Level 0 of a flat run (``hierarchy.levels`` 1). Prints a table and writes JSON (default:
``probe_policy_change.json`` in the run directory).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from scripts.common import UserError, report_user_errors, trained_run

ROLES = ("before", "after")
PARTS = ("objective", "start_return", "reward_sum", "horizon_value")
JUDGED = (*PARTS, "start_value")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", required=True, help="the run directory")
    parser.add_argument("--before", type=int, required=True, help="the earlier checkpoint step")
    parser.add_argument("--after", type=int, help="the later checkpoint step (default: the latest)")
    parser.add_argument("--steps", type=int, default=2000,
                        help="latest replay records per environment of the later checkpoint to start from")
    parser.add_argument("--samples", type=int, default=4, help="imaginations per start and actor")
    parser.add_argument("--episodes", type=int, default=3,
                        help="real episodes of each actor, greedy and sampled (0: none)")
    parser.add_argument("--seed", type=int, default=123, help="seeds the imagination keys and the episodes")
    parser.add_argument("--out", help="JSON path (default: <logdir>/probe_policy_change.json)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.samples < 1 or args.episodes < 0:
        parser.error("--steps and --samples must be at least 1, --episodes at least 0")
    return args


def imagination_starts(agent, level_state, batch: dict[str, np.ndarray], key: jax.Array):
    """Level 0's posterior states of ``batch`` ``[T, B, ...]`` (leaves ``[T * B, ...]``) and their
    start weights ``[T * B]``, as its actor-critic trains from them."""
    from agents.level import flatten_time

    level = agent.levels[0]
    inputs = {name: batch[name] for name in (*level.world_model.obs_keys, "prev_action", "is_first")}
    _, posterior, _, _ = jax.jit(level.world_model.observe)(level_state.world_model.params, inputs, key)
    starts = jax.tree.map(flatten_time, posterior)
    return starts, level.start_weights({"is_terminal": jnp.asarray(batch["is_terminal"])}, None)


def judge_actors(agent, judge_state, actor_params: dict, starts, weights: jax.Array, samples: int,
                 key: jax.Array) -> dict[str, dict[str, np.ndarray]]:
    """Per actor (``actor_params``: role -> level 0's actor parameters), each part of
    ``PolicyJudgement`` per start ``[N]``, averaged over ``samples`` imaginations; every actor gets
    the same keys."""
    level = agent.levels[0]
    rollout = level.imagination_rollout(judge_state, starts, None, weights, jnp.asarray(True), {})

    @jax.jit
    def judge(params, sample_key):
        return level.actor_critic.judge(judge_state.actor_critic, params, rollout, sample_key)

    judged = {}
    for role, params in actor_params.items():
        draws = [judge(params, jax.random.fold_in(key, sample)) for sample in range(samples)]
        judged[role] = {part: np.mean([np.asarray(getattr(draw, part)) for draw in draws], 0) for part in JUDGED}
    return judged


def paired_summary(judged: dict[str, dict[str, np.ndarray]], weights: np.ndarray) -> dict:
    """Means of each part per actor over the starts that count, the correlation of the judge's start
    values with the rewards imagined from them (weighted as training's ``value_reward_corr``: 0 where
    either does not vary), and the paired difference after - before with its standard error."""
    from agents.actor_critic import weighted_correlation

    keep = weights > 0
    summary = {role: {**{part: float(values[part][keep].mean()) for part in PARTS},
                      "value_reward_corr": float(weighted_correlation(values["start_value"], values["reward_sum"],
                                                                      weights))}
               for role, values in judged.items()}
    difference = {}
    for part in PARTS:
        paired = judged["after"][part][keep] - judged["before"][part][keep]
        difference[part] = {"mean": float(paired.mean()),
                            "stderr": float(paired.std(ddof=1) / np.sqrt(max(len(paired), 1)))}
    return {**summary, "after_minus_before": difference, "starts": int(keep.sum())}


def real_returns(agent, states: dict, envs, episodes: int, seed: int) -> dict[str, dict[str, list[float]]]:
    """Returns of ``episodes`` real episodes of each actor, greedy and sampled."""
    from agents.evaluation import run_episodes

    return {role: {mode: [float(episode.score) for episode in
                          run_episodes(agent, state, envs, episodes, seed, greedy=mode == "greedy")]
                   for mode in ("greedy", "sampled")}
            for role, state in states.items()}


def print_report(logdir: Path, steps: dict[str, int], report: dict) -> None:
    print(f"\n{logdir}: level 0's actors at steps {steps['before']:,} (before) and {steps['after']:,} "
          f"(after), judged on {report['judges']['after']['starts']:,} replayed starts")
    print("| judge | actor | objective | λ-return | imagined rewards | value at horizon | start value ~ rewards |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for judge in ROLES:
        judged = report["judges"][judge]
        for actor in ROLES:
            row = " | ".join(f"{judged[actor][part]:.3f}" for part in PARTS)
            print(f"| {judge} ({steps[judge]:,}) | {actor} ({steps[actor]:,}) | {row} | "
                  f"{judged[actor]['value_reward_corr']:+.2f} |")
        row = " | ".join(f"{judged['after_minus_before'][part]['mean']:+.3f} ± "
                         f"{judged['after_minus_before'][part]['stderr']:.3f}" for part in PARTS)
        print(f"| {judge} | after - before | {row} | |")
    for actor, modes in report.get("real", {}).items():
        print(f"real episodes of the {actor} actor ({steps[actor]:,}): " + "; ".join(
            f"{mode} {np.mean(returns):.1f} ({', '.join(f'{value:.0f}' for value in returns)})"
            for mode, returns in modes.items()))


@report_user_errors
def main(argv=None) -> dict:
    args = parse_args(argv)
    from agents.evaluation import load_train_state
    from agents.run_data import load_replay
    from scripts.probe_model import chunks

    logdir = Path(args.logdir)
    with trained_run(logdir, args.after) as (config, agent, after_state, after_step, envs):
        if agent.num_levels != 1:
            raise UserError(f"{logdir} has {agent.num_levels} levels: this probe judges level 0 of a flat run "
                            "(hierarchy.levels 1)")
        if args.before >= after_step:
            raise UserError(f"--before {args.before} must be an earlier checkpoint than --after ({after_step})")
        before_state, _ = load_train_state(agent, config, logdir, args.before)
        states = {"before": before_state, "after": after_state}
        steps = {"before": args.before, "after": after_step}
        records = load_replay(agent, config, logdir, args.steps, after_step)
        if records is None:
            raise UserError(f"{logdir}: no replay was saved with checkpoint {after_step} (disk replay missing or "
                            "empty)")
        batch = chunks(records, int(config["replay"]["batch_length"]))
        key = jax.random.PRNGKey(args.seed)
        actors = {role: state.levels[0].actor_critic.actor.params for role, state in states.items()}
        judges = {}
        for judge, state in states.items():
            starts, weights = imagination_starts(agent, state.levels[0], batch, key)
            judged = judge_actors(agent, state.levels[0], actors, starts, weights, args.samples,
                                  jax.random.fold_in(key, 1))
            judges[judge] = paired_summary(judged, np.asarray(weights))
        real = real_returns(agent, states, envs, args.episodes, args.seed) if args.episodes else {}
    report = {"logdir": str(logdir), "steps": steps, "replay_steps": args.steps, "samples": args.samples,
              "seed": args.seed, "judges": judges, **({"real": real} if real else {})}
    print_report(logdir, steps, report)
    out = Path(args.out) if args.out else logdir / "probe_policy_change.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
