"""Did the world model recover the state a camera shows? A linear probe of its latent state.

    python -m scripts.probe_state --logdir runs/X [--steps 2000] [--sample] [--seed S] [--step N] [--out F]

For a run that observes pixels or events (``event:`` ids, ``env.pixels``), the environment keeps its
own observation, which the agent never sees, in ``info["source_observation"]``
(``envs.wrappers.KeepSourceObservation``): CartPole's cart position and velocity, pole angle and
angular velocity, say. This runs the policy of the run's checkpoint (the latest, or ``--step``;
greedy, or sampled with ``--sample``) for whole episodes until they hold ``--steps`` steps (and at
least 4 episodes), filters what it saw with level 0's
world model (``WorldModel.observe``: the posterior features the actor and critic read) and fits a
ridge regression from those features to each entry of the source observation on the even-numbered
episodes, its penalty chosen on a split of them; it reports the R^2 of every entry on the
odd-numbered episodes, which the fit never saw.

The same regression on the features of a freshly initialised world model, filtering the same
observations, is the reference: random features of an image already carry some of what it shows,
so the trained model's R^2 means something only above the untrained one's. A trained model near
R^2 1 on every entry has recovered the state; one near the untrained model has not, whatever its
decoder's R^2 on the images. Prints a table and writes ``probe_state.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from envs.wrappers import KeepSourceObservation
from scripts.common import UserError, report_user_errors, trained_run
from scripts.probe_model import entry_r2

PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
MAX_ENTRIES = 64  # a source observation this wide is itself an image: no state to regress


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", required=True, help="the run directory")
    parser.add_argument("--steps", type=int, default=2000,
                        help="agent steps to record, in whole episodes (at least 4: half fit, half test); "
                             "more steps than latent features keep the regression from fitting noise")
    parser.add_argument("--sample", action="store_true", help="sample the policy's actions instead of the greedy ones")
    parser.add_argument("--seed", type=int, default=123, help="the environment's and the policy's seed")
    parser.add_argument("--batch", type=int, default=4, help="episodes filtered at once")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument("--out", help="JSON path (default: <logdir>/probe_state.json)")
    return parser.parse_args(argv)


def flat_entries(source: Any) -> tuple[np.ndarray, list[str]]:
    """A source observation (array, or dict of arrays) as one float vector with a name per entry."""
    if isinstance(source, dict):
        parts = [flat_entries(source[key]) for key in sorted(source)]
        names = [f"{key}{name if name.startswith('[') else '.' + name}"
                 for key, (_, entry_names) in zip(sorted(source), parts) for name in entry_names]
        return np.concatenate([values for values, _ in parts]), names
    values = np.asarray(source, np.float64).reshape(-1)
    return values, [f"[{index}]" for index in range(values.size)]


def record_episodes(agent, state, envs, steps: int, seed: int, greedy: bool) -> list[dict[str, Any]]:
    """The policy's whole episodes in ``envs`` (one environment) until they hold ``steps`` steps and
    at least 4 episodes: per episode the
    world model's inputs, time-major (``{key: [T, ...]}`` with ``prev_action`` and ``is_first``), the
    source observations ``[T, D]`` with their entry names, and the return."""
    import jax

    layout = agent.obs_layout
    obs, info = envs.reset(seed=seed)
    policy_state = agent.initial_policy_state(state, 1)
    key, is_first = jax.random.PRNGKey(seed), np.ones(1, bool)
    zero_action = np.zeros(agent.action_layout.dim, np.float32)
    finished: list[dict[str, Any]] = []
    current: list[dict[str, np.ndarray]] = []
    sources: list[np.ndarray] = []
    prev_action, total, recorded = zero_action, 0.0, 0
    while len(finished) < 4 or recorded < steps:
        if KeepSourceObservation.KEY not in info:
            raise UserError("the environment gives no info['source_observation']: this probe needs a run that observes "
                            "pixels or events (an event: id or env.pixels), whose camera keeps the env's own observation")
        source, names = flat_entries(jax.tree.map(lambda leaf: np.asarray(leaf)[0], info[KeepSourceObservation.KEY]))
        if source.size > MAX_ENTRIES:
            raise UserError(f"the environment's own observation has {source.size} entries (more than {MAX_ENTRIES}): "
                            "it is an image itself, not a state this probe can regress")
        observed = layout.to_dict(obs)
        current.append({**{name: value[0] for name, value in observed.items()}, "prev_action": prev_action,
                        "is_first": is_first[0]})
        sources.append(source)
        key, step_key = jax.random.split(key)
        action, policy_state = agent.policy_step(state, policy_state, observed, is_first, step_key, greedy=greedy)
        obs, reward, terminated, truncated, info = envs.step(agent.action_layout.to_env(np.asarray(action)))
        prev_action, total, is_first = np.asarray(action, np.float32)[0], total + float(reward[0]), np.zeros(1, bool)
        if terminated[0] or truncated[0]:
            inputs = {name: np.stack([step[name] for step in current]) for name in current[0]}
            finished.append({"inputs": inputs, "sources": np.stack(sources), "names": names, "return": total})
            recorded += len(current)
            current, sources, prev_action, total = [], [], zero_action, 0.0
            obs, info = envs.reset()
            is_first = np.ones(1, bool)
    return finished


def latent_features(world_model, params, episodes: list[dict[str, Any]], batch: int, key) -> list[np.ndarray]:
    """Level 0's posterior features ``[T, F]`` of each episode, filtered from its first step. Episodes
    are padded to the longest (the padding is filtered too and dropped: the filter is causal) and
    filtered ``batch`` at a time, so one shape compiles once."""
    import jax

    from world_models.rssm import state_features

    length = max(len(episode["sources"]) for episode in episodes)
    pad = lambda leaf: np.concatenate([leaf, np.zeros((length - len(leaf),) + leaf.shape[1:], leaf.dtype)])
    filtered = jax.jit(lambda params, inputs, key: state_features(world_model.observe(params, inputs, key)[1]))
    features = []
    for start in range(0, len(episodes), batch):
        group = episodes[start:start + batch]
        group = group + [group[-1]] * (batch - len(group))  # a full batch: one compiled shape
        inputs = {name: np.stack([pad(episode["inputs"][name]) for episode in group], 1) for name in group[0]["inputs"]}
        out = np.asarray(filtered(params, inputs, jax.random.fold_in(key, start)))
        features += [out[:len(episode["sources"]), column] for column, episode in enumerate(group)]
    return features[:len(episodes)]


def ridge_fit(features: np.ndarray, targets: np.ndarray, penalty: float):
    """Ridge regression on standardised features: a function from features to predicted targets."""
    mean, scale = features.mean(0), np.maximum(features.std(0), 1e-6)
    x = (features - mean) / scale
    target_mean = targets.mean(0)
    weights = np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ (targets - target_mean))
    return lambda rows: ((rows - mean) / scale) @ weights + target_mean


def ridge_probe(fit_features: Sequence[np.ndarray], fit_targets: Sequence[np.ndarray],
                test_features: Sequence[np.ndarray], test_targets: Sequence[np.ndarray]) -> dict[str, Any]:
    """Per-entry R^2 on the test episodes of a ridge regression fitted on the fit episodes; its penalty
    (of ``PENALTIES``) is the one with the best mean R^2 when fitted on the first half of the fit
    episodes and tested on the second."""
    half = max(1, len(fit_features) // 2)
    def score(train, held, penalty):
        predict = ridge_fit(np.concatenate(train[0]), np.concatenate(train[1]), penalty)
        r2 = entry_r2(predict(np.concatenate(held[0])), np.concatenate(held[1]))
        return r2, float(np.mean([value for value in r2 if value is not None] or [-np.inf]))
    inner = ((fit_features[:half], fit_targets[:half]), (fit_features[half:], fit_targets[half:]))
    penalty = max(PENALTIES, key=lambda value: score(*inner, value)[1])
    r2, _ = score((fit_features, fit_targets), (test_features, test_targets), penalty)
    return {"penalty": penalty, "r2": r2}


def probe(agent, trained_params, fresh_params, episodes: list[dict[str, Any]], batch: int, seed: int) -> dict:
    """The probe of the trained and of the untrained world model's features on ``episodes``."""
    import jax

    if len(episodes) < 4:
        raise UserError(f"{len(episodes)} episodes: the probe needs at least 4 (half to fit, half to test)")
    world_model = agent.levels[0].world_model
    targets = [episode["sources"] for episode in episodes]
    result = {}
    for name, params in (("trained", trained_params), ("untrained", fresh_params)):
        features = latent_features(world_model, params, episodes, batch, jax.random.PRNGKey(seed))
        result[name] = ridge_probe(features[0::2], targets[0::2], features[1::2], targets[1::2])
    return result


def print_table(logdir: Path, step: int, names: list[str], report: dict) -> None:
    show = lambda value: "-" if value is None else f"{value:.3f}"
    print(f"\n{logdir} at step {step:,}: R² of the env's own observation from level 0's latent state (ridge "
          f"regression from {report['features']} features, fitted on {report['fit_steps']:,} steps of "
          f"{report['fit_episodes']} episodes, tested on {report['test_steps']:,} steps of {report['test_episodes']}); "
          f"mean return {np.mean(report['returns']):.1f}")
    print("| entry | trained model | untrained model |")
    print("| --- | ---: | ---: |")
    for index, name in enumerate(names):
        print(f"| {name} | {show(report['trained']['r2'][index])} | {show(report['untrained']['r2'][index])} |")


@report_user_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import jax

    logdir = Path(args.logdir)
    with trained_run(logdir, args.step) as (config, agent, state, step, envs):
        episodes = record_episodes(agent, state, envs, args.steps, args.seed, not args.sample)
        fresh = agent.init(jax.random.PRNGKey(args.seed)).levels[0].world_model.params
        result = probe(agent, state.levels[0].world_model.params, fresh, episodes, args.batch, args.seed)
    names = episodes[0]["names"]
    lengths = [len(episode["sources"]) for episode in episodes]
    report = {"logdir": str(logdir), "step": step, "greedy": not args.sample, "seed": args.seed, "entries": names,
              "returns": [round(episode["return"], 1) for episode in episodes],
              "features": int(agent.levels[0].world_model.feature_dim),
              "fit_episodes": len(lengths[0::2]), "fit_steps": sum(lengths[0::2]),
              "test_episodes": len(lengths[1::2]), "test_steps": sum(lengths[1::2]), **result}
    print_table(logdir, step, names, report)
    out = Path(args.out) if args.out else logdir / "probe_state.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
