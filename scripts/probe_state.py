"""Did the world model recover the state a camera shows? A linear probe of its latent state.

    python -m scripts.probe_state --logdir runs/X [--steps 2000] [--sample] [--seed S] [--step N] [--open-loop H]
                                  [--action-response H [--response-where ENTRY LOW HIGH]] [--predictions]
                                  [--act-with RUN [--act-step N]] [--out F]

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

With ``--action-response H`` it measures how much the state the model imagines ``1 .. H`` steps ahead
of each test step moves with the first action (``agents.action_response``): imagined once per
candidate first action with the same noise and the actions really taken after it, read by the same
regression, against the environment's own effect, the least-squares coefficient of the first action
in a regression of the recorded state h steps ahead on the state now and the actions taken. An
imagination that moves less with the action than the environment does undervalues acting: the
probe for an actor that acts too gently. With ``--predictions`` the JSON keeps every test step's
imagined effects (``action_response_predictions``, each row's ``starts`` indexing
``test_predictions``' targets: the step imagined from).

With ``--act-with RUN`` another run acts in the episodes instead (``--act-step``: its checkpoint;
greedy, or sampled with ``--sample``): a run whose observation is the environment's own (a state run
of the same environment), reading it from ``info["source_observation"]``
(``agents.state_probe.source_actor``). The probed model filters what its camera saw with the actions
that run took, and every table reads it on those episodes. A state run that holds a pendulum up
shows whether a camera run's model, whose own policy never holds it, follows the state there and
imagines it ahead with the actions that would hold it (``--open-loop``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.action_response import (effect_names, imagined_action_effects, real_action_effects, valid_rows,
                                    valid_starts)
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
    parser.add_argument("--action-response", type=int, default=0, metavar="H",
                        help="also measure how much the state imagined 1..H steps ahead moves with the first action, "
                             "against the environment's effect regressed from the recorded steps (0: not)")
    parser.add_argument("--response-where", nargs=3, metavar=("ENTRY", "LOW", "HIGH"),
                        help="measure --action-response only from states whose ENTRY (a name the table prints, "
                             "e.g. [0]) lies in [LOW, HIGH]: the effect near one state, which a fit over all "
                             "states averages away (a pendulum's near the top: [0] 0.94 1)")
    parser.add_argument("--predictions", action="store_true",
                        help="keep every test step's source observation and the trained latent's prediction of it")
    parser.add_argument("--act-with", metavar="RUN",
                        help="another run, observing the environment's own observation, acts in the episodes")
    parser.add_argument("--act-step", type=int, help="with --act-with: its checkpoint step (default: the latest)")
    parser.add_argument("--out", help="JSON path (default: <logdir>/probe_state.json)")
    args = parser.parse_args(argv)
    if args.act_step is not None and args.act_with is None:
        parser.error("--act-step needs --act-with")
    return args


@contextlib.contextmanager
def acting_run(logdir: Path | None, step: int | None, agent, envs, greedy: bool):
    """``(actor, its step)`` of the run in ``logdir`` acting on ``envs``' source observation for the
    probed ``agent`` (None, None without one); a clear error where its spaces do not fit."""
    if logdir is None:
        yield None, None
        return
    from agents.state_probe import source_actor, source_entries

    with trained_run(logdir, step) as (_, other, other_state, other_step, other_envs):
        source, _ = source_entries(envs.reset(seed=0)[1])
        space, actions = other_envs.single_observation_space, other.action_layout
        if space.shape != source.shape or (actions.discrete, actions.dim) != (agent.action_layout.discrete,
                                                                           agent.action_layout.dim):
            raise UserError(f"--act-with {logdir}: it observes {space} and acts with {actions.dim} "
                            f"{'discrete' if actions.discrete else 'continuous'} entries; the probed run's environment "
                            f"keeps a source observation of shape {source.shape} and its agent acts with "
                            f"{agent.action_layout.dim}: give a run of the same environment that observes its own state")
        yield source_actor(other, other_state, greedy), other_step


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


def open_loop(agent, params, episodes: list[dict[str, Any]], predict, batch: int, seed: int, horizon: int) -> dict:
    """Linear probes of the odd-numbered episodes' states imagined ``1 .. horizon`` steps ahead:
    ``posterior_readout`` reads them with ``predict``, the trained probe (fitted on the even-numbered
    episodes' posterior features, as ``probe_features``' ``trained``), ``own_readout`` with one
    regression per distance fitted on the even-numbered episodes' imagined features."""
    import jax

    sources = [episode["sources"] for episode in episodes]
    imagined = open_loop_features(agent.levels[0].world_model, params, episodes, batch, jax.random.PRNGKey(seed),
                                  horizon)
    return {"posterior_readout": open_loop_probe(imagined[1::2], sources[1::2], predict=predict),
            "own_readout": open_loop_probe(imagined[1::2], sources[1::2], fit_imagined=imagined[0::2],
                                           fit_targets=sources[0::2])}


def response_region(names: list[str], where: Sequence[str] | None):
    """``--response-where ENTRY LOW HIGH`` as a mask of source states ``[N, D] -> [N]`` (None: all)."""
    if where is None:
        return None
    entry, low, high = where
    if entry not in names:
        raise UserError(f"--response-where: no entry {entry!r} in the source observation; its entries are {names}")
    try:
        low, high = float(low), float(high)
    except ValueError:
        raise UserError(f"--response-where {entry} {low} {high}: LOW and HIGH must be numbers") from None
    index = names.index(entry)
    return lambda states: (states[:, index] >= low) & (states[:, index] <= high)


def action_response(agent, params, episodes: list[dict[str, Any]], predict, batch: int, seed: int,
                    horizon: int, where) -> dict:
    """The first action's effect on the state ``1 .. horizon`` steps ahead: ``imagined``, per test
    (odd-numbered) episode ``[T, E, H, D]`` read by ``predict``; ``real``, regressed from the recorded
    steps whose state passes ``where`` (``agents.action_response.real_action_effects``)."""
    import jax

    discrete = agent.action_layout.discrete
    return {"imagined": imagined_action_effects(agent.levels[0].world_model, params, episodes[1::2], batch,
                                                jax.random.PRNGKey(seed), horizon, discrete, predict),
            "real": real_action_effects(episodes, horizon, discrete, where),
            "effects": effect_names(agent.action_layout.dim, discrete)}


def action_response_report(response: dict, episodes: list[dict[str, Any]], horizon: int, where,
                           region: Sequence[str] | None) -> dict:
    """The JSON of ``action_response``: per distance, the imagined effect averaged over the test steps
    whose state passes ``where`` and the real one ``[E, D]``, the real regression's R² per entry and
    the steps each saw."""
    rounded = lambda rows: np.round(np.asarray(rows, np.float64), 5).tolist()
    report = {"horizon": horizon, "where": list(region) if region else None, "effects": response["effects"],
              "imagined": {}, "imagined_steps": {}, "real": {}, "real_r2": {}, "real_own_share": {}, "real_steps": {}}
    test_sources = [episode["sources"] for episode in episodes[1::2]]
    for h, real in response["real"].items():
        imagined = valid_rows(response["imagined"], h)
        if where is not None:
            imagined = imagined[where(valid_starts(test_sources, h))]
        report["imagined"][h] = rounded(imagined.mean(0)) if len(imagined) else None
        report["imagined_steps"][h] = len(imagined)
        report["real"][h], report["real_r2"][h], report["real_steps"][h] = rounded(real["effect"]), real["r2"], real["rows"]
        report["real_own_share"][h] = real["own_share"]
    return report


def print_action_response(names: list[str], report: dict) -> None:
    response = report["action_response"]
    shown = [h for h in distances(response["horizon"]) if h in response["real"]]
    if not shown:
        print("\nEffect of the first action: too few recorded steps (in the --response-where region) to regress")
        return
    region = "" if response["where"] is None else " from states with {} in [{}, {}]".format(*response["where"])
    print(f"\nEffect of the first action on the state h steps ahead{region}, imagined by level 0 (mean over "
          f"{response['imagined_steps'][shown[0]]:,} test steps) / in the environment (regressed from "
          f"{response['real_steps'][shown[0]]:,} recorded steps, its R² in brackets); per unit of a continuous "
          f"action, or against action 0:")
    print("| entry | action | " + " | ".join(f"h = {h}" for h in shown) + " |")
    print("| --- | --- |" + " ---: |" * len(shown))
    for index, name in enumerate(names):
        for effect, action in enumerate(response["effects"]):
            fit = lambda r2: "-" if r2 is None else f"{r2:.2f}"
            imagined = lambda h: ("-" if response["imagined"][h] is None
                                  else f"{response['imagined'][h][effect][index]:+.3f}")
            cells = [f"{imagined(h)} / {response['real'][h][effect][index]:+.3f} "
                     f"({fit(response['real_r2'][h][index])})" for h in shown]
            print(f"| {name} | {action} | " + " | ".join(cells) + " |")
    for effect, action in enumerate(response["effects"]):
        shares = " | ".join(f"{response['real_own_share'][h][effect]:.2f}" for h in shown)
        print(f"| first action, variance the rest leave | {action} | {shares} |")
    if min(min(response["real_own_share"][h]) for h in shown) < 0.1:
        print("The other regressors explain over 90% of a first action's variance (a greedy policy acts as a function "
              "of the state): the environment's effect is not identified there; record sampled actions (--sample).")


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
    if "acted_by" in report:
        print(f"the episodes were acted by {report['acted_by']['logdir']} at step {report['acted_by']['step']:,}")
    print("| entry | " + " | ".join(HEADERS.values()) + " |")
    print("| --- |" + " ---: |" * len(HEADERS))
    for index, name in enumerate(names):
        print(f"| {name} | " + " | ".join(show(report[column]["r2"][index]) for column in HEADERS) + " |")


@report_user_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import jax

    logdir = Path(args.logdir)
    with contextlib.ExitStack() as stack:
        config, agent, state, step, envs = stack.enter_context(trained_run(logdir, args.step))
        try:
            actor, actor_step = stack.enter_context(acting_run(
                args.act_with and Path(args.act_with), args.act_step, agent, envs, not args.sample))
            episodes = record_episodes(agent, state, envs, args.steps, args.seed, not args.sample, actor)
        except NoSourceObservation as error:
            raise UserError(f"{logdir}: {error}") from None
        where = response_region(episodes[0]["names"], args.response_where)
        fresh = agent.init(jax.random.PRNGKey(args.seed)).levels[0].world_model.params
        trained = state.levels[0].world_model.params
        features = probe_features(agent, trained, fresh, episodes, args.batch, args.seed)
        predict = (fitted_probe(features["trained"][0::2], [episode["sources"] for episode in episodes[0::2]])[1]
                   if args.open_loop > 0 or args.action_response > 0 else None)
        imagined = (open_loop(agent, trained, episodes, predict, args.batch, args.seed, args.open_loop)
                    if args.open_loop > 0 else None)
        response = (action_response(agent, trained, episodes, predict, args.batch, args.seed, args.action_response,
                                    where) if args.action_response > 0 else None)
    result = {name: split_probe(probed, episodes) for name, probed in features.items()}
    names = episodes[0]["names"]
    lengths = [len(episode["sources"]) for episode in episodes]
    report = {"logdir": str(logdir), "step": step, "greedy": not args.sample, "seed": args.seed, "entries": names,
              **({"acted_by": {"logdir": args.act_with, "step": actor_step}} if args.act_with else {}),
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
    if response is not None:
        report["action_response"] = action_response_report(response, episodes, args.action_response, where,
                                                            args.response_where)
        if args.predictions:
            # each test step's index among the test episodes' steps laid end to end, as test_predictions'
            indices = np.split(np.arange(sum(lengths[1::2])), np.cumsum(lengths[1::2])[:-1])
            report["action_response_predictions"] = {
                h: {"starts": valid_starts(indices, h).tolist(),
                    "effects": rounded(valid_rows(response["imagined"], h))}
                for h in report["action_response"]["real"]}
    print_table(logdir, step, names, report)
    if imagined is not None:
        print_open_loop(args.open_loop, names, report)
    if response is not None:
        print_action_response(names, report)
    out = Path(args.out) if args.out else logdir / "probe_state.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
