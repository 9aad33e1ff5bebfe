"""The loop's schedule: updates due at the train ratio, periodic work at multiples of its interval."""

from agents.schedule import crossed_multiple, reached, updates_due


def test_updates_due_start_after_prefill_and_follow_the_train_ratio():
    # 64 replayed steps per update, 32 replayed steps per env step: one update per 2 env steps
    assert updates_due(99, prefill=100, train_ratio=32, batch_steps=64) == 0
    assert updates_due(100, prefill=100, train_ratio=32, batch_steps=64) == 1
    assert updates_due(101, prefill=100, train_ratio=32, batch_steps=64) == 1
    assert updates_due(102, prefill=100, train_ratio=32, batch_steps=64) == 2


def test_crossed_multiple_fires_once_per_interval_and_never_when_off():
    assert crossed_multiple(100, before=96, now=100) and crossed_multiple(100, before=98, now=102)
    assert not crossed_multiple(100, before=100, now=104)
    assert not crossed_multiple(0, before=0, now=1000)


def test_reached_fires_on_the_step_that_reaches_the_value():
    assert reached(100, before=98, now=102) and reached(100, before=96, now=100)
    assert not reached(100, before=100, now=104) and not reached(100, before=94, now=98)
