"""The hierarchy benchmark's numbers and decision (``scripts.bench_hierarchy``), from run records alone.

A run record is ``{"evaluations": [...], "coverage": [...], "first_success_step": int | None,
"training_successes": int}`` (the last missing from records saved before it existed)
(``bench_hierarchy.run_record``). The decision (issue 15): an arm that plays the hierarchy (C or D) wins
when its final success rate beats both flat arms (A, and B with the same novelty term) in a one-sided
Mann-Whitney U test over seeds, p < ``ALPHA`` for each, and its mean is at least ``MIN_SUCCESS``.
"""

from __future__ import annotations

import math
import re
from typing import Mapping

import numpy as np
from scipy.stats import PermutationMethod, mannwhitneyu

from scripts.bench_learning import FINAL_EVALUATIONS
from scripts.run_curves import value_at

ALPHA = 0.05
MIN_SUCCESS = 0.8
BASELINES = ("A", "B")
DECIDING = ("C", "D")  # stacked abstract model, and the top imagining through level 0
# Scalars at the last evaluation that say why an arm fails: goal reach (and its chance baseline),
# code perplexity, the abstract model's controllability, the exploitation gap and the task return a
# level expects from the real states it acts in, how novel those states still are (a hierarchy that
# has seen everything stops exploring), whether the reward head and the critic know the rewarded
# steps, how often training batches hold one, and whether a level's sampled actions still spread
# (almost) uniformly (entropy fraction near 1: its training episodes follow no preference).
DIAGNOSTIC = re.compile(r"^level\d+/(goal/|model/\w*controllability$|exploitation/(gap|imagined_return)$"
                        r"|novelty/measured$|world_model/reward_on_rewarded$"
                        r"|actor_critic/(value_before_reward|entropy_fraction)$)"
                        r"|^replay/rewarded_fraction$")


def coverage_marks(steps: int) -> tuple[int, int]:
    """The steps coverage is reported at: 25k and 50k, or half and all of a shorter run."""
    return (25_000, 50_000) if steps >= 50_000 else (steps // 2, steps)


def final_success(evaluations: list[dict]) -> float:
    """The mean success rate of the last ``FINAL_EVALUATIONS`` evaluations (as ``bench_learning``'s final)."""
    return float(np.mean([row["success_rate"] for row in evaluations[-FINAL_EVALUATIONS:]]))


def summarise_arm(runs: Mapping[int, dict], marks: tuple[int, ...]) -> dict:
    """One arm over its seeds: final success (per seed, and mean, std, min, max), steps to the first
    success, mean coverage at each mark, mean diagnostics at the last evaluation, mean wall-clock.
    Seeds that never reached an evaluation are left out; at least one must have."""
    runs = {seed: record for seed, record in runs.items() if record["evaluations"]}
    if not runs:
        raise ValueError("no seed of this arm reached an evaluation")
    finals = [final_success(record["evaluations"]) for record in runs.values()]
    firsts = [record["first_success_step"] for record in runs.values()]
    reached = [step for step in firsts if step is not None]
    coverage = {}
    for mark in marks:
        at_mark = [{key: value_at(record["coverage"], mark, key) for key in _coverage_keys(record)}
                   for record in runs.values()]
        keys = sorted({key for values in at_mark for key, value in values.items() if value is not None})
        coverage[str(mark)] = {key: float(np.mean([v[key] for v in at_mark if v.get(key) is not None])) for key in keys}
    last = [record["evaluations"][-1] for record in runs.values()]
    names = sorted({name for row in last for name in row if DIAGNOSTIC.search(name)})
    diagnostics = {name: float(np.mean([row[name] for row in last if name in row])) for name in names}
    return {"seeds": list(runs), "finals": finals, "final_mean": float(np.mean(finals)),
            "final_std": float(np.std(finals)), "final_min": float(np.min(finals)), "final_max": float(np.max(finals)),
            "first_success_steps": firsts, "first_success_mean": float(np.mean(reached)) if reached else None,
            "training_successes": [record.get("training_successes") for record in runs.values()],
            "coverage": coverage, "diagnostics": diagnostics,
            "seconds_mean": float(np.mean([row["seconds"] for row in last]))}


def greater_p_value(challenger: list[float], baseline: list[float]) -> float:
    """One-sided Mann-Whitney U p-value that ``challenger`` tends to be greater than ``baseline``.
    By permutation, because success rates tie often (every seed at 0, or at 1) and scipy's default
    then takes the normal approximation, which is too small for a few seeds (3 ones against 3 zeros:
    0.023 instead of the exact 0.05). Exact up to 9,999 splits of the seeds (7 seeds per arm). A
    single seed cannot be permuted: scipy's default then (0.5 at best, no win either way)."""
    method = PermutationMethod() if min(len(challenger), len(baseline)) >= 2 else "auto"
    return float(mannwhitneyu(challenger, baseline, alternative="greater", method=method).pvalue)


def compare(challenger: list[float], baselines: Mapping[str, list[float]]) -> dict:
    """Whether ``challenger`` beats every baseline (p < ``ALPHA``) with mean at least ``MIN_SUCCESS``."""
    p_values = {name: greater_p_value(challenger, values) for name, values in baselines.items()}
    mean = float(np.mean(challenger))
    return {"mean": mean, "p_values": p_values,
            "wins": bool(all(p < ALPHA for p in p_values.values()) and mean >= MIN_SUCCESS)}


def verdicts(finals: Mapping[str, list[float]]) -> dict:
    """Every arm beyond the baselines compared with them; ``hierarchy_wins``: whether a deciding arm
    wins (None when an arm the decision needs has no finished seed); ``line``: the verdict in words."""
    finals = {arm: values for arm, values in finals.items() if values}
    missing = [arm for arm in BASELINES if arm not in finals]
    comparisons = {arm: compare(values, {b: finals[b] for b in BASELINES})
                   for arm, values in finals.items() if arm not in BASELINES and not missing}
    deciding = [arm for arm in DECIDING if arm in comparisons]
    if not deciding:
        return {"hierarchy_wins": None, "comparisons": comparisons,
                "line": f"no verdict: the decision needs arms {', '.join(BASELINES)} and {' or '.join(DECIDING)} "
                        f"with finished seeds (have "
                        f"{', '.join(finals) or 'none'})"}
    wins = any(comparisons[arm]["wins"] for arm in deciding)
    lines = [f"verdict: the hierarchy {'WINS' if wins else 'does NOT win'} (needs mean final success >= "
             f"{MIN_SUCCESS:g} and one-sided Mann-Whitney U p < {ALPHA:g} over seeds against each of "
             f"{' and '.join(BASELINES)})"]
    for arm, comparison in comparisons.items():
        tests = ", ".join(f"{arm} > {b}: p = {p:.4f}" for b, p in comparison["p_values"].items())
        role = "" if arm in DECIDING else " (reported, not part of the decision)"
        lines.append(f"  {arm}{role}: mean final success {comparison['mean']:.3f}; {tests}; "
                     f"{'wins' if comparison['wins'] else 'does not win'}")
    seeds = (len(finals[deciding[0]]), min(len(finals[b]) for b in BASELINES))
    floor = 1 / math.comb(sum(seeds), seeds[1])
    if floor >= ALPHA:  # the smallest p-value these seed counts allow (a complete separation, no ties)
        lines.append(f"  note: with these seed counts no outcome reaches p < {ALPHA:g} (smallest possible {floor:.3f})")
    return {"hierarchy_wins": wins, "comparisons": comparisons, "line": "\n".join(lines)}


def print_table(summaries: Mapping[str, dict], marks: tuple[int, ...], names: Mapping[str, str] = {}) -> None:
    """A markdown table, one row per arm."""
    keys = sorted({key for s in summaries.values() for at_mark in s["coverage"].values() for key in at_mark})
    at = " / ".join(f"{mark:,}" for mark in marks)
    print("| arm | final success: mean ± std [min, max] | final success per seed | first success (seeds, mean step) "
          "| successful training episodes per seed | "
          + "".join(f"{key.split('/')[-1]} at {at} | " for key in keys)
          + "L1 reach / chance / lift | L1 controllability | wall-clock (s) |")
    print("| --- | --- | --- | --- | --- | " + "---: | " * len(keys) + "--- | ---: | ---: |")
    for arm, s in summaries.items():
        reached = [step for step in s["first_success_steps"] if step is not None]
        first = f"{len(reached)}/{len(s['seeds'])}" + (f", {s['first_success_mean']:,.0f}" if reached else "")
        per_seed = ", ".join(f"{final:.2f}" for final in s["finals"])
        successes = ", ".join(_number(count, "d") for count in s["training_successes"])
        coverage = "".join(" / ".join(_number(s["coverage"][str(mark)].get(key)) for mark in marks) + " | "
                           for key in keys)
        diagnostics = s["diagnostics"]
        reach = " / ".join(_number(diagnostics.get(f"level1/goal/{name}"), ".2f")
                           for name in ("reach_rate", "chance_reach_rate", "reach_lift"))
        print(f"| {arm} {names.get(arm, '')} | {s['final_mean']:.3f} ± {s['final_std']:.3f} "
              f"[{s['final_min']:.3f}, {s['final_max']:.3f}] | {per_seed} | {first} | {successes} | {coverage}{reach} | "
              f"{_number(diagnostics.get('level1/model/controllability'), '.3f')} | {s['seconds_mean']:.0f} |")


def print_diagnostics(summaries: Mapping[str, dict]) -> None:
    """Each arm's diagnostics at the last evaluation (mean over seeds): why an arm fails."""
    print("\ndiagnostics at the last evaluation (mean over seeds):")
    for arm, summary in summaries.items():
        values = ", ".join(f"{name} {value:.3g}" for name, value in summary["diagnostics"].items()) or "none logged"
        print(f"  {arm}: {values}")


def _coverage_keys(record: dict) -> set[str]:
    return {key for row in record["coverage"] for key in row if key != "step"}


def _number(value: float | None, spec: str = ".0f") -> str:
    return "n/a" if value is None else format(value, spec)
