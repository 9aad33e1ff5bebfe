"""A benchmark run's curves: its evaluation rows read from ``metrics.jsonl``, the first success, the
scalars of one family, curves over seeds, and a dependency-free line plot (Pillow only)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from agents.logging import read_metrics


def evaluation_rows(logdir: Path, probes: Iterable[str] | re.Pattern = ()) -> list[dict]:
    """A run's evaluations: step, seconds, greedy return, the mean return of the training episodes that
    ended since the previous evaluation (``train_return``: sampled actions, so it shows sparse successes
    that greedy evaluation misses), ``success_rate`` where the evaluation logged it
    (``eval/success_rate``), every level's exploitation and goal scalars, and the latest value of every
    logged scalar whose name contains one of ``probes`` (e.g. ``"world_model/r2/"``) or, given a pattern,
    that the pattern finds in it. Only the trainer's periodic evaluations count (they log
    ``eval/elapsed_seconds``); one by ``scripts.evaluate`` after training does not: it has no training
    time and may use another number of episodes."""
    rows, training, latest = [], [], {}
    if not isinstance(probes, re.Pattern):
        probes = re.compile("|".join(map(re.escape, probes)) or "(?!)")  # (?!): no probes, nothing matches
    for row in read_metrics(logdir):
        latest.update({name: value for name, value in row.items() if probes.search(name)})
        if "episode/return" in row:
            training.append(row["episode/return"])
        if "eval/return_mean" in row and "eval/elapsed_seconds" in row:
            success = {"success_rate": row["eval/success_rate"]} if "eval/success_rate" in row else {}
            rows.append({"step": row["step"], "seconds": row["eval/elapsed_seconds"], "return": row["eval/return_mean"],
                         **success, "train_return": float(np.mean(training)) if training else None, **latest,
                         **{name: value for name, value in row.items() if "/exploitation/" in name or "/goal/" in name}})
            training = []
    return rows


def successful_episodes(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows of the training episodes that succeeded (one row per episode, in step order), by
    ``episode/success`` (logged where the environment reports success, ``envs.success``) or, in runs
    logged before it existed, a positive return (on a sparse task that pays only for reaching the
    goal, a success)."""
    rows = list(rows)
    key, above = (("episode/success", 0.5) if any("episode/success" in row for row in rows)
                   else ("episode/return", 0.0))
    return [row for row in rows if row.get(key, 0.0) > above]


def scalar_rows(rows: Iterable[Mapping[str, Any]], prefix: str) -> list[dict]:
    """The step and the ``prefix*`` scalars of every row that logs one (e.g. every ``coverage/`` row)."""
    picked = []
    for row in rows:
        scalars = {name: value for name, value in row.items() if name.startswith(prefix)}
        if scalars:
            picked.append({"step": row["step"], **scalars})
    return picked


def value_at(curve: list[Mapping[str, Any]], step: int, key: str) -> float | None:
    """``key`` in the last row of ``curve`` (in step order) at or before ``step``; None if none has it."""
    earlier = [row[key] for row in curve if row["step"] <= step and row.get(key) is not None]
    return earlier[-1] if earlier else None


def mean_curve(runs: dict[int, list[dict]], key: str = "return") -> list[dict]:
    """``key`` at each evaluation step: mean, and min and max over the seeds that have it there (as
    ``plot`` points, the value under ``"return"``)."""
    steps = sorted({p["step"] for curve in runs.values() for p in curve if p.get(key) is not None})
    curve = []
    for step in steps:
        values = [p[key] for c in runs.values() for p in c if p["step"] == step and p.get(key) is not None]
        curve.append({"step": step, "return": float(np.mean(values)), "low": float(np.min(values)),
                      "high": float(np.max(values))})
    return curve


def steps_label(action_repeat: int) -> str:
    """What a run's step counts are, for an x axis: the trainer's steps, each ``action_repeat``
    environment steps."""
    return "environment steps" if action_repeat == 1 else f"agent steps ({action_repeat} environment steps each)"


def plot(curves: dict, path: Path, title: str, target: float | None, label=lambda key: f"seed {key}",
         target_label: str = "target", steps: str = "environment steps") -> None:
    """A plain line plot with Pillow (no plotting dependency); ``label(key)`` names each curve. Points
    with ``low`` and ``high`` get a pale band between them (the spread over seeds); ``steps`` names
    what the x axis counts."""
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
    draw.text((margin, height - margin + 8), f"0 .. {max_step:,} {steps}", fill="black")
    draw.text((5, margin - 14), f"{high:.3g}", fill="black")
    draw.text((5, height - margin - 6), f"{low:.3g}", fill="black")
    image.save(path)
