"""Does the world model represent each observation entry? The level-0 model alone, per loss variant.

    python -m scripts.bench_world_model --env CartPole-v1 --config control
    python -m scripts.bench_world_model --env hmbrl/PointFourRooms-v0 --config small --variants variance mse
    python -m scripts.bench_world_model --env hmbrl/GridFourRooms-v0 --config hierarchy2,small --updates 1000 2000 4000

Collects ``--steps`` environment steps with uniformly random actions, trains the preset's level-0
world model on them once per ``world_model.vector_loss`` variant (same data, same seed), and after
each of the ``--updates`` counts measures on held-out chunks: the decoder's R^2 per entry of every
vector observation (posterior features, so what the latent state carries), the KL the posterior pays
per step. Several counts show how many updates a task needs before its model represents the input,
which is what a preset's train ratio must buy. An entry that never varies in the held-out chunks
(an unvisited cell of a one-hot grid) has no R^2 (null in the JSON, ``-`` in the table); keys with
more than 8 entries print the min / median / max over the others. Prints a table and writes JSON
(default prefix ``benchmarks/out/world_model_<env>``). An entry with a low R^2 is one the agent
cannot act on.
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

from agents.replay import Replay
from agents.spaces import action_layout, observation_layout
from agents.spaces import replay_spec
from configs.loader import load_config
from configs.sections import agent_sections, run_sections
from envs import make_vector_env
from envs.collector import Collector
from agents.state_probe import entry_r2
from world_models.rssm import state_features
from world_models.world_model import VECTOR_LOSSES, WorldModel


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--config", default="control", help="presets, comma-separated (as scripts.train)")
    parser.add_argument("--steps", type=int, default=20_000, help="random-policy steps to train on")
    parser.add_argument("--updates", type=int, nargs="+", default=[1_000],
                        help="update counts to measure after (one training run per variant)")
    parser.add_argument("--variants", nargs="+", default=list(VECTOR_LOSSES), choices=VECTOR_LOSSES)
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
    return replay, obs, actions.dim


def train_and_probe(model: WorldModel, replay: Replay, marks: list[int], seed: int) -> list[dict]:
    """Train ``model`` on ``replay`` up to the largest of ``marks``; after each mark, the R^2 per vector
    entry (None where undefined in every probe) and the KL on fresh chunks."""
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
        return pairs, metrics["world_model/loss/dynamics"]

    key, start, done, results = jax.random.PRNGKey(seed + 1), time.time(), 0, []
    for mark in sorted(set(marks)):
        for _ in range(mark - done):
            key, step_key = jax.random.split(key)
            params, opt_state = update(params, opt_state, replay.sample(), step_key)
        done = mark
        held_out = np.random.default_rng(seed + 2)  # the same held-out chunks at every mark
        probes = [probe(params, replay.sample(held_out), jax.random.fold_in(key, i)) for i in range(8)]
        r2 = {}
        for name, size in model.mlp_shapes.items():
            flat = lambda leaf: np.asarray(leaf).reshape(-1, size[-1])
            per_probe = [entry_r2(*map(flat, p[0][name])) for p in probes]  # [probes][D], None: no spread
            defined = [[value for value in entry if value is not None] for entry in zip(*per_probe)]
            r2[name] = [round(float(np.mean(values)), 4) if values else None for values in defined]
        results.append({"updates": mark, "r2_per_entry": r2, "kl": float(np.mean([p[1] for p in probes])),
                        "seconds": time.time() - start})
    return results


def format_r2(values: list) -> str:
    """Every entry's R^2 for up to 8 entries, else min / median / max over the defined ones."""
    defined = [v for v in values if v is not None]
    if len(values) <= 8:
        return ", ".join("-" if v is None else f"{v:.3f}" for v in values)
    if not defined:
        return f"none of {len(values)} entries varies"
    low, middle, high = np.min(defined), np.median(defined), np.max(defined)
    return f"min {low:.3f} / median {middle:.3f} / max {high:.3f} over {len(defined)} of {len(values)} entries"


def main(argv=None) -> dict:
    args = parse_args(argv)
    config = load_config(args.config.split(","), [("env_id", args.env), ("seed", args.seed), *args.overrides])
    replay, obs, action_dim = random_policy_replay(config, args.steps, args.seed)
    world_model, backbone = dict(config["world_model"]), config["world_model"]["backbone"]
    results = {}
    for variant in args.variants:
        model = WorldModel(obs.mlp_shapes, obs.cnn_shapes, action_dim, backbone_kwargs=config["backbones"][backbone],
                           **{**world_model, "vector_loss": variant})
        results[variant] = train_and_probe(model, replay, args.updates, args.seed)
    print(f"\n{args.env} / {args.config}: level-0 world model trained on {args.steps:,} random-policy steps")
    print("| vector_loss | updates | decoder R² per entry (posterior) | KL per step (nats) |")
    print("| --- | ---: | --- | ---: |")
    for variant, marks in results.items():
        for result in marks:
            r2 = "; ".join(f"{name}: {format_r2(values)}" for name, values in result["r2_per_entry"].items())
            print(f"| {variant} | {result['updates']:,} | {r2} | {result['kl']:.2f} |")
    prefix = Path(args.out or f"benchmarks/out/world_model_{re.sub(r'[^A-Za-z0-9_.-]+', '_', args.env)}")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    output = {"env": args.env, "config": args.config, "steps": args.steps, "updates": args.updates, "results": results}
    prefix.with_suffix(".json").write_text(json.dumps(output, indent=2))
    print(f"wrote {prefix.with_suffix('.json')}")
    return output


if __name__ == "__main__":
    main()
