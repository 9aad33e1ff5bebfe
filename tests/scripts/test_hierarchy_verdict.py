"""The hierarchy benchmark's summaries and decision, from hand-made records with known answers."""

import pytest

from scripts.hierarchy_verdict import (coverage_marks, final_success, greater_p_value, summarise_arm,
                                       verdicts)


def _record(successes, first=None, coverage=(), last=None, seconds=100.0, training_successes=None):
    evaluations = [{"step": 1000 * (i + 1), "seconds": seconds, "return": rate, "success_rate": rate}
                   for i, rate in enumerate(successes)]
    evaluations[-1].update(last or {})
    record = {"evaluations": evaluations, "coverage": list(coverage), "first_success_step": first}
    if training_successes is not None:  # records saved before the count existed lack it
        record["training_successes"] = training_successes
    return record


def test_final_success_is_the_mean_of_the_last_four_evaluations():
    assert final_success(_record([0.0, 0.0, 0.5, 1.0, 1.0, 0.5])["evaluations"]) == pytest.approx(0.75)
    assert final_success(_record([0.2, 0.4])["evaluations"]) == pytest.approx(0.3)  # fewer than four: all


def test_coverage_marks_are_25k_and_50k_or_half_and_all_of_a_shorter_run():
    assert coverage_marks(50_000) == coverage_marks(100_000) == (25_000, 50_000)
    assert coverage_marks(1_000) == (500, 1_000)


def test_summarise_arm_over_seeds():
    coverage = [{"step": 400, "coverage/cells_total": 10.0, "coverage/cells_per_1k_steps": 8.0},
                {"step": 800, "coverage/cells_total": 30.0, "coverage/cells_per_1k_steps": 20.0}]
    runs = {
        0: _record([0.0, 1.0], first=700, coverage=coverage, seconds=50.0, training_successes=12,
                   last={"level1/goal/reach_rate": 0.6, "level1/model/controllability": 0.2,
                         "replay/rewarded_fraction": 0.01, "level0/world_model/loss": 3.0}),
        1: _record([0.0, 0.0], coverage=coverage[:1], seconds=70.0,
                   last={"level1/goal/reach_rate": 0.2, "level1/goal/code_perplexity": 40.0,
                         "level1/novelty/measured": 0.1, "level1/exploitation/imagined_return": 0.5,
                         "level1/exploitation/real_return": 0.0, "level0/world_model/reward_on_rewarded": 0.9,
                         "level1/actor_critic/value_before_reward": 0.3, "level1/novelty/predictor_loss": 1.0,
                         "level1/actor_critic/entropy_fraction": 0.99, "level1/actor_critic/entropy": 16.5}),
        2: {"evaluations": [], "coverage": [], "first_success_step": None},  # died before evaluating: left out
    }
    summary = summarise_arm(runs, marks=(500, 1_000))
    assert summary["seeds"] == [0, 1]
    assert summary["finals"] == [0.5, 0.0]
    assert (summary["final_mean"], summary["final_std"]) == pytest.approx((0.25, 0.25))
    assert (summary["final_min"], summary["final_max"]) == (0.0, 0.5)
    assert summary["first_success_steps"] == [700, None] and summary["first_success_mean"] == 700
    assert summary["training_successes"] == [12, None]  # seed 1's record predates the count
    # at 500 both seeds have their step-400 row; at 1,000 seed 0 has 30 (step 800), seed 1 still 10
    assert summary["coverage"] == {"500": {"coverage/cells_per_1k_steps": 8.0, "coverage/cells_total": 10.0},
                                   "1000": {"coverage/cells_per_1k_steps": 14.0, "coverage/cells_total": 20.0}}
    assert summary["diagnostics"] == pytest.approx({"level1/goal/reach_rate": 0.4, "level1/model/controllability": 0.2,
                                                    "replay/rewarded_fraction": 0.01,
                                                    "level1/goal/code_perplexity": 40.0,
                                                    "level1/novelty/measured": 0.1,
                                                    "level1/exploitation/imagined_return": 0.5,
                                                    "level0/world_model/reward_on_rewarded": 0.9,
                                                    "level1/actor_critic/value_before_reward": 0.3,
                                                    "level1/actor_critic/entropy_fraction": 0.99})
    assert summary["seconds_mean"] == 60.0


def test_permutation_p_value_is_exact_with_ties():
    # complete separation of 5 against 5 seeds: 1 of the C(10, 5) = 252 splits, ties or not
    assert greater_p_value([1.0] * 5, [0.0] * 5) == pytest.approx(1 / 252)
    assert greater_p_value([0.0] * 5, [0.0] * 5) == pytest.approx(1.0)


def test_the_hierarchy_wins_when_c_beats_both_flat_arms_with_high_success():
    decision = verdicts({"A": [0.0] * 5, "B": [0.1, 0.0, 0.05, 0.0, 0.0], "C": [1.0, 0.95, 0.9, 1.0, 0.85]})
    assert decision["hierarchy_wins"] is True
    assert decision["comparisons"]["C"]["p_values"] == pytest.approx({"A": 1 / 252, "B": 1 / 252})
    assert decision["comparisons"]["C"]["mean"] == pytest.approx(0.94)
    assert decision["line"].startswith("verdict: the hierarchy WINS")


def test_no_win_below_the_success_floor_or_against_an_equal_baseline():
    low = verdicts({"A": [0.0] * 5, "B": [0.0] * 5, "C": [0.6, 0.7, 0.8, 0.7, 0.6]})  # separated, mean 0.68
    assert low["comparisons"]["C"]["p_values"]["A"] < 0.05 and low["hierarchy_wins"] is False
    novelty_alone = verdicts({"A": [0.0] * 5, "B": [1.0, 0.9, 0.9, 1.0, 0.9], "C": [1.0, 0.9, 0.9, 1.0, 0.9]})
    assert novelty_alone["comparisons"]["C"]["p_values"]["B"] > 0.05 and novelty_alone["hierarchy_wins"] is False
    assert "does NOT win" in novelty_alone["line"]


def test_three_levels_are_reported_but_do_not_decide():
    decision = verdicts({"A": [0.0] * 5, "B": [0.0] * 5, "C": [0.0] * 5, "C3": [1.0] * 5})
    assert decision["comparisons"]["C3"]["wins"] is True and decision["hierarchy_wins"] is False
    assert "C3 (reported, not part of the decision)" in decision["line"]


def test_the_top_imagining_through_level_zero_decides_too():
    decision = verdicts({"A": [0.0] * 5, "B": [0.0] * 5, "C": [0.0] * 5, "D": [1.0, 0.95, 0.9, 1.0, 0.85]})
    assert decision["comparisons"]["D"]["wins"] is True and decision["hierarchy_wins"] is True
    assert verdicts({"A": [0.0] * 5, "B": [0.0] * 5, "D": [0.0] * 5})["hierarchy_wins"] is False


def test_no_verdict_without_the_arms_it_needs_and_a_note_when_seeds_are_too_few():
    assert verdicts({"A": [0.0] * 5, "C": [1.0] * 5})["hierarchy_wins"] is None
    three = verdicts({"A": [0.0] * 3, "B": [0.0] * 3, "C": [1.0] * 3})  # best possible p: 1 / C(6, 3) = 0.05
    assert three["hierarchy_wins"] is False and "no outcome reaches p < 0.05" in three["line"]
    one = verdicts({"A": [0.0], "B": [0.0], "C": [1.0]})  # a single seed cannot be permuted
    assert one["comparisons"]["C"]["p_values"] == {"A": 0.5, "B": 0.5} and one["hierarchy_wins"] is False
