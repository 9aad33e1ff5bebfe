"""How much of the state does one observation show? A probe of each input's raw observation.

    python -m scripts.probe_observations                                  # CartPole-v1, random policy
    python -m scripts.probe_observations --gains 0.05 0.1 1 0.3 --epsilon 0.3   # a balancing policy
    python -m scripts.probe_observations --set env.event_camera.contrast_pos=0.05 env.event_camera.contrast_neg=0.05

Before any model: what a single observation of each input (``--inputs``, configured as
``scripts.bench_events`` configures them, ``--set`` applied to all) holds of the env's own state,
read linearly. The env runs under a policy on its own observation (``info["source_observation"]``):
uniformly random, or with ``--gains`` the linear state feedback ``action = [gains . state > 0]``
(two discrete actions) or ``clip(gains . state)`` (one continuous), each action replaced by a random
one with probability ``--epsilon``. A balancing policy matters: it keeps the state where a trained
agent keeps it (a CartPole pole near upright), which a random policy leaves at once. Each input's
observations (flattened; ``events`` as its per-polarity count frame) are regressed onto each state
entry (ridge on standardised pixels, each entry's penalty chosen on a split of the fit episodes:
``per_entry_probe``), fitted on ``--train-steps`` of seed 0 and tested on ``--test-steps`` of seed 1.
A linear map of the pixels cannot read an angle wherever the cart stands: ``--cnn-updates N`` also
trains the preset's CNN encoder with a linear head on each input to regress the state (R^2 on the
same test steps), a network's reading. Neither bounds what a world model could learn; both compare
the inputs. The other direction, ``--decoder-updates N``: the preset's CNN decoder (behind an MLP)
trained to redraw each input's reconstruction target (``image_input``: symlog for event images, as
the world model's decoder predicts them) from the state alone, its R^2 on the test steps: how much of
the target the state determines, which is what the world model's latent can be taught through the
reconstruction loss (a target the state does not determine gives it little to learn from).
``--noise`` turns on the learning benchmark's camera noise (shot noise and threshold mismatch), so
what noise costs one observation is measured beside what it costs learning. Prints a table and
writes JSON (default ``benchmarks/out/observations.json``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scripts.common import UserError, report_user_errors, write_json

INPUTS = ("pixels", "frame", "voxel", "integrated", "events")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1", help="a Gymnasium id whose own observation is a vector")
    parser.add_argument("--inputs", nargs="+", default=["pixels", "frame", "integrated"], choices=INPUTS)
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--action-repeat", type=int, default=2)
    parser.add_argument("--gains", type=float, nargs="+",
                        help="linear state feedback on the env's own observation (default: a random policy)")
    parser.add_argument("--epsilon", type=float, default=0.3, help="with --gains: the share of random actions")
    parser.add_argument("--train-steps", type=int, default=3000, help="recorded agent steps to fit on (seed 0)")
    parser.add_argument("--test-steps", type=int, default=1500, help="recorded agent steps to test on (seed 1)")
    parser.add_argument("--cnn-updates", type=int, default=0,
                        help="also train the preset's CNN encoder and a linear head for this many updates to regress "
                             "the state (a network's reading; 0: only the linear one)")
    parser.add_argument("--decoder-updates", type=int, default=0,
                        help="also train the preset's decoder for this many updates to redraw each input's "
                             "reconstruction target from the state (0: off)")
    parser.add_argument("--noise", action="store_true",
                        help="the learning benchmark's camera noise (scripts.bench_events --noise) on")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides for every input (the camera's thresholds, say)")
    parser.add_argument("--out", default="benchmarks/out/observations.json")
    args = parser.parse_args(argv)
    if not 0.0 <= args.epsilon <= 1.0:
        parser.error(f"--epsilon must be in [0, 1], got {args.epsilon}")
    return args


def feedback_action(gains: np.ndarray, state: np.ndarray, action_space) -> Any:
    """The linear state feedback's action: ``gains . state > 0`` of two discrete actions, or
    ``gains . state`` clipped to a one-dimensional box."""
    if gains.size != state.size:
        raise UserError(f"--gains has {gains.size} values; the env's own observation has {state.size}")
    value = float(gains @ state)
    if hasattr(action_space, "n"):
        if action_space.n != 2:
            raise UserError(f"--gains needs two discrete actions or a one-dimensional box; the env has {action_space}")
        return int(value > 0)
    if action_space.shape != (1,):
        raise UserError(f"--gains needs two discrete actions or a one-dimensional box; the env has {action_space}")
    return np.clip(np.array([value], action_space.dtype), action_space.low, action_space.high)


def image_observation(observation: Any, source: str, image_size: int) -> np.ndarray:
    """One observation as an image ``[H, W, C]`` (uint8 pixels, float event images), an event stream
    as its per-polarity count frame."""
    if source != "events":
        return np.asarray(observation)
    from envs.event_camera import Events, events_to_frame

    rows = observation["events"][: int(observation["count"])]
    events = Events(rows[:, 0].astype(np.int32), rows[:, 1].astype(np.int32), rows[:, 2].astype(np.float64), rows[:, 3])
    return events_to_frame(events, (image_size, image_size))


def one_env_info(info: dict) -> dict:
    """A single env's ``info`` as a one-env vector's (a leading axis on every leaf), which
    ``agents.state_probe.source_entries`` reads."""
    import jax

    return jax.tree.map(lambda leaf: np.asarray(leaf)[None], info)


def record(config: dict, source: str, steps: int, seed: int, gains: np.ndarray | None, epsilon: float,
           image_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Whole episodes, at least ``steps`` steps in all: per episode the observations as images
    ``[T, H, W, C]`` and the env's own observations ``[T, D]``."""
    from agents.state_probe import source_entries
    from envs import make_env

    env = make_env(config["env_id"], config["env"], seed=seed)
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    observation, info = env.reset(seed=seed)
    episodes, seen, states, recorded = [], [], [], 0
    while recorded < steps:
        state, _ = source_entries(one_env_info(info))
        seen.append(image_observation(observation, source, image_size))
        states.append(state)
        random = gains is None or rng.random() < epsilon
        action = env.action_space.sample() if random else feedback_action(gains, state, env.action_space)
        observation, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            episodes.append((np.stack(seen), np.stack(states)))
            recorded += len(seen)
            seen, states = [], []
            observation, info = env.reset()
    env.close()
    return episodes


def ridge_path(features: np.ndarray, targets: np.ndarray, penalties: Sequence[float]):
    """Ridge regressions on standardised features for every penalty at once (one SVD: pixels are
    thousands of features): a function from rows to predictions ``[len(penalties), N, D]``."""
    mean, scale = features.mean(0), np.maximum(features.std(0), 1e-6)
    u, singular, vt = np.linalg.svd((features - mean) / scale, full_matrices=False)
    target_mean = targets.mean(0)
    projected = u.T @ (targets - target_mean)  # [K, D]
    shrink = singular[None, :] / (singular[None, :] ** 2 + np.asarray(penalties)[:, None])  # [P, K]
    weights = np.einsum("kf,pk,kd->pfd", vt, shrink, projected)  # [P, F, D]
    return lambda rows: np.einsum("nf,pfd->pnd", (rows - mean) / scale, weights) + target_mean


def per_entry_probe(fit: Sequence[tuple[np.ndarray, np.ndarray]], test: Sequence[tuple[np.ndarray, np.ndarray]]):
    """Per state entry, the test R^2 of the ridge regression whose penalty (of
    ``agents.state_probe.PENALTIES``) did best for that entry when fitted on the first half of the
    fit episodes and tested on the second: each entry its own penalty, as a pixel image shows a
    position in many pixels and an angle in a few."""
    from agents.state_probe import PENALTIES, entry_r2

    stack = lambda episodes, part: np.concatenate([episode[part] for episode in episodes])
    half = max(1, len(fit) // 2)
    inner = ridge_path(stack(fit[:half], 0), stack(fit[:half], 1), PENALTIES)(stack(fit[half:], 0))
    scores = np.array([[-np.inf if value is None else value for value in entry_r2(p, stack(fit[half:], 1))]
                       for p in inner])  # [P, D]
    chosen = scores.argmax(0)
    outer = ridge_path(stack(fit, 0), stack(fit, 1), PENALTIES)(stack(test, 0))
    predictions = np.stack([outer[chosen[entry], :, entry] for entry in range(len(chosen))], -1)
    return entry_r2(predictions, stack(test, 1)), [PENALTIES[index] for index in chosen]


def input_config(source: str, args: argparse.Namespace) -> dict:
    """The config of one input as the learning benchmark runs it (``--noise`` and ``--set`` applied)."""
    from configs.loader import load_config
    from scripts.bench_events import MAX_EVENTS, PRESET, run_overrides

    overrides = run_overrides(args.env, source, args.image_size, args.action_repeat, MAX_EVENTS, args.noise)
    return load_config([PRESET], overrides + list(args.overrides))


def probe_input(source: str, args: argparse.Namespace) -> dict[str, Any]:
    """The ridge probe of one input's raw observations: R^2 per state entry, with the test states' spread."""
    config = input_config(source, args)
    gains = None if args.gains is None else np.asarray(args.gains, np.float64)
    fit = record(config, source, args.train_steps, 0, gains, args.epsilon, args.image_size)
    test = record(config, source, args.test_steps, 1, gains, args.epsilon, args.image_size)
    flat = lambda episodes: [(images.reshape(len(images), -1).astype(np.float32), states) for images, states in episodes]
    r2, penalties = per_entry_probe(flat(fit), flat(test))
    states = np.concatenate([e[1] for e in test])
    result = {"r2": r2, "penalties": penalties, "state_std": states.std(0).tolist(),
              "episode_length": float(np.mean([len(e[1]) for e in test])), "pixels": int(np.prod(fit[0][0].shape[1:]))}
    if args.cnn_updates:
        result["cnn_r2"] = cnn_probe(config, fit, test, args.cnn_updates)
        result["cnn_depth"] = config["world_model"]["cnn_depth"]
    if args.decoder_updates:
        result["decoder_r2"] = decoder_probe(config, fit, test, args.decoder_updates)
        result["cnn_depth"] = config["world_model"]["cnn_depth"]
    return result


def decoder_probe(config: dict, fit, test, updates: int, batch: int = 32, lr: float = 3e-4) -> float:
    """The test R^2 (``1 - SSE / SST`` over every entry, each about its test mean, as the world model's
    ``r2/<key>``) of the preset's CNN decoder behind an MLP of the world model's width, trained from
    scratch to redraw one observation's reconstruction target (``nets.image_input``) from the
    standardised state of the same step."""
    import flax.linen as nn
    import jax.numpy as jnp

    from world_models.nets import MLP, ConvDecoder, cnn_stages, image_input

    images, states = (np.concatenate([e[part] for e in fit]) for part in (0, 1))
    mean, scale = states.mean(0), np.maximum(states.std(0), 1e-6)
    inputs = jnp.asarray((states - mean) / scale, jnp.float32)
    targets = image_input(jnp.asarray(images))
    model_config = config["world_model"]
    depth, stages = model_config["cnn_depth"], cnn_stages(images.shape[1:3])

    class Redraw(nn.Module):
        @nn.compact
        def __call__(self, state):
            features = MLP(model_config["units"], model_config["layers"])(state)
            return ConvDecoder(depth, stages, tuple(images.shape[1:]))(features)

    test_images, test_states = (np.concatenate([e[part] for e in test]) for part in (0, 1))
    test_targets = np.asarray(image_input(jnp.asarray(test_images)), np.float64)
    test_inputs = jnp.asarray((test_states - mean) / scale, jnp.float32)
    predicted = fit_and_predict(Redraw(), inputs, targets, test_inputs, updates, batch, lr)
    error = np.sum((predicted - test_targets) ** 2)
    spread = np.sum((test_targets - test_targets.mean(0)) ** 2)
    return float(1.0 - error / max(spread, 1e-8))


def cnn_probe(config: dict, fit, test, updates: int, batch: int = 32, lr: float = 3e-4) -> list[float | None]:
    """Per state entry, the test R^2 of the world model's CNN encoder (the preset's ``cnn_depth``, its
    input through ``nets.image_input``) and a linear head trained from scratch to regress the
    standardised state from one observation: what a network, not a linear map, reads."""
    import flax.linen as nn
    import jax.numpy as jnp

    from agents.state_probe import entry_r2
    from world_models.nets import ConvEncoder, cnn_stages, image_input

    images, states = (np.concatenate([e[part] for e in fit]) for part in (0, 1))
    mean, scale = states.mean(0), np.maximum(states.std(0), 1e-6)
    targets = jnp.asarray((states - mean) / scale, jnp.float32)
    images = jnp.asarray(images)
    depth, stages = config["world_model"]["cnn_depth"], cnn_stages(images.shape[1:3])

    class Regressor(nn.Module):
        @nn.compact
        def __call__(self, image):
            return nn.Dense(states.shape[1])(ConvEncoder(depth, stages)(image_input(image)))

    test_images, test_states = (np.concatenate([e[part] for e in test]) for part in (0, 1))
    predicted = fit_and_predict(Regressor(), images, targets, test_images, updates, batch, lr)
    return entry_r2(predicted * scale + mean, test_states)


def fit_and_predict(model, inputs, targets, test_inputs, updates: int, batch: int, lr: float) -> np.ndarray:
    """``model`` (a Flax module) trained from scratch with Adam for ``updates`` minibatches of
    ``batch`` rows to regress ``targets`` from ``inputs`` (squared error summed over each row's
    entries), then its predictions on ``test_inputs``, 500 rows at a time."""
    import jax
    import jax.numpy as jnp
    import optax

    optimizer = optax.adam(lr)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), inputs[:2])
    row_sum = tuple(range(1, targets.ndim))

    @jax.jit
    def update(params, opt_state, key):
        rows = jax.random.randint(key, (batch,), 0, inputs.shape[0])
        loss_fn = lambda p: jnp.mean(jnp.sum((model.apply(p, inputs[rows]) - targets[rows]) ** 2, row_sum))
        grads = jax.grad(loss_fn)(params)
        changes, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, changes), opt_state

    opt_state = optimizer.init(params)
    for index in range(updates):
        params, opt_state = update(params, opt_state, jax.random.PRNGKey(index))
    apply = jax.jit(model.apply)
    return np.concatenate([np.asarray(apply(params, test_inputs[i:i + 500])) for i in range(0, len(test_inputs), 500)])


@report_user_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from scripts.bench_events import NOISE

    args = parse_args(argv)
    results = {source: probe_input(source, args) for source in args.inputs}
    entries = len(next(iter(results.values()))["r2"])
    policy = "random" if args.gains is None else f"linear feedback {args.gains}, epsilon {args.epsilon}"
    first = next(iter(results.values()))
    camera = f", noisy camera {NOISE}" if args.noise else ""
    print(f"\n{args.env}, {args.image_size}x{args.image_size}{camera}, policy {policy} (test episodes of "
          f"{first['episode_length']:.0f} steps; state std {', '.join(f'{v:.3f}' for v in first['state_std'])}); "
          f"R² of each state entry from one raw observation, ridge regression")
    print("| input | " + " | ".join(f"[{index}]" for index in range(entries)) + " |")
    print("| --- |" + " ---: |" * entries)
    show = lambda value: "-" if value is None else f"{value:.2f}"
    for source, result in results.items():
        print(f"| {source} | " + " | ".join(show(value) for value in result["r2"]) + " |")
        if "cnn_r2" in result:
            print(f"| {source}, CNN | " + " | ".join(show(value) for value in result["cnn_r2"]) + " |")
    for source, result in results.items():
        if "decoder_r2" in result:
            print(f"{source}: the decoder redraws its reconstruction target from the state at R² "
                  f"{result['decoder_r2']:.3f} (test steps)")
    report = {"env": args.env, "image_size": args.image_size, "action_repeat": args.action_repeat, "policy": policy,
              "noise": NOISE if args.noise else None, "overrides": args.overrides,
              "train_steps": args.train_steps, "test_steps": args.test_steps, "cnn_updates": args.cnn_updates,
              "decoder_updates": args.decoder_updates, "results": results}
    out = Path(args.out)
    write_json(report, out)
    return report


if __name__ == "__main__":
    main()
