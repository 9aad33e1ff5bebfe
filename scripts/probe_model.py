"""How far ahead does a trained run's imagination track each input? Level 0's model on its own replay.

    python -m scripts.probe_model --logdir runs/X [--horizon 15] [--steps 20000] [--step N] [--out F]

Loads the run's checkpoint (the latest, or ``--step``) and the last ``--steps`` records of the replay
saved with it, filters them with level 0's world model in chunks of the replay's ``batch_length``,
and from every ``--stride``-th posterior state imagines ``1 .. --horizon`` steps ahead with the
actions really taken (``WorldModel.open_loop_predictions``, counted while the episode goes on).
Prints, per entry of every vector observation key, the R^2 of what the model decodes from the
posterior (what the latent state carries) and from its open-loop predictions at a few distances
(what imagination carries that far; the actor-critic looks ``agent.horizon`` steps ahead), and
writes them as JSON (default: ``probe_model.json`` in the run directory). R^2 is per entry, so a
narrow input (a pole's angle) cannot hide behind a wide one (a cart's position), in the decoder's
space (symlog for vectors); an entry that does not vary has none (``-``, null).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

from agents.state_probe import entry_r2
from scripts.common import UserError, report_user_errors, trained_vector_run
from world_models.rssm import state_features


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", required=True, help="the run directory")
    parser.add_argument("--horizon", type=int, default=0, help="steps to imagine (0: the run's agent.horizon)")
    parser.add_argument("--steps", type=int, default=20000, help="latest replay records per environment to probe")
    parser.add_argument("--stride", type=int, default=4, help="imagine from every stride-th posterior state")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument("--out", help="JSON path (default: <logdir>/probe_model.json)")
    return parser.parse_args(argv)


def chunks(steps: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    """``[T, E, ...]`` records -> ``[length, E * (T // length), ...]``, each column from its initial
    state (``is_first`` at its first step, as the replay sampler marks it)."""
    count = steps["is_first"].shape[0] // length
    if count == 0:
        raise UserError(f"the replay holds {steps['is_first'].shape[0]} records per environment, fewer than one "
                        f"chunk of {length}: train the run longer or probe a later checkpoint")
    cut = lambda leaf: np.concatenate([leaf[i * length:(i + 1) * length] for i in range(count)], 1)
    batch = {name: cut(leaf) for name, leaf in steps.items()}
    batch["is_first"][0] = True
    return batch


def probe(world_model, params, batch: dict[str, np.ndarray], horizon: int, stride: int, key: jax.Array
          ) -> dict[str, dict]:
    """Per vector key: per-entry R^2 of the posterior's decoding and of open-loop predictions
    ``{"posterior": [D], "open_loop": {h: [D]}}`` over every ``stride``-th start of the chunks."""
    inputs = {name: batch[name] for name in (*world_model.obs_keys, "prev_action", "is_first")}
    _, states, _, _ = jax.jit(world_model.observe)(params, inputs, key)
    decoded = jax.jit(world_model.decode)(params, jax.jit(state_features)(states))
    targets = world_model.reconstruction_targets(inputs)
    predict = jax.jit(world_model.open_loop_predictions, static_argnums=3)
    length = inputs["is_first"].shape[0]
    rows = {name: {h: ([], []) for h in range(1, horizon + 1)} for name in world_model.mlp_shapes}
    for start in range(0, length - horizon, stride):  # windows of one shape: one compilation
        shifted = lambda tree: jax.tree.map(lambda leaf: leaf[start : start + horizon + 1], tree)
        predicted, truth, valid = predict(params, shifted(inputs), shifted(states), horizon,
                                          jax.random.fold_in(key, start))
        truth, valid = world_model.reconstruction_targets(truth), np.asarray(valid, bool)
        for name, by_distance in rows.items():
            for h, (seen, expected) in by_distance.items():
                seen.append(np.asarray(predicted[name][h - 1])[valid[h - 1]])
                expected.append(np.asarray(truth[name][h - 1])[valid[h - 1]])
    result = {}
    for name in world_model.mlp_shapes:
        size = targets[name].shape[-1]
        flat = lambda leaf: np.asarray(leaf).reshape(-1, size)
        open_loop = {h: entry_r2(np.concatenate(seen), np.concatenate(expected))
                     for h, (seen, expected) in rows[name].items()}
        result[name] = {"posterior": entry_r2(flat(decoded[name]), flat(targets[name])), "open_loop": open_loop}
    return result


def distances(horizon: int) -> list[int]:
    """The open-loop distances the table shows: 1, about a third, two thirds, and the horizon."""
    return sorted({1, max(1, round(horizon / 3)), max(1, round(2 * horizon / 3)), horizon})


def print_table(logdir: Path, step: int, horizon: int, result: dict[str, dict]) -> None:
    shown = distances(horizon)
    print(f"\n{logdir} at step {step:,}: level 0's R² per entry, decoded from the posterior and imagined "
          f"open-loop h steps ahead with the real actions")
    print("| key | entry | posterior | " + " | ".join(f"h = {h}" for h in shown) + " |")
    print("| --- | ---: | ---: | " + " | ".join("---:" for _ in shown) + " |")
    show = lambda value: "-" if value is None else f"{value:.3f}"
    for name, values in result.items():
        for entry, posterior in enumerate(values["posterior"]):
            row = " | ".join(show(values["open_loop"][h][entry]) for h in shown)
            print(f"| {name} | {entry} | {show(posterior)} | {row} |")


@report_user_errors
def main(argv=None) -> dict:
    args = parse_args(argv)
    from agents.run_data import load_replay

    logdir = Path(args.logdir)
    with trained_vector_run(logdir, args.step, "this probe") as (config, agent, state, step, _):
        steps = load_replay(agent, config, logdir, args.steps, step)
    horizon = args.horizon or int(config["agent"]["horizon"])
    if steps is None:
        raise UserError(f"{logdir}: no replay was saved with checkpoint {step} (disk replay missing or empty)")
    length = max(int(config["replay"]["batch_length"]), horizon + 1)
    world_model = agent.levels[0].world_model
    result = probe(world_model, state.levels[0].world_model.params, chunks(steps, length), horizon, args.stride,
                   jax.random.PRNGKey(0))
    print_table(logdir, step, horizon, result)
    output = {"logdir": str(logdir), "step": step, "horizon": horizon, "keys": result}
    out = Path(args.out or logdir / "probe_model.json")
    out.write_text(json.dumps(output, indent=2))
    print(f"wrote {out}")
    return output


if __name__ == "__main__":
    main()
