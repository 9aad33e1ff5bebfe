"""Learning from events: the same task from state, pixels and each event representation.

    python -m scripts.bench_events --envs CartPole-v1 Pendulum-v1 --seeds 0 1 2 --jobs 2
    python -m scripts.bench_events --noise                       # shot noise and threshold mismatch on
    python -m scripts.bench_events --measure-only                # events per step, events/s through the encoder
    python -m scripts.bench_events --measure-only --filter-times 0.001 0.005 0.02   # and the denoiser's share
    python -m scripts.bench_events --resume runs/bench-events-<envs>-<time>-<pid> --jobs 2   # continue
    python -m scripts.bench_events --resume runs/bench-events-<envs>-<time>-<pid> --report   # where it stands
    python -m scripts.bench_events --replot benchmarks/out/events.json
    python -m scripts.bench_events --replot A.json B.json ... --out P   # several benchmarks' runs in one table

Every input of an env (``state``: the env's own observation; ``pixels``: rendered frames;
``frame``, ``voxel``, ``events``, ``integrated``: the event camera's representations of those frames;
``events_integrated``: raw events in, their integrated image without leak as the world model's
reconstruction target instead of the count frame) trains the
``control`` preset with the same budget: ``--steps`` agent steps at
``--action-repeat``, frames of ``--image-size`` pixels, the same seeds. The camera's
``frame_interval`` is the simulated time of one agent step (the env's own time step times the
repeat), so shot noise per step is physical. Prints one row per env and input: the final return
(mean of the last four evaluations; mean, min and max over seeds), each seed's last evaluation,
its first evaluation at the target and the step since which every evaluation is at it (agent
steps; with the seeds whose last evaluation is at the target), the decoder's R^2 of the
observation (for ``events``: of its count frame), the wall-clock.
Before training it measures, cheaply, the events per step of each env under a random policy and
the events/s through the event encoder at a couple of stream sizes. Writes the table's data and the
curves as JSON and one PNG per env (mean over seeds per input; default prefix
``benchmarks/out/events``).

Thirty runs of 50k steps take days of a small CPU, so the benchmark is made to span sessions: its runs
live in ``runs/bench-events-<envs>-<time>-<pid>/<env>/<input>/seed<S>``, all written before the first
trains, and the first seed of every input trains before any second. Stop it at any time (Ctrl-C or
SIGTERM: every run keeps a checkpoint), continue it with ``--resume <that directory>``, and
``--report`` summarises the runs as they stand without training (``scripts.benchmarking``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scripts.bench_learning import PROBES as LEARNING_PROBES, summarise_seed
from scripts.benchmarking import Run, add_run_flags, check_run_flags, run_benchmark
from scripts.common import UserError, report_user_errors
from scripts.run_curves import evaluation_rows, mean_curve, plot, steps_label

INPUTS = ("state", "pixels", "frame", "voxel", "events", "integrated", "events_integrated")
EVENT_INPUTS = ("frame", "voxel", "events", "integrated", "events_integrated")
# Raw events in, their integrated image (no leak) the world model's only reconstruction target.
INTEGRATED_TARGET = {"env.event_camera.extra_representations": ["integrated"],
                     "env.event_camera.integration_time": float("inf"),
                     "encoder.cnn_keys": "", "decoder.cnn_keys": "integrated"}
PRESET = "control"  # the classic-control family preset, for every env and input
TARGETS = {"CartPole-v1": 400.0, "Pendulum-v1": -300.0}  # issue #18's targets from events
ENV_TIME_STEP = {"CartPole-v1": 0.02, "Pendulum-v1": 0.05}  # seconds per env step (tau, dt)
# Noise "on at realistic values": the order of magnitude of v2e's noisy sensor model.
NOISE = {"shot_noise_rate": 5.0, "threshold_sigma": 0.03}
MAX_EVENTS = 2048  # rows of the events representation: room for the noisy 48x48 Pendulum's p99 (1,328)
STATE_PROBE_STEPS = 1000  # greedy steps per evaluation for eval/state_r2 (agents.state_probe), camera inputs
STATE_R2 = "eval/state_r2/"
# Level 0's return of its policy over the imagination horizon, imagined and really collected from the same
# replayed states (``agents.exploitation``): a model optimistic about its policy imagines more.
IMAGINED, REAL = "level0/exploitation/imagined_return", "level0/exploitation/real_return"
REWARD_LOSS = "level0/world_model/loss/reward"
VALUE_RANKING = "level0/actor_critic/value_reward_corr"  # does the critic rank states as the model's rewards do?
PROBES = (*LEARNING_PROBES, STATE_R2)
# What a benchmark keeps in its benchmark.json and --resume restores (the runs keep their config.yaml).
SETTINGS = ("envs", "inputs", "seeds", "steps", "image_size", "action_repeat", "max_events", "noise", "eval_every",
            "eval_episodes", "overrides", "measured")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(TARGETS))
    parser.add_argument("--inputs", nargs="+", default=list(INPUTS), choices=INPUTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_run_flags(parser, together="each input's seeds")
    parser.add_argument("--steps", type=int, default=50_000, help="agent steps (after the action repeat)")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--action-repeat", type=int, default=2)
    parser.add_argument("--max-events", type=int, default=MAX_EVENTS,
                        help="rows of the events representation (48x48 Pendulum with noise: p99 1,328 a step)")
    parser.add_argument("--noise", action="store_true", help=f"camera noise on: {NOISE}")
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="applied to every run")
    parser.add_argument("--measure-only", action="store_true", help="only events per step and encoder events/s")
    parser.add_argument("--filter-times", type=float, nargs="*", default=[], metavar="SECONDS",
                        help="with the measurement: events per step through the background-activity filter at each "
                             "of these times (env.event_camera.background_filter_time), clean and noisy camera")
    parser.add_argument("--out", default="benchmarks/out/events", help="output prefix")
    parser.add_argument("--replot", nargs="+", metavar="JSON",
                        help="no training: the table and plots again from a saved JSON; several: merged (written to "
                             "--out), each input named with the settings its file does not share with the others")
    args = parser.parse_args(argv)
    check_run_flags(parser, args, argv)
    if args.filter_times and (args.replot or args.resume):
        parser.error("--filter-times is part of the measurement, which --replot and --resume do not run; "
                     "use it with --measure-only or a new benchmark")
    return args


MERGE_LABELS = ("image_size", "max_events")  # settings that may differ between merged files, named in the input
# Overrides that change what a run keeps on disk, not what it learns: they do not split one input of merged files
# into two (a run given denser checkpoints, to probe it later, is still a seed of the same input).
BOOKKEEPING_KEYS = ("run.checkpoint_every", "run.keep_checkpoints")


def learning_overrides(setting: dict) -> list[str]:
    """A saved benchmark's ``KEY=VALUE`` overrides, less those of ``BOOKKEEPING_KEYS``."""
    return [override for override in setting.get("overrides", [])
            if override.split("=", 1)[0].strip() not in BOOKKEEPING_KEYS]


def merge_saved(saved: Sequence[tuple[str, dict]]) -> tuple[dict, bool, int | None]:
    """``--replot`` of several saved benchmarks: their curves by env, input and seed in one result, an
    input named with what its file does not share with the others (the noisy camera where only some
    are noisy, ``image_size``/``max_events`` that differ, overrides not in every file but those of
    ``BOOKKEEPING_KEYS``). Returns the curves, whether all are noisy, and the action repeat (which the
    step axis needs: it must agree; None for files written before settings were kept). ``saved``:
    (path, parsed JSON) per file."""
    settings = [result.get("settings", {}) for _, result in saved]
    repeats = {setting.get("action_repeat") for setting in settings}
    if len(repeats) > 1:
        raise UserError(f"--replot: the files differ in action repeat ({sorted(map(str, repeats))}), so their "
                        "agent steps are not comparable; merge files of one action repeat")
    common = set.intersection(*(set(learning_overrides(setting)) for setting in settings))
    all_noisy = all(result["noise"] for _, result in saved)
    curves, origin = {}, {}
    for (path, result), setting in zip(saved, settings):
        differing = [f"{key} {setting.get(key)}" for key in MERGE_LABELS
                     if len({json.dumps(other.get(key)) for other in settings}) > 1]
        named = (["noisy camera"] if result["noise"] and not all_noisy else []) + differing + [
            override for override in learning_overrides(setting) if override not in common]
        for env, rows in result["curves"].items():
            for source, seeds in rows.items():
                label = f"{source} ({', '.join(named)})" if named else source
                for seed, curve in seeds.items():
                    if (env, label, seed) in origin:
                        raise UserError(f"--replot: {env} {label} seed {seed} is in {origin[env, label, seed]} and in "
                                        f"{path}; give each run in one file")
                    origin[env, label, seed] = path
                    curves.setdefault(env, {}).setdefault(label, {})[int(seed)] = curve
    return curves, all_noisy, repeats.pop()


def run_overrides(env: str, source: str, image_size: int, action_repeat: int, max_events: int,
                  noise: bool) -> list[tuple[str, Any]]:
    """Config overrides of one env and input (besides seed, steps and evaluation)."""
    overrides = [("env_id", f"event:{env}" if source in EVENT_INPUTS else env),
                 ("env.action_repeat", action_repeat)]
    if source == "state":
        return overrides
    overrides += [("env.image_size", [image_size, image_size]), ("run.state_probe_steps", STATE_PROBE_STEPS)]
    if source == "pixels":
        return overrides + [("env.pixels", True)]
    representation = "events" if source == "events_integrated" else source
    camera = {"representation": representation, "max_events": max_events, **(NOISE if noise else {})}
    if env in ENV_TIME_STEP:  # elsewhere the camera's own frame_interval stands
        camera["frame_interval"] = ENV_TIME_STEP[env] * action_repeat
    overrides += [(f"env.event_camera.{key}", value) for key, value in camera.items()]
    return overrides + (list(INTEGRATED_TARGET.items()) if source == "events_integrated" else [])


def run_config(env: str, source: str, seed: int, args: argparse.Namespace) -> dict:
    """The config of one run: ``env`` from ``source`` on ``seed``, with the benchmark's budget."""
    from configs.loader import load_config

    overrides = run_overrides(env, source, args.image_size, args.action_repeat, args.max_events, args.noise)
    # The replay holds the whole run: no more (event streams are 16 bytes a row), no less.
    overrides += [("seed", seed), ("steps", args.steps), ("replay.capacity", args.steps), ("run.eval_every", args.eval_every),
                  ("run.eval_episodes", args.eval_episodes), *args.overrides]
    return load_config([PRESET], overrides)


def input_of(config: dict) -> tuple[str, str]:
    """The env and input a run's config trains (the inverse of ``run_config``)."""
    env = config["env_id"].removeprefix("event:")
    if config["env_id"] != env:
        camera = config["env"]["event_camera"]
        integrated_target = "integrated" in camera["extra_representations"] and config["decoder"]["cnn_keys"] == "integrated"
        return env, "events_integrated" if integrated_target else camera["representation"]
    return env, "pixels" if config["env"].get("pixels") else "state"


def at_target_since(curve: list[dict], target: float) -> int | None:
    """The step of the first evaluation from which every later one reaches ``target`` (None where the last
    does not): where a seed that reached the target and stayed there got to it."""
    since = None
    for point in reversed(curve):
        if point["return"] < target:
            break
        since = point["step"]
    return since


def summarise_input(curves: dict[int, list[dict]], target: float) -> dict:
    """Over seeds: the final return (mean of each seed's last four evaluations: mean, min, max), each seed's
    last evaluation, first evaluation at the target and the step since which every evaluation is at it
    (agent steps, None where none is), the seeds whose last evaluation is at the target, mean decoder R^2
    per key, mean R^2 of each state entry from the latent (the last evaluation's ``eval/state_r2``,
    camera inputs), each seed's imagined and real return of its policy, the critic's ranking of states
    (``actor_critic/value_reward_corr``) and the mean reward loss (the last evaluation's; None where not
    logged), mean wall-clock."""
    curves = [curve for curve in curves.values() if curve]
    seeds = [summarise_seed(curve, target, None) for curve in curves]
    last_rows = [curve[-1] for curve in curves]
    entries = sorted({name for row in last_rows for name in row if name.startswith(STATE_R2)})
    state_r2 = {name.removeprefix(STATE_R2): float(np.mean([row[name] for row in last_rows if name in row]))
                for name in entries}
    finals = [s["final"] for s in seeds]
    keys = sorted({key for s in seeds for key in s["r2"]})
    since = [at_target_since(curve, target) for curve in curves]
    reward_losses = [row[REWARD_LOSS] for row in last_rows if REWARD_LOSS in row]
    return {"final": float(np.mean(finals)), "final_min": float(np.min(finals)), "final_max": float(np.max(finals)),
            "seeds": len(seeds), "reached": sum(step is not None for step in since),
            "last": [row["return"] for row in last_rows],
            "first_at_target": [s["first_step_at_target"] for s in seeds], "at_target_since": since,
            "r2": {key: float(np.mean([s["r2"][key] for s in seeds if key in s["r2"]])) for key in keys},
            "state_r2": state_r2,
            "imagined_real": [[row[IMAGINED], row[REAL]] if IMAGINED in row and REAL in row else None
                              for row in last_rows],
            "value_ranking": [row.get(VALUE_RANKING) for row in last_rows],
            "reward_loss": float(np.mean(reward_losses)) if reward_losses else None,
            "seconds": float(np.mean([s["seconds"] for s in seeds])), "steps": max(s["last_step"] for s in seeds),
            "steps_min": min(s["last_step"] for s in seeds)}


def print_table(summaries: dict[str, dict[str, dict]], noise: bool) -> None:
    print(f"\nlearning from events{' (noisy camera: ' + str(NOISE) + ')' if noise else ''}: greedy return")
    print("| env | input | agent steps | final (last 4), mean [min, max] | last evaluation, per seed "
          "| first at target, per seed | at target since, per seed | decoder R² | state R² from the latent "
          "| imagined / real return, per seed | critic's value ~ imagined reward, per seed | reward loss "
          "| wall-clock (s) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |")
    for env, rows in summaries.items():
        for source, s in rows.items():
            r2 = ", ".join(f"{key} {value:.3f}" for key, value in s["r2"].items()) or "n/a"
            state = ", ".join(f"{key} {value:.2f}" for key, value in s.get("state_r2", {}).items()) or "n/a"
            first = s.get("steps_min", s["steps"])  # the seeds' last steps, for a report under way
            steps = f"{s['steps']:,}" if first == s["steps"] else f"{first:,}-{s['steps']:,}"
            print(f"| {env} | {source} | {steps} | {s['final']:.1f} [{s['final_min']:.1f}, {s['final_max']:.1f}] "
                  f"| {' / '.join(f'{value:.1f}' for value in s['last'])} | {_per_seed(s['first_at_target'])} "
                  f"| {_per_seed(s['at_target_since'])} ({s['reached']}/{s['seeds']} at "
                  f"{TARGETS.get(env, float('nan')):g}) | {r2} | {state} | {_imagined_real(s['imagined_real'])} "
                  f"| {_value_ranking(s.get('value_ranking', []))} "
                  f"| {'n/a' if s['reward_loss'] is None else format(s['reward_loss'], '.2f')} "
                  f"| {s['seconds']:.0f} |")


def _per_seed(steps: Sequence[int | None]) -> str:
    return " / ".join("-" if step is None else f"{step:,}" for step in steps)


def _value_ranking(correlations: Sequence[float | None]) -> str:
    """The critic's ranking per seed, ``/`` between seeds; n/a for a run logged before the metric existed."""
    return " / ".join("n/a" if value is None else f"{value:+.2f}" for value in correlations) or "n/a"


def _imagined_real(pairs: Sequence[Sequence[float] | None]) -> str:
    """``imagined / real`` per seed, ``;`` between seeds; n/a for a run that logged no exploitation."""
    return "; ".join("n/a" if pair is None else f"{pair[0]:.3g} / {pair[1]:.3g}" for pair in pairs)


def events_per_step(env: str, image_size: int, action_repeat: int, noise: bool, steps: int = 200,
                    seed: int = 0, overrides: Sequence[str] = ()) -> dict:
    """Events per agent step of ``event:<env>`` under a uniformly random policy: mean, p99, max
    (``overrides``: the benchmark's ``--set``, its camera's thresholds say)."""
    from configs.loader import load_config
    from envs import make_env

    config = load_config([PRESET], run_overrides(env, "frame", image_size, action_repeat, 1, noise) + list(overrides))
    camera_env = make_env(config["env_id"], config["env"], seed=seed)
    camera_env.reset(seed=seed)
    camera_env.action_space.seed(seed)
    counts = []
    for _ in range(steps):
        _, _, terminated, truncated, info = camera_env.step(camera_env.action_space.sample())
        counts.append(info["event_count"])
        if terminated or truncated:
            camera_env.reset()
    camera_env.close()
    return {"mean": float(np.mean(counts)), "p99": float(np.percentile(counts, 99)), "max": int(np.max(counts))}


def filter_sweep(env: str, image_size: int, action_repeat: int, filter_times: Sequence[float], steps: int = 300,
                 overrides: Sequence[str] = ()) -> list[dict]:
    """Events per agent step of ``event:<env>`` (random policy) through the background-activity filter at
    each time, with the camera clean and noisy: how much of the scene's events it keeps and how many of
    the noisy camera's it leaves. The first row (time 0) is the camera unfiltered."""
    rows = []
    for seconds in [0.0, *filter_times]:
        setting = [*overrides, f"env.event_camera.background_filter_time={seconds}"]
        clean, noisy = (events_per_step(env, image_size, action_repeat, noise, steps, overrides=setting)["mean"]
                        for noise in (False, True))
        rows.append({"filter_time": seconds, "clean": clean, "noisy": noisy})
    for row in rows:
        row["clean_kept"] = row["clean"] / rows[0]["clean"] if rows[0]["clean"] else float("nan")
    return rows


def encoder_throughput(max_events: int, fill: float, streams: int, repeats: int = 3,
                       encoder_kwargs: dict | None = None) -> dict:
    """Events/s through the event encoder (``world_model.event_encoder`` defaults unless given):
    ``streams`` steps at once, each filled to ``fill * max_events``; forward alone and forward plus
    backward, after compiling. Counts only the real events (the padding past the count is skipped)."""
    import jax
    import jax.numpy as jnp

    from configs.loader import load_defaults
    from world_models.event_encoder import EventEncoder, EventStream

    stream = EventStream(max_events, "count", 32, 32, 0.04)
    encoder = EventEncoder(stream, **(encoder_kwargs or load_defaults()["world_model"]["event_encoder"]))
    rng = np.random.default_rng(0)
    events = np.zeros((streams, max_events, 4), np.float32)
    events[..., :2] = rng.integers(0, 32, (streams, max_events, 2))
    events[..., 2] = np.sort(rng.uniform(0.0, 0.04, (streams, max_events)), -1)
    events[..., 3] = rng.choice([-1.0, 1.0], (streams, max_events))
    count = np.full(streams, int(fill * max_events), np.int32)
    params = jax.jit(encoder.init)(jax.random.PRNGKey(0), events, count)
    forward = jax.jit(encoder.apply)
    backward = jax.jit(jax.grad(lambda p, e, c: jnp.sum(encoder.apply(p, e, c) ** 2)))
    result = {"max_events": max_events, "events_per_step": int(count[0]), "streams": streams}
    for name, function in (("forward", forward), ("train", backward)):
        jax.block_until_ready(function(params, events, count))
        start = time.perf_counter()
        for _ in range(repeats):
            jax.block_until_ready(function(params, events, count))
        result[f"{name}_events_per_second"] = repeats * int(count.sum()) / (time.perf_counter() - start)
    return result


def measure(args: argparse.Namespace) -> dict:
    """The cheap numbers: events per step per env, events/s through the encoder at two sizes."""
    counts = {env: events_per_step(env, args.image_size, args.action_repeat, args.noise, overrides=args.overrides)
              for env in args.envs}
    print("\nevents per agent step under a random policy "
          f"({args.image_size}x{args.image_size}, action repeat {args.action_repeat}):")
    for env, c in counts.items():
        print(f"  {env}: mean {c['mean']:.0f}, p99 {c['p99']:.0f}, max {c['max']}")
    # A full short stream, and a long one nearly empty (what a 48x48 CartPole gives) and full.
    sizes = [(256, 1.0, 64), (args.max_events, 64 / args.max_events, 64), (args.max_events, 1.0, 64)]
    throughput = [encoder_throughput(*size) for size in sizes]
    print("\n| rows | events per step | steps at once | events/s forward | events/s forward + backward |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for t in throughput:
        print(f"| {t['max_events']} | {t['events_per_step']} | {t['streams']} | {t['forward_events_per_second']:,.0f} "
              f"| {t['train_events_per_second']:,.0f} |")
    measured = {"events_per_step": counts, "encoder": throughput}
    if args.filter_times:
        measured["filter"] = {env: filter_sweep(env, args.image_size, args.action_repeat, args.filter_times,
                                                overrides=args.overrides) for env in args.envs}
        print(f"\nevents per agent step through the background-activity filter (random policy; noisy: {NOISE}):")
        print("| env | filter time (s) | clean camera | share of its events kept | noisy camera |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for env, rows in measured["filter"].items():
            for row in rows:
                print(f"| {env} | {row['filter_time'] or 'off'} | {row['clean']:.1f} | {row['clean_kept']:.2f} "
                      f"| {row['noisy']:.1f} |")
    return measured


def train_all(args: argparse.Namespace) -> dict[str, dict[str, dict[int, list[dict]]]]:
    """Every (env, input, seed) run trained, or continued with ``--resume`` (``--report``: as they
    stand); their evaluation rows by env, input and seed."""
    def report(run: Run) -> None:
        rows = evaluation_rows(run.logdir, PROBES)
        print(f"{run.name}: last evaluation {rows[-1]['return'] if rows else None}", flush=True)

    # Kept with the benchmark (benchmark.json): a resumed one does not measure again.
    args.measured = {} if args.resume else measure(args)
    args.env = "+".join(args.envs)  # names the benchmark's directory
    new_configs = lambda: {f"{env}/{source}/seed{seed}": run_config(env, source, seed, args)
                           for env in args.envs for source in args.inputs for seed in args.seeds}
    groups = run_benchmark(args, "bench_events", new_configs, lambda run: "/".join(input_of(run.config)), SETTINGS,
                           report, env_of=lambda run: "+".join(args.envs))
    curves = {}
    for group in groups.values():
        for run in group:
            rows = evaluation_rows(run.logdir, PROBES)
            if rows:
                env, source = input_of(run.config)
                curves.setdefault(env, {}).setdefault(source, {})[run.config["seed"]] = rows
    return curves


@report_user_errors
def main(argv=None) -> dict:
    args = parse_args(argv)
    prefix = Path(args.out)
    if args.replot:
        saved = [(path, json.loads(Path(path).read_text())) for path in args.replot]
        curves, args.noise, repeat = merge_saved(saved)
        args.action_repeat = repeat or args.action_repeat  # JSONs written before settings were kept: the default
        if len(saved) == 1:  # written again where it was, with what it kept
            prefix = Path(args.replot[0]).with_suffix("")
            args.measured, settings = saved[0][1].get("measured", {}), saved[0][1].get("settings")
        else:
            args.measured, settings = {}, {"action_repeat": args.action_repeat, "merged_from": list(args.replot)}
    elif args.measure_only:
        curves, args.measured = {}, measure(args)
    else:
        curves = train_all(args)
    summaries = {env: {source: summarise_input(seeds, TARGETS.get(env, float("inf")))
                       for source, seeds in rows.items()} for env, rows in curves.items()}
    if summaries:
        print_table(summaries, args.noise)
    elif not args.measure_only:
        print("no evaluations yet: no run has reached its first evaluation (--eval-every)")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    result = {"noise": args.noise, "measured": args.measured, "summary": summaries,
              "curves": {env: {source: {str(seed): c for seed, c in seeds.items()} for source, seeds in rows.items()}
                         for env, rows in curves.items()}}
    if not args.replot:
        settings = {key: getattr(args, key) for key in
                    ("steps", "image_size", "action_repeat", "max_events", "seeds", "overrides")}
    if settings:
        result["settings"] = settings
    prefix.with_suffix(".json").write_text(json.dumps(result, indent=2))
    for env, rows in curves.items():
        png = prefix.parent / f"{prefix.name}_{env}.png"
        title = f"{env} from state, pixels and events: mean over seeds, band min-max"
        plot({source: mean_curve(seeds) for source, seeds in rows.items()}, png, title, TARGETS.get(env), label=str,
             steps=steps_label(args.action_repeat))
        print(f"wrote {png}")
    print(f"wrote {prefix.with_suffix('.json')}")
    return result


if __name__ == "__main__":
    main()
