"""Learning-curve benchmark: train a preset for a budget of environment steps, evaluate on the way.

    python -m scripts.bench_learning --env CartPole-v1 --config cartpole --steps 50000 --seeds 0
    python -m scripts.bench_learning --env Pendulum-v1 --config pendulum --steps 50000

Prints a table of (environment steps, wall-clock seconds, mean greedy evaluation return) per seed,
writes the curves as JSON and a PNG plot next to it (default ``benchmarks/out/learning_<env>.*``),
and says whether the target return was reached within the budget.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path


from agents.logging import read_metrics
from agents.trainer import Trainer
from configs.loader import load_config
from envs import make_vector_env

TARGETS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--config", default="cartpole")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--eval-every", type=int, default=2500)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--target", type=float, help="return to reach (default: known per env)")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="output prefix (default benchmarks/out/learning_<env>)")
    return parser.parse_args(argv)


def train_one(args: argparse.Namespace, seed: int, logdir: Path) -> list[dict]:
    overrides = [("env_id", args.env), ("seed", seed), ("steps", args.steps),
                 ("run.eval_every", args.eval_every), ("run.eval_episodes", args.eval_episodes), *args.overrides]
    config = load_config([args.config], overrides)
    make_envs = lambda count: make_vector_env(config["env_id"], config["env"], count, config["run"]["env_parallel"])
    Trainer(config, logdir, make_envs).run(config["steps"])
    return [
        {"step": row["step"], "seconds": row["eval/elapsed_seconds"], "return": row["eval/return_mean"]}
        for row in read_metrics(logdir) if "eval/return_mean" in row
    ]


def plot(curves: dict, path: Path, title: str, target: float | None, label=lambda key: f"seed {key}",
         target_label: str = "target") -> None:
    """A plain line plot with Pillow (no plotting dependency); ``label(key)`` names each curve. Points
    with ``low`` and ``high`` get a pale band between them (the spread over seeds)."""
    from PIL import Image, ImageDraw

    width, height, margin = 640, 400, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    points = [p for curve in curves.values() for p in curve]
    values = [p[key] for p in points for key in ("return", "low", "high") if key in p]
    values += [target] if target is not None else []
    max_step = max(p["step"] for p in points)
    low, high = min(values), max(values)
    high = high if high > low else low + 1.0
    to_xy = lambda step, value: (margin + (width - 2 * margin) * step / max_step,
                                 height - margin - (height - 2 * margin) * (value - low) / (high - low))
    draw.rectangle([margin, margin, width - margin, height - margin], outline="black")
    if target is not None:
        draw.line([to_xy(0, target), to_xy(max_step, target)], fill=(150, 150, 150), width=1)
        draw.text((width - margin - 80, to_xy(0, target)[1] - 12), f"{target_label} {target:g}", fill=(120, 120, 120))
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
               (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
    for index, (_, curve) in enumerate(sorted(curves.items())):
        if len(curve) > 1 and all("low" in p and "high" in p for p in curve):  # spread over seeds, pale
            pale = tuple((c + 3 * 255) // 4 for c in colours[index % len(colours)])
            band = [to_xy(p["step"], p["high"]) for p in curve] + [to_xy(p["step"], p["low"]) for p in reversed(curve)]
            draw.polygon(band, fill=pale)
    for index, (seed, curve) in enumerate(sorted(curves.items())):
        xy = [to_xy(p["step"], p["return"]) for p in curve]
        colour = colours[index % len(colours)]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        draw.text((margin + 5, margin + 5 + 14 * index), label(seed), fill=colour)
    draw.text((margin, 15), title, fill="black")
    draw.text((margin, height - margin + 8), f"0 .. {max_step:,} environment steps", fill="black")
    draw.text((5, margin - 14), f"{high:.3g}", fill="black")
    draw.text((5, height - margin - 6), f"{low:.3g}", fill="black")
    image.save(path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    target = args.target if args.target is not None else TARGETS.get(args.env)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.env)
    prefix = Path(args.out or f"benchmarks/out/learning_{name}")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    curves = {seed: train_one(args, seed, Path("runs") / f"bench-{name}-seed{seed}-{stamp}") for seed in args.seeds}

    print(f"\n{args.env} / {args.config}: greedy evaluation return ({args.eval_episodes} episodes)")
    print("| seed | env steps | wall-clock (s) | eval return |")
    print("| ---: | ---: | ---: | ---: |")
    for seed, curve in curves.items():
        for point in curve:
            print(f"| {seed} | {point['step']:,} | {point['seconds']:.0f} | {point['return']:.1f} |")
    reached = {}
    for seed, curve in curves.items():
        hit = next((p for p in curve if target is not None and p["return"] >= target), None)
        reached[seed] = hit
        final = curve[-1]["return"] if curve else float("nan")
        where = f"reached {target:g} at {hit['step']:,} steps ({hit['seconds']:.0f}s)" if hit else f"did not reach {target}"
        print(f"seed {seed}: final return {final:.1f}; {where}")
    result = {"env": args.env, "config": args.config, "steps": args.steps, "target": target,
              "curves": {str(k): v for k, v in curves.items()},
              "reached": {str(k): v for k, v in reached.items()}}
    prefix.with_suffix(".json").write_text(json.dumps(result, indent=2))
    plot(curves, prefix.with_suffix(".png"), f"{args.env} ({args.config})", target)
    print(f"wrote {prefix.with_suffix('.json')} and {prefix.with_suffix('.png')}")
    return result


if __name__ == "__main__":
    main()
