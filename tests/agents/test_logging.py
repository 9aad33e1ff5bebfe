"""The logger's event files: a run resumed within the second its last event file was opened keeps
both files, so that nothing logged before the resume is lost."""

import tensorboardX.event_file_writer as event_file_writer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.logging import Logger


def test_loggers_opened_in_the_same_second_write_separate_files(tmp_path, monkeypatch):
    second = event_file_writer.time.time()
    monkeypatch.setattr(event_file_writer.time, "time", lambda: second)  # both files open "at once"
    for resume_step, step in ((0, 5), (5, 9)):
        logger = Logger(tmp_path, resume_step=resume_step)
        logger.scalars({"episode/return": float(step)}, step)
        logger.close()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    assert [event.step for event in accumulator.Scalars("episode/return")] == [5, 9]
