"""Does the world model represent each observation entry, and how each action moves it? The level-0
model alone, per variant of one config key.

    python -m scripts.bench_world_model --env CartPole-v1 --config control
    python -m scripts.bench_world_model --env hmbrl/PointFourRooms-v0 --config small --compare world_model.vector_loss variance mse
    python -m scripts.bench_world_model --env hmbrl/GridFourRooms-v0 --config hierarchy2,small --updates 1000 2000 4000
    python -m scripts.bench_world_model --env Pendulum-v1 --config control --compare world_model.dynamics_input joint split

Collects ``--steps`` environment steps with uniformly random actions, trains the preset's level-0
world model on them once per value of the ``--compare`` key (default ``world_model.vector_loss``,
each of its values; same data, same seed), and after each of the ``--updates`` counts measures on
held-out chunks:
  - the decoder's R^2 per entry of every vector observation (posterior features, so what the latent
    state carries), and the KL the posterior pays per step. Several counts show how many updates a
    task needs before its model represents the input, which is what a preset's train ratio must buy.
    An entry that never varies in the held-out chunks (an unvisited cell of a one-hot grid) has no
    R^2 (null in the JSON, ``-`` in the table); keys with more than 8 entries print the min / median
    / max over the others. An entry with a low R^2 is one the agent cannot act on.
  - the action response of every vector entry one step on (``agents.action_response``'s contrasts:
    per unit of each continuous dimension, or each discrete action against action 0): imagined,
    the mean over held-out steps of the decoded observation one step after each candidate action from
    the posterior state (same noise), against the environment's, the least-squares coefficient of
    the action in a regression of the next observation on the observation and the action taken
    (uniformly random actions identify it). Both are in the observation's own units. An actor that
    learns in imagination values an action by what its model says the action changes: a model that
    imagines a fraction of the real effect undervalues control.
  - where the observation is a camera's (pixels or events: ``info["source_observation"]`` holds the
    env's own), the same two questions of the env's state, on ``--probe-steps`` steps of held-out
    random-policy episodes: the R^2 of each state entry from the posterior features (a ridge
    regression fitted on the even-numbered episodes, tested on the odd; ``agents.state_probe``), and
    the action response one step on read by that regression (``agents.action_response``, as
    ``scripts.probe_state --action-response 1``).
Prints a table and writes JSON (default prefix ``benchmarks/out/world_model_<env>``).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from agents.action_response import (action_codes, effect_names, effects_of_candidates, first_action_candidates,
                                    imagined_action_effects, real_action_effects, valid_rows)
from agents.replay import Replay
from agents.spaces import action_layout, observation_layout
from agents.spaces import replay_spec
from configs.loader import load_config, parse_override
from configs.sections import agent_sections, run_sections
from envs import make_vector_env
from envs.collector import Collector
from agents.state_probe import (NoSourceObservation, entry_r2, fitted_probe, latent_features, record_episodes,
                                split_probe)
from world_models.distributions import symexp
from world_models.rssm import state_features
from world_models.world_model import VECTOR_LOSSES, WorldModel


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--config", default="control", help="presets, comma-separated (as scripts.train)")
    parser.add_argument("--steps", type=int, default=20_000, help="random-policy steps to train on")
    parser.add_argument("--updates", type=int, nargs="+", default=[1_000],
                        help="update counts to measure after (one training run per variant)")
    parser.add_argument("--compare", nargs="+", default=["world_model.vector_loss", *VECTOR_LOSSES],
                        metavar=("KEY", "VALUE"),
                        help="a config key and the values to train the model with, one model each "
                             "(default: world_model.vector_loss and each of its values)")
    parser.add_argument("--probe-steps", type=int, default=2_000,
                        help="camera observations: random-policy steps (whole episodes) to probe the state on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="output prefix (default benchmarks/out/world_model_<env>)")
    return parser.parse_args(argv)


def random_policy_replay(config: dict, steps: int, seed: int):
    """A replay filled with ``steps`` uniformly random steps; the observation layout and action size."""
    sections, encoder = run_sections(config), agent_sections(config).encoder
    run = sections.run
    envs = make_vector_env(config["env_id"], config["env"], run.num_envs, "sync")
    obs = observation_layout(envs.single_observation_space, encoder.mlp_keys, encoder.cnn_keys)
    actions = action_layout(envs.single_action_space)
    replay = Replay(replay_spec(obs, actions.dim), run.num_envs, capacity=steps + run.num_envs, seed=seed,
                    batch_size=sections.replay.batch_size, batch_length=sections.replay.batch_length)
    collector, rng = Collector(envs, actions.dim, obs.to_dict), np.random.default_rng(seed)
    collector.reset(seed=seed)

    def policy(_, __):
        action = actions.random(rng, run.num_envs)
        return action, actions.to_env(action)

    for _ in range(steps // run.num_envs):
        record, _ = collector.step(policy)
        replay.add(record)
    envs.close()
    return replay, obs, actions


class UniformPolicy:
    """What ``agents.state_probe.record_episodes`` asks of an agent, acting uniformly at random."""

    def __init__(self, obs_layout, actions, seed: int):
        self.obs_layout, self.action_layout, self.rng = obs_layout, actions, np.random.default_rng(seed)

    def initial_policy_state(self, state, batch: int):
        return None

    def policy_step(self, state, policy_state, obs, is_first, key, greedy: bool):
        return self.action_layout.random(self.rng, 1), None


def source_episodes(config: dict, obs, actions, steps: int, seed: int) -> list[dict] | None:
    """Random-policy episodes with the env's own observation per step (``record_episodes``), or None
    where the env keeps none (its observation is its state: the decoder reads that)."""
    envs = make_vector_env(config["env_id"], config["env"], 1, "sync")
    try:
        return record_episodes(UniformPolicy(obs, actions, seed), None, envs, steps, seed, greedy=False)
    except NoSourceObservation:
        return None
    finally:
        envs.close()


def probe_state(model: WorldModel, params, episodes: list[dict], key, discrete: bool, batch: int = 4) -> dict:
    """The state probe of ``episodes``: each entry's R^2 from the posterior features (fitted on the
    even-numbered episodes, tested on the odd) and the action response one step on, imagined from
    the test episodes and read by the fitted regression, against the env's from all of them."""
    features = latent_features(model, params, episodes, batch, key)
    sources = [episode["sources"] for episode in episodes]
    predict = fitted_probe(features[0::2], sources[0::2])[1]
    imagined = imagined_action_effects(model, params, episodes[1::2], batch, key, 1, discrete, predict)
    real = real_action_effects(episodes, 1, discrete)[1]
    return {"entries": episodes[0]["names"], "r2": split_probe(features, episodes)["r2"],
            "action_response": {"effects": effect_names(model.action_dim, discrete),
                                "imagined": valid_rows(imagined, 1).mean(0).round(4).tolist(),
                                "real": np.round(real["effect"], 4).tolist(), "real_r2": real["r2"]}}


def train_and_probe(model: WorldModel, replay: Replay, marks: list[int], seed: int, discrete: bool,
                    episodes: list[dict] | None = None) -> list[dict]:
    """Train ``model`` on ``replay`` up to the largest of ``marks``; after each mark, on fresh chunks:
    the R^2 per vector entry (None where undefined in every probe), the KL, and each vector key's
    one-step action response, imagined and real (``action_response``); with ``episodes`` (held out,
    with the env's own observation), the state probe of them (``probe_state``)."""
    params = model.init(jax.random.PRNGKey(seed))
    opt_state = model.optimizer.init(params)

    @jax.jit
    def update(params, opt_state, batch, key):
        grads, _ = jax.grad(model.loss, has_aux=True)(params, batch, key)
        changes, opt_state = model.optimizer.update(grads, opt_state, params)
        return jax.tree.map(jnp.add, params, changes), opt_state

    @jax.jit
    def probe(params, batch, key):
        _, (metrics, states) = model.loss(params, batch, key)
        predictions = model.decode(params, state_features(states))
        targets = model.reconstruction_targets(batch)
        pairs = {name: (predictions[name], targets[name]) for name in model.mlp_shapes}
        return pairs, metrics["world_model/loss/dynamics"], imagined_next(params, states, batch, key)

    def imagined_next(params, states, batch, key):
        """Each vector key decoded one step after every first-action candidate from the posterior
        at steps ``0 .. T-2`` (the action taken at t is ``prev_action[t + 1]``): ``[T-1, C, B, D]``."""
        starts = jax.tree.map(lambda leaf: leaf[:-1], states)

        def from_step(start, taken):
            def after(first):
                decoded = model.decode(params, state_features(model.img_step(params, start, first, key)))
                return {name: symexp(decoded[name]) for name in model.mlp_shapes}
            return jax.vmap(after)(first_action_candidates(taken, discrete))

        return jax.vmap(from_step)(starts, batch["prev_action"][1:])

    key, start, done, results = jax.random.PRNGKey(seed + 1), time.time(), 0, []
    for mark in sorted(set(marks)):
        for _ in range(mark - done):
            key, step_key = jax.random.split(key)
            params, opt_state = update(params, opt_state, replay.sample(), step_key)
        done = mark
        held_out = np.random.default_rng(seed + 2)  # the same held-out chunks at every mark
        batches = [replay.sample(held_out) for _ in range(8)]
        probes = [probe(params, batch, jax.random.fold_in(key, i)) for i, batch in enumerate(batches)]
        r2 = {}
        for name, size in model.mlp_shapes.items():
            flat = lambda leaf: np.asarray(leaf).reshape(-1, size[-1])
            per_probe = [entry_r2(*map(flat, p[0][name])) for p in probes]  # [probes][D], None: no spread
            defined = [[value for value in entry if value is not None] for entry in zip(*per_probe)]
            r2[name] = [round(float(np.mean(values)), 4) if values else None for values in defined]
        response = {name: action_response(batches, [p[2][name] for p in probes], name, discrete)
                    for name in model.mlp_shapes}
        results.append({"updates": mark, "r2_per_entry": r2, "kl": float(np.mean([p[1] for p in probes])),
                        "action_response": response, "seconds": time.time() - start})
        if episodes:
            results[-1]["state"] = probe_state(model, params, episodes, jax.random.PRNGKey(seed + 3), discrete)
    return results


def action_response(batches: list[dict], imagined: list, name: str, discrete: bool) -> dict:
    """Key ``name``'s one-step effect of each action contrast on each entry ``[E][D]``: ``imagined``
    (mean over the steps whose next step is in the same episode) and ``real`` (the regression's
    coefficients), with the regression's R^2 per entry."""
    rows, targets, effects = [], [], []
    for batch, decoded in zip(batches, imagined):
        obs = np.asarray(batch[name], np.float64)  # [T, B, D]
        kept = ~np.asarray(batch["is_first"][1:], bool)  # [T-1, B]: step t + 1 follows step t
        taken = np.asarray(batch["prev_action"][1:], np.float64)  # [T-1, B, A]: the action at step t
        codes = action_codes(taken.reshape(-1, taken.shape[-1]), discrete).reshape(kept.shape + (-1,))
        rows.append(np.concatenate([np.ones(kept.shape + (1,)), obs[:-1], codes], -1)[kept])
        targets.append(obs[1:][kept])
        per_step = effects_of_candidates(np.asarray(decoded, np.float64), discrete)  # [T-1, E, B, D]
        effects.append(np.moveaxis(per_step, 1, 2)[kept])  # [N, E, D]
    x, y = np.concatenate(rows), np.concatenate(targets)
    coefficients = np.linalg.lstsq(x, y, rcond=None)[0]
    first = 1 + y.shape[1]
    return {"effects": effect_names(batches[0]["prev_action"].shape[-1], discrete),
            "imagined": np.concatenate(effects).mean(0).round(4).tolist(),
            "real": coefficients[first:].round(4).tolist(), "real_r2": entry_r2(x @ coefficients, y)}


def format_r2(values: list) -> str:
    """Every entry's R^2 for up to 8 entries, else min / median / max over the defined ones."""
    defined = [v for v in values if v is not None]
    if len(values) <= 8:
        return ", ".join("-" if v is None else f"{v:.3f}" for v in values)
    if not defined:
        return f"none of {len(values)} entries varies"
    low, middle, high = np.min(defined), np.median(defined), np.max(defined)
    return f"min {low:.3f} / median {middle:.3f} / max {high:.3f} over {len(defined)} of {len(values)} entries"


def format_response(response: dict) -> str:
    """Per action contrast, ``imagined / real`` for up to 8 entries, else the imagined effect's
    projection on the real one over the real one's squared norm (1: as the environment)."""
    parts = []
    for name, imagined, real in zip(response["effects"], response["imagined"], response["real"]):
        if len(real) <= 8:
            parts.append(f"{name}: " + ", ".join(f"{i:.3f} / {r:.3f}" for i, r in zip(imagined, real)))
        else:
            ratio = float(np.dot(imagined, real) / max(np.dot(real, real), 1e-12))
            parts.append(f"{name}: {ratio:.2f} of the real effect over {len(real)} entries")
    return "; ".join(parts)


def print_state_table(key: str, results: dict, steps: int) -> None:
    """The state probe of every model and mark: R² per state entry, and the action response per entry."""
    names = next(iter(results.values()))[0]["state"]["entries"]
    print(f"\nThe env's state from the latent ({steps:,} held-out random-policy steps): R² of "
          f"{', '.join(names)}; action response one step on, imagined / real, per entry")
    print(f"| {key} | updates | R² | action response |")
    print("| --- | ---: | --- | --- |")
    for value, marks in results.items():
        for result in marks:
            r2 = ", ".join("-" if v is None else f"{v:.2f}" for v in result["state"]["r2"])
            print(f"| {value} | {result['updates']:,} | {r2} | {format_response(result['state']['action_response'])} |")


COMPARABLE = ("world_model.", "backbones.")  # keys that change the model, not the data it is trained on


def main(argv=None) -> dict:
    args = parse_args(argv)
    key, values = args.compare[0], args.compare[1:]
    if not key.startswith(COMPARABLE) or not values:
        raise SystemExit(f"--compare takes a key of {' or '.join(COMPARABLE)} (the data stays the same) and at "
                         f"least one value, got {' '.join(args.compare)!r}")
    overrides = [("env_id", args.env), ("seed", args.seed), *args.overrides]
    config = load_config(args.config.split(","), overrides)
    replay, obs, actions = random_policy_replay(config, args.steps, args.seed)
    episodes = source_episodes(config, obs, actions, args.probe_steps, args.seed + 1000) if args.probe_steps else None
    results = {}
    for value in values:
        variant = load_config(args.config.split(","), [*overrides, parse_override(f"{key}={value}")])
        backbone = variant["world_model"]["backbone"]
        model = WorldModel(obs.mlp_shapes, obs.cnn_shapes, actions.dim,
                           backbone_kwargs=variant["backbones"][backbone], **variant["world_model"])
        results[value] = train_and_probe(model, replay, args.updates, args.seed, actions.discrete, episodes)
    print(f"\n{args.env} / {args.config}: level-0 world model trained on {args.steps:,} random-policy steps")
    print(f"| {key} | updates | decoder R² per entry (posterior) | KL per step (nats) "
          "| action response one step on, imagined / real |")
    print("| --- | ---: | --- | ---: | --- |")
    for value, marks in results.items():
        for result in marks:
            r2 = "; ".join(f"{name}: {format_r2(values)}" for name, values in result["r2_per_entry"].items()) or "-"
            response = "; ".join(f"{name}: {format_response(entry)}"
                                 for name, entry in result["action_response"].items()) or "-"
            print(f"| {value} | {result['updates']:,} | {r2} | {result['kl']:.2f} | {response} |")
    if episodes:
        print_state_table(key, results, sum(len(episode["sources"]) for episode in episodes))
    prefix = Path(args.out or f"benchmarks/out/world_model_{re.sub(r'[^A-Za-z0-9_.-]+', '_', args.env)}")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    output = {"env": args.env, "config": args.config, "steps": args.steps, "updates": args.updates,
              "compare": key, "overrides": args.overrides, "results": results}
    prefix.with_suffix(".json").write_text(json.dumps(output, indent=2))
    print(f"wrote {prefix.with_suffix('.json')}")
    return output


if __name__ == "__main__":
    main()
