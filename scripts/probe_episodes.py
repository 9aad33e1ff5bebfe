"""Why do a trained run's episodes end, and what does its critic expect along the way?

    python -m scripts.probe_episodes --logdir runs/X [--episodes 10] [--sample] [--seed S] [--bins 5]
        [--step N] [--action-values SAMPLES] [--action-grid G] [--trace] [--out F]

Runs the policy of the run's checkpoint (the latest, or ``--step``; greedy, or sampled with
``--sample``) for ``--episodes`` episodes in one environment and records at every step each entry
of every vector observation (and, for a run that sees the environment through a camera, each entry
of the environment's own observation, ``info["source_observation"]``, as ``source``), the top
level's critic value (``HierarchicalAgent.top_task_value``, its estimate of the task return from the
state just observed) and level 0's reward head on that state (``HierarchicalAgent.predicted_reward``).
Reports:

- per episode: return, length and how it ended, ``terminated`` (by the task: a pole fell, a cart
  left the track, a goal was reached) or ``truncated`` (by a time limit), and the observation the
  last step returned, whose entries say where it ended;
- per observation entry: the correlation of the critic's value with the entry over all steps, and
  the mean value in ``--bins`` quantile bins of the entry. A critic whose value falls towards the
  states where episodes end sees the ending coming; if the episodes end there anyway, the fault is
  the actor's, not the critic's ranking;
- the reward head against the reward that really arrived with each observation (every step but
  the first of an episode, which no reward precedes): correlation, mean absolute error and, in
  ``--bins`` quantile bins of the real reward, the mean reward beside the mean prediction. A head
  that predicts the same reward for the best bin as for the next cannot tell the actor which of
  those states is better;
- for a flat run, the correlation of the value with the discounted return (``agent.discount``) that
  really followed, over the steps of terminated episodes (a truncated episode's return is cut short,
  where the critic bootstraps);
- with ``--action-values SAMPLES`` (a flat agent): at every step ``Q(s, a)`` of every action by the
  agent's own model and critic (``agents.expected_returns.first_action_values``, averaged over
  SAMPLES imaginations; for continuous actions, of the greedy action and of ``--action-grid`` values
  along each dimension with the others greedy: how far the greedy action is from the grid value
  ``Q`` ranks first, overall and by bin of each entry, and ``dQ/da`` at the greedy action
  backpropagated through the model, the direction an actor trained through its model
  (``agent.actor_grad: dynamics``) is told to move: how often it points toward that best grid value
  where the grid ranks it clearly ahead), and for discrete actions how the policy's
  actions relate to it: how often it takes the action its model and critic rank first, over all
  steps and over the steps where that ranking is clear (the best action ahead of the second by more
  than twice their combined standard error), the mean regret of the action taken (also in units of
  the actor's return scale, the divisor of the advantages it learns from) and, per observation
  entry, each action's advantage ``Q(s, a) - mean_b Q(s, b)`` and how often the policy takes it, by
  bin. An actor that does not act on what its critic knows shows here as a low agreement where the
  ranking is clear.

Prints tables and writes JSON (default: ``probe_episodes.json`` in the run directory); with
``--trace`` the JSON also holds every step of every episode (``trace``: the entries, the policy's
action as the agent emits it, the reward, the reward head's prediction and the critic's value), for
questions the summaries do not answer, such as what the policy does on either side of a goal state.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from agents.returns import return_divisor
from agents.state_probe import NoSourceObservation, source_entries
from scripts.common import UserError, report_user_errors, trained_run

SOURCE = "source"  # the entry name of the environment's own observation behind a camera
GRADIENT_ENTRIES = ("action_gradients", "action_gradient_errors")  # continuous actions' dQ/da per step


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", required=True, help="the run directory")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--sample", action="store_true", help="sample actions instead of taking the mode")
    parser.add_argument("--seed", type=int, default=123, help="seeds the environment and the policy's keys")
    parser.add_argument("--bins", type=int, default=5, help="quantile bins of each entry for the value table")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument("--action-values", type=int, default=0, metavar="SAMPLES",
                        help="also Q(s, a) of every action (continuous: of a grid along each dimension) at every "
                             "step, averaged over SAMPLES imaginations (flat agents)")
    parser.add_argument("--action-grid", type=int, default=9, metavar="G",
                        help="with --action-values and continuous actions: values tried along each dimension, "
                             "evenly spaced over [-1, 1]")
    parser.add_argument("--trace", action="store_true",
                        help="also write every step of every episode to the JSON (entries, actions, rewards, values)")
    parser.add_argument("--out", help="JSON path (default: <logdir>/probe_episodes.json)")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.bins < 1 or args.action_values == 1 or args.action_values < 0:
        parser.error("--episodes and --bins must be at least 1, --action-values 0 (off) or at least 2")
    if args.action_grid < 2:
        parser.error(f"--action-grid must be at least 2 (the ends of [-1, 1]), got {args.action_grid}")
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


def run_probe(agent, state, envs, episodes: int, seed: int, greedy: bool, action_samples: int = 0,
              action_grid: int = 0) -> list[dict]:
    """Steps ``envs`` (one environment) with the agent's policy for ``episodes`` whole episodes.

    Returns per episode ``entries`` (``{key: [T, D]}``, what the agent observed before each action,
    and under ``source`` the environment's own observation where a camera keeps it), ``values``
    ``[T]``, ``rewards`` ``[T]`` (``rewards[t]`` arrived with the observation after action ``t``),
    ``predicted_rewards`` ``[T - 1]`` (the reward head on the state that observation gave, beside
    ``rewards[:-1]``), ``policy_actions`` ``[T, A]`` (the action as the agent emits it: one-hot where
    discrete), ``ended`` and ``final`` (``{key: [D]}``, the observation the last step
    returned); with ``action_samples``, also ``action_values`` ``[T, C]`` of the candidate first actions
    (``agents.expected_returns.first_action_candidates``; continuous actions: the greedy one, then
    ``action_grid`` values along each dimension) and their standard errors ``action_errors`` ``[T, C]``,
    for discrete actions ``actions`` ``[T]`` (the index taken), and for continuous ones
    ``action_gradients`` ``[T, A]``, ``dQ/da`` at the greedy action backpropagated through the model
    (``agents.expected_returns.first_action_gradient``), with its standard errors
    ``action_gradient_errors``. A ``UserError`` where the run
    observes no vector and its environment keeps no source observation: nothing to report by entry.
    """
    import jax

    layout, actions = agent.obs_layout, agent.action_layout
    keys = list(layout.mlp_shapes)
    obs, info = envs.reset(seed=seed)
    try:
        source_entries(info)
        keys.append(SOURCE)
    except NoSourceObservation:
        if not keys:
            raise UserError(f"the run observes no vector keys (only {sorted(layout.keys)}) and its environment keeps "
                            "no state of its own (info['source_observation'], as a camera wrapper does): this probe "
                            "reports by observation entry") from None

    def vectors(obs, info) -> dict[str, np.ndarray]:
        observed = {key: value[0].reshape(-1) for key, value in layout.to_dict(obs).items() if key in keys}
        return {**observed, SOURCE: source_entries(info)[0]} if SOURCE in keys else observed

    policy_state = agent.initial_policy_state(state, 1)
    key, is_first = jax.random.PRNGKey(seed), np.ones(1, bool)
    finished: list[dict] = []
    fresh = lambda: {"entries": [], "values": [], "rewards": [], "predicted": [], "policy_actions": [], "actions": [],
                     "action_values": [], "action_errors": [], "action_gradients": [], "action_gradient_errors": []}
    current = fresh()
    while len(finished) < episodes:
        key, step_key, values_key = jax.random.split(key, 3)
        action, policy_state = agent.policy_step(state, policy_state, layout.to_dict(obs), is_first, step_key,
                                                 greedy=greedy)
        current["entries"].append(vectors(obs, info))
        current["values"].append(float(np.asarray(agent.top_task_value(state, policy_state))[0]))
        current["predicted"].append(float(np.asarray(agent.predicted_reward(state, policy_state))[0]))
        current["policy_actions"].append(np.asarray(action, np.float64)[0])
        if action_samples:
            current["actions"].append(int(np.argmax(np.asarray(action)[0])))
            values, errors = agent.first_action_values(state, policy_state, values_key, samples=action_samples,
                                                       grid=action_grid)
            current["action_values"].append(np.asarray(values)[0])
            current["action_errors"].append(np.asarray(errors)[0])
            if not actions.discrete:
                gradient, gradient_error = agent.first_action_gradient(state, policy_state, values_key,
                                                                       samples=action_samples)
                current["action_gradients"].append(np.asarray(gradient)[0])
                current["action_gradient_errors"].append(np.asarray(gradient_error)[0])
        obs, reward, terminated, truncated, info = envs.step(actions.to_env(np.asarray(action)))
        current["rewards"].append(float(reward[0]))
        is_first = np.zeros(1, bool)
        if terminated[0] or truncated[0]:
            entries = {name: np.stack([row[name] for row in current["entries"]]) for name in keys}
            finished.append({"entries": entries, "values": np.asarray(current["values"]),
                             "rewards": np.asarray(current["rewards"]), "final": vectors(obs, info),
                             "predicted_rewards": np.asarray(current["predicted"][1:]),
                             "policy_actions": np.stack(current["policy_actions"]),
                             "ended": "terminated" if terminated[0] else "truncated",
                             **({"action_values": np.stack(current["action_values"]),
                                 "action_errors": np.stack(current["action_errors"])} if action_samples else {}),
                             **({"actions": np.asarray(current["actions"])}
                                if action_samples and actions.discrete else {}),
                             **({name: np.stack(current[name]) for name in GRADIENT_ENTRIES}
                                if action_samples and not actions.discrete else {})})
            current = fresh()
            obs, info = envs.reset()
            is_first = np.ones(1, bool)
    return finished


def summarise_actions(episodes: list[dict], bins: int, return_scale: float) -> dict:
    """How the actions taken relate to ``Q(s, a)`` (``run_probe`` with ``action_samples``): agreement
    (also where the ranking is clear), regret (also over ``return_scale``) and, per observation entry,
    each action's advantage and how often it was taken, by quantile bin of the entry."""
    values = np.concatenate([episode["action_values"] for episode in episodes])  # [T, A]
    errors = np.concatenate([episode["action_errors"] for episode in episodes])
    taken = np.concatenate([episode["actions"] for episode in episodes])  # [T]
    steps = np.arange(len(taken))
    advantages = values - values.mean(-1, keepdims=True)
    regret = values.max(-1) - values[steps, taken]
    agrees = taken == values.argmax(-1)
    ranked = np.argsort(values, -1)
    best, second = ranked[:, -1], ranked[:, -2]
    clear = values[steps, best] - values[steps, second] > 2.0 * np.hypot(errors[steps, best], errors[steps, second])
    report = {"steps": len(taken), "agreement": float(np.mean(agrees)), "clear_steps": int(clear.sum()),
              "agreement_where_clear": float(np.mean(agrees[clear])) if clear.any() else None,
              "regret": float(regret.mean()), "return_scale": return_scale,
              "regret_over_return_scale": float(regret.mean() / return_scale),
              "mean_abs_advantage": float(np.abs(advantages).mean()),
              "mean_standard_error": float(errors.mean()), "entries": {}}
    for name in episodes[0]["entries"]:
        stacked = np.concatenate([episode["entries"][name] for episode in episodes])
        report["entries"][name] = [
            [{"advantage_by_bins": value_by_bins(stacked[:, i], advantages[:, a], bins),
              "taken_by_bins": value_by_bins(stacked[:, i], (taken == a).astype(float), bins)}
             for a in range(values.shape[1])]
            for i in range(stacked.shape[1])]
    return report


def summarise_continuous_actions(episodes: list[dict], bins: int, return_scale: float, grid: int) -> dict:
    """How the greedy continuous action relates to ``Q(s, a)`` of the candidates (``run_probe`` with
    ``action_samples`` and ``action_grid``): the regret of the greedy action against the best candidate
    (also over ``return_scale``, and where the best is ahead by over twice the combined standard
    error) and, per action dimension, the grid value whose ``Q`` is highest (the other dimensions
    greedy) beside the policy's action, overall and by quantile bin of each observation entry."""
    values = np.concatenate([episode["action_values"] for episode in episodes])  # [T, 1 + A * grid]
    errors = np.concatenate([episode["action_errors"] for episode in episodes])
    taken = np.concatenate([episode["policy_actions"] for episode in episodes])  # [T, A]
    steps, dims = np.arange(len(values)), taken.shape[1]
    best = values.argmax(-1)
    regret = values[steps, best] - values[:, 0]
    clear = regret > 2.0 * np.hypot(errors[steps, best], errors[:, 0])
    levels = np.linspace(-1.0, 1.0, grid)
    best_by_dim = levels[values[:, 1:].reshape(len(values), dims, grid).argmax(-1)]  # [T, A]
    gradients = np.concatenate([episode["action_gradients"] for episode in episodes])  # [T, A]
    gradient_errors = np.concatenate([episode["action_gradient_errors"] for episode in episodes])
    toward = best_by_dim - taken  # where Q's grid says the greedy action should move, per dimension
    by_dim = values[:, 1:].reshape(len(values), dims, grid)
    grid_slope = (by_dim[..., -1] - by_dim[..., 0]) / 2.0  # Q's mean slope over [-1, 1], per dimension [T, A]
    report = {"steps": len(values), "grid": levels.tolist(), "regret": float(regret.mean()),
              "return_scale": return_scale, "regret_over_return_scale": float(regret.mean() / return_scale),
              "clear_steps": int(clear.sum()), "mean_standard_error": float(errors.mean()),
              "dimensions": [{"mean_best": float(best_by_dim[:, d].mean()), "mean_taken": float(taken[:, d].mean()),
                              "mean_abs_gap": float(np.abs(best_by_dim[:, d] - taken[:, d]).mean()),
                              "mean_gradient": float(gradients[:, d].mean()),
                              "mean_gradient_error": float(gradient_errors[:, d].mean()),
                              "mean_abs_grid_slope": float(np.abs(grid_slope[:, d]).mean()),
                              "gradient_grid_slope_correlation": correlation(gradients[:, d], grid_slope[:, d]),
                              **gradient_agreement(gradients[:, d], gradient_errors[:, d], toward[:, d], clear)}
                             for d in range(dims)],
              "entries": {}}
    for name in episodes[0]["entries"]:
        stacked = np.concatenate([episode["entries"][name] for episode in episodes])
        report["entries"][name] = [
            [{"best_by_bins": value_by_bins(stacked[:, i], best_by_dim[:, d], bins),
              "taken_by_bins": value_by_bins(stacked[:, i], taken[:, d], bins),
              "gradient_by_bins": value_by_bins(stacked[:, i], gradients[:, d], bins)} for d in range(dims)]
            for i in range(stacked.shape[1])]
    return report


def gradient_agreement(gradient: np.ndarray, error: np.ndarray, toward: np.ndarray, clear: np.ndarray) -> dict:
    """Whether backpropagation's ``dQ/da`` (``gradient [T]``, standard errors ``error``) points the
    greedy action the way Q's best grid value lies (``toward [T]``: best minus greedy), over the steps
    where that best value is ``clear``ly ahead of the greedy action and lies on one side of it: the
    share of them where the gradient has that sign, and where it has it by over 2 standard errors
    (``None`` without such steps)."""
    steps = clear & (toward != 0)
    agrees = np.sign(gradient[steps]) == np.sign(toward[steps])
    firmly = agrees & (np.abs(gradient[steps]) > 2.0 * error[steps])
    return {"gradient_steps": int(steps.sum()),
            "gradient_toward_best": float(agrees.mean()) if steps.any() else None,
            "gradient_firmly_toward_best": float(firmly.mean()) if steps.any() else None}


def summarise_reward_head(episodes: list[dict], bins: int) -> dict | None:
    """Level 0's reward head against the rewards that arrived (``run_probe``'s ``predicted_rewards``
    beside ``rewards[:-1]``): correlation, mean absolute error, means, and per quantile bin of the
    real reward its mean beside the mean prediction. None where no episode has two steps."""
    real = np.concatenate([episode["rewards"][:-1] for episode in episodes])
    predicted = np.concatenate([episode["predicted_rewards"] for episode in episodes])
    if not len(real):
        return None
    by_bins = value_by_bins(real, predicted, bins)
    return {"steps": len(real), "correlation": correlation(predicted, real),
            "mean_abs_error": float(np.abs(predicted - real).mean()),
            "mean_reward": float(real.mean()), "mean_predicted": float(predicted.mean()),
            "by_reward_bins": None if by_bins is None else [
                {"low": row["low"], "high": row["high"], "steps": row["steps"], "mean_reward": paid["mean_value"],
                 "mean_predicted": row["mean_value"]} for row, paid in zip(by_bins, value_by_bins(real, real, bins))]}


def trace(episodes: list[dict]) -> list[dict]:
    """Every step of ``run_probe``'s episodes as JSON lists, per episode: ``entries`` (``{key: [T][D]}``),
    ``actions`` ``[T][A]``, ``rewards`` ``[T]``, ``predicted_rewards`` ``[T - 1]`` and ``values`` ``[T]``;
    with action values also ``action_values`` and ``action_errors`` ``[T][C]``, and for continuous actions
    ``action_gradients`` and ``action_gradient_errors`` ``[T][A]``."""
    return [{"entries": {name: value.tolist() for name, value in episode["entries"].items()},
             "actions": episode["policy_actions"].tolist(), "rewards": episode["rewards"].tolist(),
             "predicted_rewards": episode["predicted_rewards"].tolist(), "values": episode["values"].tolist(),
             **{name: episode[name].tolist() for name in ("action_values", "action_errors") + GRADIENT_ENTRIES
                if name in episode}}
            for episode in episodes]


def summarise(episodes: list[dict], bins: int, discount: float | None, return_scale: float | None = None,
              action_grid: int = 0) -> dict:
    """The JSON report of ``run_probe``'s episodes (see the module docstring); ``return_scale`` (the
    actor's divisor of advantages) with action values, and ``action_grid`` with continuous ones."""
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
    if "predicted_rewards" in episodes[0]:
        report["reward_head"] = summarise_reward_head(episodes, bins)
    if "actions" in episodes[0]:
        report["actions"] = summarise_actions(episodes, bins, return_scale)
    elif "action_values" in episodes[0]:
        report["continuous_actions"] = summarise_continuous_actions(episodes, bins, return_scale, action_grid)
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
    if report.get("reward_head"):
        print_reward_head(report["reward_head"])
    if "actions" in report:
        print_actions(report["actions"])
    if "continuous_actions" in report:
        print_continuous_actions(report["continuous_actions"])


def print_reward_head(head: dict) -> None:
    r = head["correlation"]
    print(f"\nreward head against the reward that arrived ({head['steps']:,} steps): r = "
          f"{'-' if r is None else f'{r:.2f}'}, mean |error| {head['mean_abs_error']:.3g}, mean reward "
          f"{head['mean_reward']:.3g}, mean prediction {head['mean_predicted']:.3g}")
    for row in head["by_reward_bins"] or []:
        print(f"  reward {row['low']:.3g}..{row['high']:.3g} ({row['steps']:,} steps): mean {row['mean_reward']:.3g}, "
              f"predicted {row['mean_predicted']:.3g}")


def print_actions(actions: dict) -> None:
    clear = actions["agreement_where_clear"]
    print(f"\nactions against Q(s, a) by the model and critic ({actions['steps']:,} steps): the action ranked "
          f"first taken at {100 * actions['agreement']:.1f}% of steps, at "
          f"{'-' if clear is None else f'{100 * clear:.1f}%'} of the {actions['clear_steps']:,} where it is ranked "
          f"first clearly (by over 2 standard errors); regret of the action taken "
          f"{actions['regret']:.3g} ({actions['regret_over_return_scale']:.3g} return scales of "
          f"{actions['return_scale']:.3g}); mean |advantage| {actions['mean_abs_advantage']:.3g}, "
          f"mean standard error of Q {actions['mean_standard_error']:.3g}")
    print("per entry and action, by quantile bin of the entry (entry range: mean advantage, share of steps it was taken)")
    print_bins(actions["entries"], (("advantage_by_bins", "+.3g"), ("taken_by_bins", ".2f")), "action {}")


def print_bins(entries: dict, series: tuple[tuple[str, str], ...], label: str) -> None:
    """Per observation entry and action (``label`` formats its index), by-bin series side by side:
    ``series`` names each one's key in a row and the format of its values."""
    for name, rows in entries.items():
        for i, per_action in enumerate(rows):
            for a, row in enumerate(per_action):
                if row[series[0][0]] is None:
                    continue
                cells = "; ".join(
                    f"{bins[0]['low']:.2f}..{bins[0]['high']:.2f}: "
                    + ", ".join(f"{b['mean_value']:{fmt}}" for b, (_, fmt) in zip(bins, series))
                    for bins in zip(*(row[key] for key, _ in series)))
                print(f"  {name}[{i}] {label.format(a)}  {cells}")


def print_continuous_actions(actions: dict) -> None:
    print(f"\nthe greedy action against Q(s, a) of a grid of {len(actions['grid'])} values along each action dimension "
          f"({actions['steps']:,} steps): regret {actions['regret']:.3g} ({actions['regret_over_return_scale']:.3g} "
          f"return scales of {actions['return_scale']:.3g}), a grid value clearly better (by over 2 standard errors) "
          f"at {actions['clear_steps']:,} steps; mean standard error of Q {actions['mean_standard_error']:.3g}")
    for d, row in enumerate(actions["dimensions"]):
        toward, firmly = row["gradient_toward_best"], row["gradient_firmly_toward_best"]
        share = lambda value: "-" if value is None else f"{100 * value:.0f}%"
        signed = lambda value: "-" if value is None else f"{value:+.2f}"
        print(f"  action[{d}]: the grid value Q ranks first averages {row['mean_best']:+.3f}, the greedy action "
              f"{row['mean_taken']:+.3f}, mean |gap| {row['mean_abs_gap']:.3f}; dQ/da backpropagated through the "
              f"model averages {row['mean_gradient']:+.3g} (standard error {row['mean_gradient_error']:.3g}; Q's "
              f"own slope over the grid, (Q(1) - Q(-1)) / 2, averages {row['mean_abs_grid_slope']:.3g} in size, "
              f"correlation with the gradient {signed(row['gradient_grid_slope_correlation'])}) and points toward Q's "
              f"best grid value at {share(toward)} of the {row['gradient_steps']:,} steps where that value is "
              f"clearly better, by over 2 standard errors at {share(firmly)}")
    print("per entry and action dimension, by quantile bin of the entry (entry range: Q's best grid value, greedy "
          "action, dQ/da backpropagated)")
    print_bins(actions["entries"], (("best_by_bins", "+.2f"), ("taken_by_bins", "+.2f"), ("gradient_by_bins", "+.3g")),
               "action[{}]")


@report_user_errors
def main(argv=None) -> dict:
    args = parse_args(argv)
    logdir = Path(args.logdir)
    with trained_run(logdir, args.step) as (config, agent, state, step, envs):
        if args.action_values and agent.num_levels != 1:
            raise UserError(f"--action-values needs a flat agent (hierarchy.levels 1); {logdir} has "
                            f"{agent.num_levels} levels")
        critic = agent.levels[0].actor_critic
        if args.action_values and critic.discrete and critic.action_groups != 1:
            raise UserError(f"--action-values needs one discrete action per step; {logdir}'s actor picks "
                            f"{critic.action_groups} at once (try each in its own run)")
        grid = 0 if agent.action_layout.discrete else args.action_grid
        episodes = run_probe(agent, state, envs, args.episodes, args.seed, not args.sample, args.action_values, grid)
        return_scale = float(np.asarray(return_divisor(state.levels[0].actor_critic.return_scale)).reshape(-1)[0])
    flat = agent.num_levels == 1
    report = summarise(episodes, args.bins, float(config["agent"]["discount"]) if flat else None, return_scale, grid)
    report = {"logdir": str(logdir), "step": step, "greedy": not args.sample, "seed": args.seed, **report,
              **({"trace": trace(episodes)} if args.trace else {})}
    print_report(logdir, step, not args.sample, report)
    out = Path(args.out) if args.out else logdir / "probe_episodes.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
