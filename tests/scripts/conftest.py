"""What the benchmark scripts' tests share: a stand-in trainer that logs evaluations and checkpoints
without building a model."""

import json
from pathlib import Path

import pytest

from agents.logging import read_metrics


class StandInTrainer:
    """Stands in for ``agents.trainer.Trainer`` without building anything: a run logs, every
    ``run.eval_every`` steps from its last checkpoint on, an evaluation whose numbers depend only on
    its number of levels, seed and step, and a checkpoint there (a directory named by the step). ``budget``
    evaluations in all, then it stops as SIGTERM would (None: no limit); ``started`` records each run's
    ``(name, first step)``."""

    budget = None
    started = []

    def __init__(self, config, logdir, make_envs, say=print, progress=True, **unused):
        self.config, self.logdir, self.stopped_by = config, Path(logdir), None

    def run(self, steps, resume=False):
        checkpoints = self.logdir / "checkpoints"
        assert resume == checkpoints.is_dir()
        step = max(int(path.name) for path in checkpoints.iterdir()) if resume else 0
        rows = [row for row in read_metrics(self.logdir) if row["step"] <= step]  # as agents.logging drops them
        StandInTrainer.started.append((f"{self.logdir.parent.name}/{self.logdir.name}", step))
        every, seed, levels = self.config["run"]["eval_every"], self.config["seed"], self.config["hierarchy"]["levels"]
        while step < steps:
            if StandInTrainer.budget == 0:
                self.stopped_by = "SIGTERM"
                break
            step += every
            rate = (levels * step // every + seed) % 5 / 4
            rows += [{"step": step - 1, "episode/return": rate, "coverage/cells_total": step / 10 + seed},
                     {"step": step, "eval/return_mean": rate, "eval/success_rate": min(rate, 1.0),
                      "eval/elapsed_seconds": step / 100}]
            (checkpoints / str(step)).mkdir(parents=True)
            StandInTrainer.budget = None if StandInTrainer.budget is None else StandInTrainer.budget - 1
        (self.logdir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    import agents.multi_seed  # noqa: F401 - before the patch: imported under it, it would keep the stand-in for good
    import agents.trainer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(agents.trainer, "Trainer", StandInTrainer)
    monkeypatch.setattr(StandInTrainer, "budget", None)
    monkeypatch.setattr(StandInTrainer, "started", [])
    return StandInTrainer
