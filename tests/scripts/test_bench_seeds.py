"""The seeds-throughput benchmark's rates, against numbers worked out by hand."""

import json

import pytest

from scripts.bench_seeds import aggregate, steady_counts


def test_steady_counts_leave_out_the_windows_that_compile(tmp_path):
    rows = [  # windows of 100 env steps: prefill, the first update (train step compiled), the first
        # policy steps (policy step compiled), then two measured windows
        {"step": 100, "throughput/env_steps_per_second": 50.0, "throughput/updates": 0},
        {"step": 200, "throughput/env_steps_per_second": 1.0, "throughput/updates": 1},
        {"step": 300, "throughput/env_steps_per_second": 2.0, "throughput/updates": 101},
        {"step": 400, "throughput/env_steps_per_second": 20.0, "throughput/updates": 201},  # 5 s
        {"step": 500, "throughput/env_steps_per_second": 10.0, "throughput/updates": 301},  # 10 s
        {"step": 500, "episode/return": 9.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    counts = steady_counts(tmp_path)
    assert (counts["updates"], counts["env_steps"], counts["seconds"]) == (200, 200, pytest.approx(15.0))
    assert counts["updates_per_second"] == pytest.approx(200 / 15)


def test_aggregate_counts_every_seed_over_the_slowest_seeds_time():
    per_seed = {"0": {"updates": 100, "env_steps": 400, "seconds": 5.0},
                "1": {"updates": 100, "env_steps": 400, "seconds": 10.0}}
    assert aggregate(per_seed) == {"updates_per_second": 20.0, "env_steps_per_second": 80.0}
