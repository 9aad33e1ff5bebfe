"""Which event encoder reads the state from a step's events? Encoders compared offline, in minutes.

    python -m scripts.probe_event_encoders                                   # CartPole-v1, as bench_events sees it
    python -m scripts.probe_event_encoders --env Pendulum-v1 --encoders embedding frame --updates 3000
    python -m scripts.probe_event_encoders --set world_model.event_encoder.backbone=gru

A learning run from events takes hours of a small CPU; this takes minutes. It records agent steps
of ``event:<env>`` under a uniformly random policy through the event camera, as ``scripts.bench_events``
configures it (``events`` representation, ``--image-size``, ``--action-repeat``, ``--max-events``,
``--noise``), with the env's own observation beside each step (``info["source_observation"]``), and
trains every encoder from scratch on one step's events alone, twice:

- ``state``: the encoder and a linear head regress the env's own observation (standardised): what
  the encoder *can* read from one step's events;
- ``reconstruction``: the encoder and the world model's CNN decoder reconstruct the step's count frame
  in symlog space, the world model's own target for an event stream; then a ridge regression
  (``agents.state_probe``) from the encoder's embedding to each state entry: what reconstructing makes
  it keep, as a world model's encoder must.

Encoders (``--encoders``): ``coordinates`` and ``embedding``: the control preset's
``world_model.event_encoder`` with that ``position`` (``--set`` changes the rest); ``frame``: the world
model's CNN encoder on the symlog count frame, the ``frame`` representation's path, as a reference.
Every R^2 is on steps recorded with another seed. One step shows where things are; velocities only as
far as the step's motion does. A random policy's states are not a trained agent's: compare encoders
with it, and confirm a winner with a learning run (``scripts.bench_events``). Prints a table and writes
JSON (default ``benchmarks/out/event_encoders.json``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scripts.common import UserError, report_user_errors, write_json

ENCODERS = ("coordinates", "embedding", "frame")
OBJECTIVES = ("state", "reconstruction")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1", help="a Gymnasium id whose own observation is a vector")
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=ENCODERS)
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--action-repeat", type=int, default=2)
    parser.add_argument("--max-events", type=int, default=256,
                        help="rows of a step's stream: the table reports the events dropped beyond them (48x48 CartPole: "
                             "p99 126 a step); more rows cost time even when empty")
    parser.add_argument("--noise", action="store_true", help="the camera's shot noise and threshold mismatch on")
    parser.add_argument("--train-steps", type=int, default=4000, help="recorded agent steps to train on (seed 0)")
    parser.add_argument("--test-steps", type=int, default=1000, help="recorded agent steps to test on (seed 1)")
    parser.add_argument("--updates", type=int, default=1500, help="gradient steps per encoder and objective")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides of the control preset (world_model.event_encoder.*, cnn_depth, ...)")
    parser.add_argument("--out", default="benchmarks/out/event_encoders.json")
    return parser.parse_args(argv)


def probe_config(args: argparse.Namespace) -> dict[str, Any]:
    """The control preset with ``bench_events``' camera for ``args.env`` and the ``--set`` overrides."""
    from configs.loader import load_config
    from scripts.bench_events import PRESET, run_overrides

    env = args.env.removeprefix("event:")
    overrides = run_overrides(env, "events", args.image_size, args.action_repeat, args.max_events, args.noise)
    return load_config([PRESET], overrides + list(args.overrides))


def record(config: dict[str, Any], steps: int, seed: int) -> dict[str, np.ndarray]:
    """``steps`` agent steps under a uniformly random policy: ``events [S, N, 4]``, ``count [S]``,
    ``source [S, D]`` (the env's own observation), the entry names and the events dropped."""
    from agents.state_probe import flat_entries
    from envs import make_env
    from envs.wrappers import KeepSourceObservation

    env = make_env(config["env_id"], config["env"], seed=seed)
    try:
        env.action_space.seed(seed)
        _, info = env.reset(seed=seed)
        if KeepSourceObservation.KEY not in info or np.size(info[KeepSourceObservation.KEY]) > 64:
            raise UserError(f"{config['env_id']}: its own observation is not a vector state this probe can regress")
        events, counts, sources, dropped, total = [], [], [], 0, 0
        while len(events) < steps:
            obs, _, terminated, truncated, info = env.step(env.action_space.sample())
            events.append(obs["events"])
            counts.append(obs["count"])
            sources.append(flat_entries(info[KeepSourceObservation.KEY])[0])
            dropped, total = dropped + info["events_dropped"], total + info["event_count"]
            if terminated or truncated:
                env.reset()
        names = flat_entries(info[KeepSourceObservation.KEY])[1]
    finally:
        env.close()
    return {"events": np.stack(events), "count": np.asarray(counts, np.int32), "source": np.stack(sources),
            "names": names, "dropped": dropped / max(total, 1)}


def make_model(config: dict[str, Any], stream, encoder: str, objective: str, outputs: int):
    """Flax module ``(events [B, N, 4], count [B]) -> (prediction, embedding [B, E])``: the prediction is
    the standardised state (``state``) or the symlog count frame ``[B, H, W, 2]`` (``reconstruction``)."""
    import flax.linen as nn

    from world_models.distributions import symlog
    from world_models.event_encoder import EventEncoder, count_frame
    from world_models.nets import ConvDecoder, ConvEncoder, cnn_stages

    world_model = config["world_model"]
    stages = cnn_stages((stream.height, stream.width))

    class Probe(nn.Module):
        @nn.compact
        def __call__(self, events, count):
            if encoder == "frame":
                embedding = ConvEncoder(world_model["cnn_depth"], stages)(symlog(count_frame(events, count, stream)))
            else:
                settings = {**world_model["event_encoder"], "position": encoder}
                embedding = EventEncoder(stream, **settings)(events, count)
            if objective == "state":
                return nn.Dense(outputs)(embedding), embedding
            return ConvDecoder(world_model["cnn_depth"], stages, (stream.height, stream.width, 2))(embedding), embedding

    return Probe()


def train_and_probe(config, stream, encoder: str, objective: str, train: dict, test: dict,
                    args: argparse.Namespace) -> dict[str, Any]:
    """Train one encoder on one objective; its R^2 per state entry on the test steps (and the count
    frame's R^2 for ``reconstruction``), the final training loss and the events/s trained."""
    import jax
    import jax.numpy as jnp
    import optax

    from agents.state_probe import entry_r2, ridge_probe
    from world_models.distributions import symlog
    from world_models.event_encoder import count_frame

    mean, scale = train["source"].mean(0), np.maximum(train["source"].std(0), 1e-6)
    model = make_model(config, stream, encoder, objective, train["source"].shape[1])
    events, counts = jnp.asarray(train["events"]), jnp.asarray(train["count"])
    states = jnp.asarray((train["source"] - mean) / scale, jnp.float32)
    frame = lambda e, c: symlog(count_frame(e, c, stream))
    params = jax.jit(model.init)(jax.random.PRNGKey(0), events[:2], counts[:2])
    optimizer = optax.adam(args.lr)

    @jax.jit
    def update(params, opt_state, key):
        rows = jax.random.randint(key, (args.batch,), 0, events.shape[0])
        target = states[rows] if objective == "state" else frame(events[rows], counts[rows])

        def loss_fn(p):
            error = (model.apply(p, events[rows], counts[rows])[0] - target) ** 2
            return jnp.mean(jnp.sum(error.reshape(args.batch, -1), -1))
        loss, grads = jax.value_and_grad(loss_fn)(params)
        changes, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, changes), opt_state, loss

    params, opt_state, loss = update(params, optimizer.init(params), jax.random.PRNGKey(0))  # compiled untimed
    start = time.perf_counter()
    for index in range(1, args.updates):
        params, opt_state, loss = update(params, opt_state, jax.random.PRNGKey(index))
    loss = float(loss)  # waits for the last update
    seconds = time.perf_counter() - start
    apply = jax.jit(lambda p, e, c: model.apply(p, e, c))

    def outputs(data):
        parts = [apply(params, data["events"][i:i + 500], data["count"][i:i + 500]) for i in range(0, len(data["count"]), 500)]
        return tuple(np.concatenate([np.asarray(part[k]) for part in parts]) for k in range(2))

    result = {"loss": loss, "events_per_second": float(train["count"].mean()) * args.batch * (args.updates - 1) / max(seconds, 1e-9)}
    if objective == "state":
        predicted = outputs(test)[0] * scale + mean
        result["r2"] = entry_r2(predicted, test["source"])
    else:
        (train_frames, train_embedding), (test_frames, test_embedding) = outputs(train), outputs(test)
        half = len(train_embedding) // 2
        probe = ridge_probe([train_embedding[:half], train_embedding[half:]],
                            [train["source"][:half], train["source"][half:]], [test_embedding], [test["source"]])
        result["r2"] = probe["r2"]
        target = np.asarray(frame(jnp.asarray(test["events"]), jnp.asarray(test["count"])))
        spread = np.sum((target - target.mean(0)) ** 2)
        result["frame_r2"] = float(1.0 - np.sum((test_frames - target) ** 2) / max(spread, 1e-8))
    return result


def print_table(env: str, names: list[str], results: dict[str, dict[str, dict]], train: dict) -> None:
    print(f"\n{env}: R² of the env's own observation from one step's events ({len(train['count']):,} random-policy "
          f"steps to train, mean {train['count'].mean():.0f} events a step, {100 * train['dropped']:.1f}% dropped)")
    print("| encoder | trained on | " + " | ".join(names) + " | count frame R² | final loss | events/s trained |")
    print("| --- | --- |" + " ---: |" * (len(names) + 3))
    for encoder, objectives in results.items():
        for objective, result in objectives.items():
            entries = " | ".join("-" if value is None else f"{value:.2f}" for value in result["r2"])
            frame = f"{result['frame_r2']:.2f}" if "frame_r2" in result else "n/a"
            print(f"| {encoder} | {objective} | {entries} | {frame} | {result['loss']:.3g} | "
                  f"{result['events_per_second']:,.0f} |")


@report_user_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from agents.spaces import observation_layout
    from envs import make_env

    config = probe_config(args)
    probe_env = make_env(config["env_id"], config["env"])
    stream = observation_layout(probe_env.observation_space).event_streams["events"]
    probe_env.close()
    train, test = record(config, args.train_steps, 0), record(config, args.test_steps, 1)
    results = {encoder: {objective: train_and_probe(config, stream, encoder, objective, train, test, args)
                         for objective in args.objectives} for encoder in args.encoders}
    print_table(config["env_id"], train["names"], results, train)
    report = {"env": config["env_id"], "entries": train["names"], "events_per_step": float(train["count"].mean()),
              "dropped": train["dropped"], **{key: getattr(args, key) for key in
              ("image_size", "action_repeat", "max_events", "noise", "train_steps", "test_steps", "updates", "batch",
               "lr", "overrides")}, "results": results}
    out = Path(args.out)
    write_json(report, out)
    return report


if __name__ == "__main__":
    main()
