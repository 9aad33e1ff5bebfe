"""Did the world model recover the state a camera shows? A linear probe of its latent state.

    python -m scripts.probe_state --logdir runs/X [--steps 2000] [--sample] [--seed S] [--step N] [--open-loop H]
                                  [--predictions] [--out F]

For a run that observes pixels or events (``event:`` ids, ``env.pixels``), the environment keeps its
own observation, which the agent never sees, in ``info["source_observation"]``
(``envs.wrappers.KeepSourceObservation``): CartPole's cart position and velocity, pole angle and
angular velocity, say. This runs the policy of the run's checkpoint (the latest, or ``--step``;
greedy, or sampled with ``--sample``) for whole episodes until they hold ``--steps`` steps (and at
least 4 episodes), filters what it saw with level 0's
world model (``WorldModel.observe``: the posterior features the actor and critic read) and fits a
ridge regression (``agents.state_probe``) from those features to each entry of the source observation on the even-numbered
episodes, its penalty chosen on a split of them; it reports the R^2 of every entry on the
odd-numbered episodes, which the fit never saw.

The same regression on the features of a freshly initialised world model, filtering the same
observations, is the reference: random features of an image already carry some of what it shows,
so the trained model's R^2 means something only above the untrained one's. A trained model near
R^2 1 on every entry has recovered the state; one near the untrained model has not, whatever its
decoder's R^2 on the images. Two columns split the trained latent into its deterministic and its
stochastic part (which of them carries an entry). Another regresses the trained encoder's embedding
of each step alone: where it holds an entry the latent lacks, the dynamics lose it; where neither
holds it, the encoder never extracts it (or one observation does not show it: a velocity in one
frame). Prints a
table and writes ``probe_state.json`` (or ``--out``). With ``--predictions`` the JSON also keeps, for
every test step, the source observation and the trained latent's prediction of it
(``test_predictions``): the R^2 averages the error over all states, and an error that matters in one
region (a pendulum's drift near the top, where few events fire) shows only per step.

With ``--open-loop H`` the same regression (fitted on posterior features) reads the states the model
imagines from each test step's posterior ``1 .. H`` steps ahead with the actions really taken
(``agents.state_probe.open_loop_features``): the actor and critic learn in imagination, so what they
can act on is what imagination still holds. A second table gives each entry's R^2 at a few distances, read by the
posterior's regression (does imagination stay where the filter would be?) and by one fitted per
distance on the fit episodes' imagined states (does it hold the state at all?); with
``--predictions`` the JSON keeps those distances' predictions too (``open_loop_predictions``, each
row's ``steps`` indexing ``test_predictions``' targets).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.state_probe import (NoSourceObservation, fitted_probe, latent_features, open_loop_features,
                                open_loop_probe, record_episodes, split_probe)
from scripts.common import UserError, report_user_errors, trained_run
from scripts.probe_model import distances


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
    parser.add_argument("--open-loop", type=int, default=0, metavar="H",
                        help="also read the probe on states imagined 1..H steps ahead with the real actions "
                             "(0: not; the actor-critic imagines agent.horizon steps)")
    parser.add_argument("--predictions", action="store_true",
                        help="keep every test step's source observation and the trained latent's prediction of it")
    parser.add_argument("--out", help="JSON path (default: <logdir>/probe_state.json)")
    return parser.parse_args(argv)


# report key: (whose parameters, which features)
PROBES = {"trained": ("trained", "latent"), "trained_deter": ("trained", "deter"), "trained_stoch": ("trained", "stoch"),
          "trained_embedding": ("trained", "embedding"), "untrained": ("untrained", "latent")}
HEADERS = {"trained": "trained model", "trained_deter": "its deter", "trained_stoch": "its stoch",
           "trained_embedding": "trained encoder, the step alone", "untrained": "untrained model"}


def probe_features(agent, trained_params, fresh_params, episodes: list[dict[str, Any]], batch: int,
                   seed: int) -> dict[str, list[np.ndarray]]:
    """Per ``PROBES`` entry, the features of every episode's steps: the trained and the untrained world
    model's latent features, and the trained encoder's embedding of each step alone
    (``trained_embedding``)."""
    import jax

    world_model = agent.levels[0].world_model
    params = {"trained": trained_params, "untrained": fresh_params}
    return {name: latent_features(world_model, params[model], episodes, batch, jax.random.PRNGKey(seed), kind)
            for name, (model, kind) in PROBES.items()}


def open_loop(agent, params, episodes: list[dict[str, Any]], posterior_features: list[np.ndarray], batch: int,
              seed: int, horizon: int) -> dict:
    """Linear probes of the odd-numbered episodes' states imagined ``1 .. horizon`` steps ahead:
    ``posterior_readout`` reads them with the trained probe (fitted on the even-numbered episodes'
    ``posterior_features``, as ``probe_features``' ``trained``), ``own_readout`` with one regression per
    distance fitted on the even-numbered episodes' imagined features."""
    import jax

    sources = [episode["sources"] for episode in episodes]
    _, predict = fitted_probe(posterior_features[0::2], sources[0::2])
    imagined = open_loop_features(agent.levels[0].world_model, params, episodes, batch, jax.random.PRNGKey(seed),
                                  horizon)
    return {"posterior_readout": open_loop_probe(imagined[1::2], sources[1::2], predict=predict),
            "own_readout": open_loop_probe(imagined[1::2], sources[1::2], fit_imagined=imagined[0::2],
                                           fit_targets=sources[0::2])}


def print_open_loop(horizon: int, names: list[str], report: dict) -> None:
    readouts = report["open_loop"]
    shown = [h for h in distances(horizon) if h in readouts["posterior_readout"]]
    show = lambda value: "-" if value is None else f"{value:.3f}"
    print(f"\nR² of the state level 0 imagines h steps ahead of each test step with the actions really taken, read "
          f"by the posterior's regression / by one fitted on imagined states at that distance:")
    print("| entry | posterior | " + " | ".join(f"h = {h}" for h in shown) + " |")
    print("| --- | ---: |" + " ---: |" * len(shown))
    for index, name in enumerate(names):
        cells = [f"{show(readouts['posterior_readout'][h][index])} / {show(readouts['own_readout'][h][index])}"
                 for h in shown]
        print(f"| {name} | {show(report['trained']['r2'][index])} | " + " | ".join(cells) + " |")


def print_table(logdir: Path, step: int, names: list[str], report: dict) -> None:
    show = lambda value: "-" if value is None else f"{value:.3f}"
    print(f"\n{logdir} at step {step:,}: R² of the env's own observation from level 0's latent state (ridge "
          f"regression from {report['features']} features, fitted on {report['fit_steps']:,} steps of "
          f"{report['fit_episodes']} episodes, tested on {report['test_steps']:,} steps of {report['test_episodes']}); "
          f"mean return {np.mean(report['returns']):.1f}")
    print("| entry | " + " | ".join(HEADERS.values()) + " |")
    print("| --- |" + " ---: |" * len(HEADERS))
    for index, name in enumerate(names):
        print(f"| {name} | " + " | ".join(show(report[column]["r2"][index]) for column in HEADERS) + " |")


@report_user_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import jax

    logdir = Path(args.logdir)
    with trained_run(logdir, args.step) as (config, agent, state, step, envs):
        try:
            episodes = record_episodes(agent, state, envs, args.steps, args.seed, not args.sample)
        except NoSourceObservation as error:
            raise UserError(f"{logdir}: {error}") from None
        fresh = agent.init(jax.random.PRNGKey(args.seed)).levels[0].world_model.params
        trained = state.levels[0].world_model.params
        features = probe_features(agent, trained, fresh, episodes, args.batch, args.seed)
        imagined = (open_loop(agent, trained, episodes, features["trained"], args.batch, args.seed, args.open_loop)
                    if args.open_loop > 0 else None)
    result = {name: split_probe(probed, episodes) for name, probed in features.items()}
    names = episodes[0]["names"]
    lengths = [len(episode["sources"]) for episode in episodes]
    report = {"logdir": str(logdir), "step": step, "greedy": not args.sample, "seed": args.seed, "entries": names,
              "returns": [round(episode["return"], 1) for episode in episodes],
              "features": int(agent.levels[0].world_model.feature_dim),
              "fit_episodes": len(lengths[0::2]), "fit_steps": sum(lengths[0::2]),
              "test_episodes": len(lengths[1::2]), "test_steps": sum(lengths[1::2]),
              **{name: {key: value for key, value in probed.items() if key != "predictions"}
                 for name, probed in result.items()}}
    rounded = lambda rows: np.round(np.asarray(rows, np.float64), 5).tolist()
    if imagined is not None:
        report["open_loop"] = {"horizon": args.open_loop,
                               **{readout: probed["r2"] for readout, probed in imagined.items()}}
    if args.predictions:
        report["test_predictions"] = {
            "targets": rounded(np.concatenate([episode["sources"] for episode in episodes[1::2]])),
            "predictions": rounded(result["trained"]["predictions"])}
        if imagined is not None:
            report["open_loop_predictions"] = {
                readout: {h: {"steps": probed["steps"][h].tolist(), "predictions": rounded(probed["predictions"][h])}
                          for h in distances(args.open_loop) if h in probed["r2"]}
                for readout, probed in imagined.items()}
    print_table(logdir, step, names, report)
    if imagined is not None:
        print_open_loop(args.open_loop, names, report)
    out = Path(args.out) if args.out else logdir / "probe_state.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
