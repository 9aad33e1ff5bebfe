"""Learning from events: the same task from state, pixels and each event representation.

    python -m scripts.bench_events --envs CartPole-v1 Pendulum-v1 --seeds 0 1 2 --jobs 3
    python -m scripts.bench_events --noise                       # shot noise and threshold mismatch on
    python -m scripts.bench_events --measure-only                # events per step, events/s through the encoder
    python -m scripts.bench_events --replot benchmarks/out/events.json

Every input of an env (``state``: the env's own observation; ``pixels``: rendered frames;
``frame``, ``voxel``, ``events``: the event camera's representations of those frames) trains the
``control`` preset with the same budget: ``--steps`` agent steps at
``--action-repeat``, frames of ``--image-size`` pixels, the same seeds. The camera's
``frame_interval`` is the simulated time of one agent step (the env's own time step times the
repeat), so shot noise per step is physical. Prints one row per env and input: the final return
(mean of the last four evaluations; mean, min and max over seeds), the seeds that reached the
target, the decoder's R^2 of the observation (for ``events``: of its count frame), the wall-clock.
Before training it measures, cheaply, the events per step of each env under a random policy and
the events/s through the event encoder at a couple of stream sizes. Writes the table's data and the
curves as JSON and one PNG per env (mean over seeds per input; default prefix
``benchmarks/out/events``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from scripts.bench_learning import PROBES, summarise_seed
from scripts.run_curves import evaluation_rows, mean_curve, plot
from scripts.side_by_side import run_side_by_side

INPUTS = ("state", "pixels", "frame", "voxel", "events")
EVENT_INPUTS = ("frame", "voxel", "events")
PRESET = "control"  # the classic-control family preset, for every env and input
TARGETS = {"CartPole-v1": 400.0, "Pendulum-v1": -300.0}  # issue #18's targets from events
ENV_TIME_STEP = {"CartPole-v1": 0.02, "Pendulum-v1": 0.05}  # seconds per env step (tau, dt)
# Noise "on at realistic values": the order of magnitude of v2e's noisy sensor model.
NOISE = {"shot_noise_rate": 5.0, "threshold_sigma": 0.03}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(TARGETS))
    parser.add_argument("--inputs", nargs="+", default=list(INPUTS), choices=INPUTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own single-threaded process")
    parser.add_argument("--steps", type=int, default=50_000, help="agent steps (after the action repeat)")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--action-repeat", type=int, default=2)
    parser.add_argument("--max-events", type=int, default=2048,
                        help="rows of the events representation (48x48 Pendulum with noise: p99 1,328 a step)")
    parser.add_argument("--noise", action="store_true", help=f"camera noise on: {NOISE}")
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="applied to every run")
    parser.add_argument("--measure-only", action="store_true", help="only events per step and encoder events/s")
    parser.add_argument("--out", default="benchmarks/out/events", help="output prefix")
    parser.add_argument("--replot", metavar="JSON", help="no training: the table and plots again from a saved JSON")
    return parser.parse_args(argv)


def run_overrides(env: str, source: str, image_size: int, action_repeat: int, max_events: int,
                  noise: bool) -> list[tuple[str, Any]]:
    """Config overrides of one env and input (besides seed, steps and evaluation)."""
    overrides = [("env_id", f"event:{env}" if source in EVENT_INPUTS else env),
                 ("env.action_repeat", action_repeat)]
    if source == "state":
        return overrides
    overrides.append(("env.image_size", [image_size, image_size]))
    if source == "pixels":
        return overrides + [("env.pixels", True)]
    camera = {"representation": source, "max_events": max_events,
              "frame_interval": ENV_TIME_STEP[env] * action_repeat, **(NOISE if noise else {})}
    return overrides + [(f"env.event_camera.{key}", value) for key, value in camera.items()]


def train_one(env: str, source: str, seed: int, args: argparse.Namespace, logdir: Path) -> list[dict]:
    """One run's evaluation rows (``scripts.run_curves.evaluation_rows``)."""
    from agents.trainer import Trainer
    from configs.loader import load_config
    from configs.sections import run_sections
    from envs import make_vector_env

    overrides = run_overrides(env, source, args.image_size, args.action_repeat, args.max_events, args.noise)
    # The replay holds the whole run: no more (event streams are 16 bytes a row), no less.
    overrides += [("seed", seed), ("steps", args.steps), ("replay.capacity", args.steps), ("run.eval_every", args.eval_every),
                  ("run.eval_episodes", args.eval_episodes), *args.overrides]
    config = load_config([PRESET], overrides)
    env_parallel = run_sections(config).run.env_parallel
    make_envs = lambda count: make_vector_env(config["env_id"], config["env"], count, env_parallel)
    Trainer(config, logdir, make_envs, progress=False).run(config["steps"])
    return evaluation_rows(logdir, PROBES)


def summarise_input(curves: dict[int, list[dict]], target: float) -> dict:
    """Over seeds: the final return (mean, min, max), seeds at the target, mean decoder R^2 per key,
    mean wall-clock."""
    seeds = [summarise_seed(curve, target, None) for curve in curves.values() if curve]
    finals = [s["final"] for s in seeds]
    keys = sorted({key for s in seeds for key in s["r2"]})
    return {"final": float(np.mean(finals)), "final_min": float(np.min(finals)), "final_max": float(np.max(finals)),
            "seeds": len(seeds), "reached": sum(s["final"] >= target for s in seeds),
            "r2": {key: float(np.mean([s["r2"][key] for s in seeds if key in s["r2"]])) for key in keys},
            "seconds": float(np.mean([s["seconds"] for s in seeds])), "steps": max(s["last_step"] for s in seeds)}


def print_table(summaries: dict[str, dict[str, dict]], noise: bool) -> None:
    print(f"\nlearning from events{' (noisy camera: ' + str(NOISE) + ')' if noise else ''}: greedy return")
    print("| env | input | agent steps | final (last 4), mean [min, max] | at target | decoder R² | wall-clock (s) |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: |")
    for env, rows in summaries.items():
        for source, s in rows.items():
            r2 = ", ".join(f"{key} {value:.3f}" for key, value in s["r2"].items()) or "n/a"
            print(f"| {env} | {source} | {s['steps']:,} | {s['final']:.1f} [{s['final_min']:.1f}, {s['final_max']:.1f}] "
                  f"| {s['reached']}/{s['seeds']} (>= {TARGETS.get(env, float('nan')):g}) | {r2} | {s['seconds']:.0f} |")


def events_per_step(env: str, image_size: int, action_repeat: int, noise: bool, steps: int = 200,
                    seed: int = 0) -> dict:
    """Events per agent step of ``event:<env>`` under a uniformly random policy: mean, p99, max."""
    from configs.loader import load_config
    from envs import make_env

    overrides = run_overrides(env, "frame", image_size, action_repeat, 1, noise)
    config = load_config([PRESET], overrides)
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
    counts = {env: events_per_step(env, args.image_size, args.action_repeat, args.noise) for env in args.envs}
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
    return {"events_per_step": counts, "encoder": throughput}


def main(argv=None) -> dict:
    args = parse_args(argv)
    prefix = Path(args.out)
    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        prefix, args.noise = Path(args.replot).with_suffix(""), saved["noise"]
        curves = {env: {source: {int(seed): c for seed, c in seeds.items()} for source, seeds in rows.items()}
                  for env, rows in saved["curves"].items()}
        measured = saved.get("measured", {})
    else:
        measured = measure(args)
        if args.measure_only:
            curves = {}
        else:
            stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            calls = {(env, source, seed): (env, source, seed, args,
                                            Path("runs") / f"bench-events-{env}-{source}-seed{seed}-{stamp}")
                     for env in args.envs for source in args.inputs for seed in args.seeds}
            report = lambda key, rows: print(f"{key}: last evaluation {rows[-1]['return']:.1f}", flush=True)
            results = run_side_by_side(train_one, calls, args.jobs, report)
            curves = {}
            for (env, source, seed), rows in results.items():
                curves.setdefault(env, {}).setdefault(source, {})[seed] = rows
    summaries = {env: {source: summarise_input(seeds, TARGETS.get(env, float("inf")))
                       for source, seeds in rows.items()} for env, rows in curves.items()}
    if summaries:
        print_table(summaries, args.noise)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    result = {"noise": args.noise, "measured": measured, "summary": summaries,
              "curves": {env: {source: {str(seed): c for seed, c in seeds.items()} for source, seeds in rows.items()}
                         for env, rows in curves.items()}}
    if not args.replot:
        result["settings"] = {key: getattr(args, key) for key in
                              ("steps", "image_size", "action_repeat", "max_events", "seeds", "overrides")}
    prefix.with_suffix(".json").write_text(json.dumps(result, indent=2))
    for env, rows in curves.items():
        png = prefix.parent / f"{prefix.name}_{env}.png"
        title = f"{env} from state, pixels and events: mean over seeds, band min-max"
        plot({source: mean_curve(seeds) for source, seeds in rows.items()}, png, title, TARGETS.get(env), label=str)
        print(f"wrote {png}")
    print(f"wrote {prefix.with_suffix('.json')}")
    return result


if __name__ == "__main__":
    main()
