"""Balance statistics of a pendulum trace against a hand-made trace whose counts are known."""

import json

import numpy as np
import pytest


def hand_trace():
    """One episode at angles (degrees) 0, 8 and 12 moving away, 50 (a fall), 3, -9 moving away, -60 (a
    fall), -70, -40, -5, 20: torques and action values chosen per step."""
    degrees = np.array([0.0, 8.0, 12.0, 50.0, 3.0, -9.0, -60.0, -70.0, -40.0, -5.0, 20.0])
    velocity = np.array([0.0, 1.0, 1.0, 2.0, -1.0, -1.0, -2.0, -1.0, 1.0, 1.0, -1.0])
    radians = np.radians(degrees)
    source = np.stack([np.cos(radians), np.sin(radians), velocity], 1)
    actions = np.array([0.0, -0.5, -1.0, 0.0, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0])[:, None]
    grid = [-1.0, -0.5, 0.0, 0.5, 1.0]
    # columns: greedy, then Q at a = -1, -0.5, 0, 0.5, 1; a step's Q grows with the torque towards the top
    action_values = np.zeros((len(degrees), 6))
    for t, angle in enumerate(degrees):
        towards = -np.sign(angle) if angle else 1.0
        action_values[t, 1:] = [10.0 * towards * a + (t if towards * a > 0.75 else 0.0) for a in grid]
    values = np.arange(len(degrees), dtype=float)
    episode = {"entries": {"source": source.tolist()}, "actions": actions.tolist(), "values": values.tolist(),
               "action_values": action_values.tolist()}
    return {"episodes": [{"return": -42.0}], "trace": [episode],
            "continuous_actions": {"grid": grid, "return_scale": 20.0}}


def test_balance_stats_count_a_hand_made_trace():
    from scripts.balance_stats import balance_stats

    stats = balance_stats(hand_trace())
    assert stats["steps"] == 11 and stats["episodes"] == 1 and stats["mean_return"] == -42.0
    assert stats["steps_near_top"] == 5  # 0, 8, 3, -9, -5
    assert stats["falls"] == 2  # 50 after 8; -60 after -9 (-70 is no second fall, -40 is not beyond 45)
    assert stats["braking_steps"] == 3  # 8 and 12 moving away (up), -9 moving away (down)
    assert stats["torque_towards_top"] == pytest.approx((0.5 + 1.0 + 0.25) / 3)  # -9 degrees: +0.25 is up
    # Q(full) - Q(none) = 10 plus the step index at full torque: steps 1, 2, 5
    assert stats["q_full_minus_none"] == pytest.approx(10.0 + (1 + 2 + 5) / 3)
    assert stats["q_full_minus_half"] == pytest.approx(5.0 + (1 + 2 + 5) / 3)
    assert stats["q_full_minus_none_scaled"] == pytest.approx(stats["q_full_minus_none"] / 20.0)
    # the highest fifth of cos: the steps nearest the top (0, 3, -5 degrees: steps 0, 4, 9)
    assert stats["top_value"] == pytest.approx(np.mean([0.0, 4.0, 9.0]))


def test_balance_stats_main_writes_json_and_says_what_is_missing(tmp_path, capsys):
    from scripts import balance_stats
    from scripts.common import UserError

    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps(hand_trace()))
    out = tmp_path / "stats.json"
    balance_stats.main([str(trace), "--out", str(out)])
    assert json.loads(out.read_text())["traces"][str(trace)]["falls"] == 2
    assert "| falls from the top | 2 |" in capsys.readouterr().out
    no_trace = tmp_path / "no_trace.json"
    no_trace.write_text(json.dumps({"episodes": []}))
    with pytest.raises(SystemExit):
        balance_stats.main([str(no_trace)])
    assert "--trace" in capsys.readouterr().err
    coarse = hand_trace()
    coarse["continuous_actions"]["grid"] = [-1.0, 0.0, 1.0]
    coarse["trace"][0]["action_values"] = [row[:4] for row in coarse["trace"][0]["action_values"]]
    with pytest.raises(UserError, match="has no value 0.5"):
        balance_stats.balance_stats(coarse)
