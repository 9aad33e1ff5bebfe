"""Why do a trained run's episodes end, and what does its critic expect along the way?

    python -m scripts.probe_episodes --logdir runs/X [--episodes 10] [--sample] [--seed S] [--bins 5]
        [--step N] [--out F]

Runs the policy of the run's checkpoint (the latest, or ``--step``; greedy, or sampled with
``--sample``) for ``--episodes`` episodes in one environment and records at every step each entry
of every vector observation and the top level's critic value (``HierarchicalAgent.top_task_value``,
its estimate of the task return from the state just observed). Reports:

- per episode: return, length and how it ended, ``terminated`` (by the task: a pole fell, a cart
  left the track, a goal was reached) or ``truncated`` (by a time limit), and the observation the
  last step returned, whose entries say where it ended;
- per observation entry: the correlation of the critic's value with the entry over all steps, and
  the mean value in ``--bins`` quantile bins of the entry. A critic whose value falls towards the
  states where episodes end sees the ending coming; if the episodes end there anyway, the fault is
  the actor's, not the critic's ranking;
- for a flat run, the correlation of the value with the discounted return (``agent.discount``) that
  really followed, over the steps of terminated episodes (a truncated episode's return is cut short,
  where the critic bootstraps).

Prints tables and writes JSON (default: ``probe_episodes.json`` in the run directory).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from scripts.common import report_user_errors, trained_vector_run


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", required=True, help="the run directory")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--sample", action="store_true", help="sample actions instead of taking the mode")
    parser.add_argument("--seed", type=int, default=123, help="seeds the environment and the policy's keys")
    parser.add_argument("--bins", type=int, default=5, help="quantile bins of each entry for the value table")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument("--out", help="JSON path (default: <logdir>/probe_episodes.json)")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.bins < 1:
        parser.error("--episodes and --bins must be at least 1")
    return args


def discounted_returns(rewards: np.ndarray, discount: float) -> np.ndarray:
    """``G_t = r_t + discount * G_{t+1}`` to the episode's end, for every step of one episode."""
    returns, following = np.zeros(len(rewards)), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        following = rewards[t] + discount * following
        returns[t] = following
    return returns


def correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson's correlation, None where either does not vary (or fewer than two points)."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def value_by_bins(entry: np.ndarray, values: np.ndarray, bins: int) -> list[dict] | None:
    """The mean of ``values`` in ``bins`` quantile bins of ``entry`` (equal counts where the entry's
    values allow): ``[{"low", "high", "steps", "mean_value"}]``, low to high. None for a constant
    entry. Bins that tied quantiles leave empty are dropped."""
    if np.ptp(entry) == 0:
        return None
    edges = np.quantile(entry, np.linspace(0.0, 1.0, bins + 1))
    index = np.clip(np.searchsorted(edges, entry, side="right") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = index == b
        if inside.any():
            rows.append({"low": float(entry[inside].min()), "high": float(entry[inside].max()),
                         "steps": int(inside.sum()), "mean_value": float(values[inside].mean())})
    return rows


def run_probe(agent, state, envs, episodes: int, seed: int, greedy: bool) -> dict[str, list]:
    """Steps ``envs`` (one environment) with the agent's policy for ``episodes`` whole episodes.

    Returns per episode ``entries`` (``{key: [T, D]}``, what the agent observed before each action),
    ``values`` ``[T]``, ``rewards`` ``[T]``, ``ended`` and ``final`` (``{key: [D]}``, the observation
    the last step returned).
    """
    import jax

    layout, actions = agent.obs_layout, agent.action_layout
    keys = list(layout.mlp_shapes)
    vectors = lambda obs: {key: value[0].reshape(-1) for key, value in layout.to_dict(obs).items() if key in keys}
    obs, _ = envs.reset(seed=seed)
    policy_state = agent.initial_policy_state(state, 1)
    key, is_first = jax.random.PRNGKey(seed), np.ones(1, bool)
    finished: list[dict] = []
    current = {"entries": [], "values": [], "rewards": []}
    while len(finished) < episodes:
        key, step_key = jax.random.split(key)
        action, policy_state = agent.policy_step(state, policy_state, layout.to_dict(obs), is_first, step_key,
                                                 greedy=greedy)
        current["entries"].append(vectors(obs))
        current["values"].append(float(np.asarray(agent.top_task_value(state, policy_state))[0]))
        obs, reward, terminated, truncated, _ = envs.step(actions.to_env(np.asarray(action)))
        current["rewards"].append(float(reward[0]))
        is_first = np.zeros(1, bool)
        if terminated[0] or truncated[0]:
            entries = {name: np.stack([row[name] for row in current["entries"]]) for name in keys}
            finished.append({"entries": entries, "values": np.asarray(current["values"]),
                             "rewards": np.asarray(current["rewards"]), "final": vectors(obs),
                             "ended": "terminated" if terminated[0] else "truncated"})
            current = {"entries": [], "values": [], "rewards": []}
            obs, _ = envs.reset()
            is_first = np.ones(1, bool)
    return finished


def summarise(episodes: list[dict], bins: int, discount: float | None) -> dict:
    """The JSON report of ``run_probe``'s episodes (see the module docstring)."""
    values = np.concatenate([episode["values"] for episode in episodes])
    report = {"episodes": [], "entries": {}, "value_vs_return": None}
    for episode in episodes:
        report["episodes"].append({
            "return": float(episode["rewards"].sum()), "length": len(episode["rewards"]), "ended": episode["ended"],
            "final": {name: value.tolist() for name, value in episode["final"].items()}})
    for name in episodes[0]["entries"]:
        stacked = np.concatenate([episode["entries"][name] for episode in episodes])
        report["entries"][name] = [
            {"correlation_with_value": correlation(stacked[:, i], values),
             "value_by_bins": value_by_bins(stacked[:, i], values, bins)}
            for i in range(stacked.shape[1])]
    terminated = [episode for episode in episodes if episode["ended"] == "terminated"]
    if discount is not None and terminated:
        realised = np.concatenate([discounted_returns(episode["rewards"], discount) for episode in terminated])
        predicted = np.concatenate([episode["values"] for episode in terminated])
        report["value_vs_return"] = {"discount": discount, "steps": len(realised),
                                     "correlation": correlation(predicted, realised),
                                     "mean_value": float(predicted.mean()), "mean_return": float(realised.mean())}
    return report


def print_report(logdir: Path, step: int, greedy: bool, report: dict) -> None:
    episodes = report["episodes"]
    ended = [episode for episode in episodes if episode["ended"] == "terminated"]
    lengths = lambda rows: f"{min(r['length'] for r in rows):,}-{max(r['length'] for r in rows):,}" if rows else "-"
    returns = ", ".join(f"{episode['return']:.1f}" for episode in episodes)
    print(f"\n{logdir} at step {step:,}, {'greedy' if greedy else 'sampled'}: {len(episodes)} episodes, "
          f"returns {returns}")
    print(f"terminated: {len(ended)} (lengths {lengths(ended)}); truncated: {len(episodes) - len(ended)} "
          f"(lengths {lengths([e for e in episodes if e['ended'] == 'truncated'])})")
    if ended:
        print("\nlast observation of the terminated episodes, per entry: min .. max")
        for name in ended[0]["final"]:
            finals = np.asarray([episode["final"][name] for episode in ended])
            for i in range(finals.shape[1]):
                print(f"  {name}[{i}]: {finals[:, i].min():.3f} .. {finals[:, i].max():.3f}")
    print("\ncritic value by entry: correlation, and the mean value per quantile bin (entry range: value)")
    for name, rows in report["entries"].items():
        for i, row in enumerate(rows):
            r = row["correlation_with_value"]
            bins = row["value_by_bins"] or []
            cells = "; ".join(f"{b['low']:.2f}..{b['high']:.2f}: {b['mean_value']:.3g}" for b in bins)
            print(f"  {name}[{i}]  r = {'-' if r is None else f'{r:+.2f}'}  {cells or 'constant'}")
    if report["value_vs_return"]:
        fit = report["value_vs_return"]
        r = fit["correlation"]
        print(f"\nvalue against the discounted return that followed (discount {fit['discount']}, "
              f"{fit['steps']:,} steps of terminated episodes): r = {'-' if r is None else f'{r:.2f}'}, "
              f"mean value {fit['mean_value']:.3g}, mean return {fit['mean_return']:.3g}")


@report_user_errors
def main(argv=None) -> dict:
    args = parse_args(argv)
    logdir = Path(args.logdir)
    with trained_vector_run(logdir, args.step, "this probe") as (config, agent, state, step, envs):
        episodes = run_probe(agent, state, envs, args.episodes, args.seed, greedy=not args.sample)
    flat = int(config["hierarchy"]["levels"]) == 1
    report = summarise(episodes, args.bins, float(config["agent"]["discount"]) if flat else None)
    report = {"logdir": str(logdir), "step": step, "greedy": not args.sample, "seed": args.seed, **report}
    print_report(logdir, step, not args.sample, report)
    out = Path(args.out) if args.out else logdir / "probe_episodes.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
