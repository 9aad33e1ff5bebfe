"""What ``scripts.evaluate`` writes and prints, from hand-made episodes (the run itself: test_train)."""

from agents.evaluation import evaluation_scalars
from envs.collector import Episode
from scripts.evaluate import evaluation_result, summary_line


def test_success_rate_is_reported_where_the_environment_reports_success():
    episodes = [Episode(0, 1.0, 30, True), Episode(0, 0.0, 200, False)]
    result = evaluation_result(evaluation_scalars(episodes), episodes, step=5000, seed=7)
    assert result["success_rate"] == 0.5 and result["successes"] == [True, False]
    assert summary_line(result) == "step 5,000: return 0.50 ± 0.50, success rate 0.50 over 2 episodes (seed 7)"


def test_no_success_rate_is_null_and_said_not_zero():
    episodes = [Episode(0, 500.0, 500, None), Episode(0, 20.0, 20, None)]
    result = evaluation_result(evaluation_scalars(episodes), episodes, step=100, seed=1)
    assert result["success_rate"] is None and result["successes"] is None
    assert "no success rate (the environment reports no info['success']" in summary_line(result)
