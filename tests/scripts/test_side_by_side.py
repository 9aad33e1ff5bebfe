"""The benchmark scripts' side-by-side runner: a stop passed on to runs in their own processes."""

import os
import signal
import threading
import time

from scripts.side_by_side import REPEAT_STOP_SECONDS, StopSignals, run_side_by_side


def test_sigterm_side_by_side_stops_the_workers_calls_and_starts_no_further_one():
    """SIGTERM to this process while two workers run: they survive it (however early it comes, even
    before their handlers are set), the calls they were running end, and no queued call starts.
    Each call outlasts the stop's repeat period, so a repeat reaches every worker while it runs."""
    stop_soon = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    started, before = time.time(), signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        stop_soon.start()
        results = run_side_by_side(time.sleep, {index: (REPEAT_STOP_SECONDS + 1,) for index in range(6)}, 2, stop=stop)
    assert stop.requested == "SIGTERM" and len(stop.workers) == 2
    assert set(results) <= {0, 1} and time.time() - started < 60
    assert signal.getsignal(signal.SIGTERM) is before  # this process's handler is back
