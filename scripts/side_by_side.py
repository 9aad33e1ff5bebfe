"""Calls side by side, each in its own single-threaded spawned process, and how a benchmark stops
them: Ctrl-C or SIGTERM stops every run with a checkpoint and starts no further one."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Hashable, Iterator, Mapping

from scripts.common import SIGNAL_EXIT_CODES

# One XLA thread per run: with several jobs, the runs share the cores instead of fighting over them.
SINGLE_THREADED_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
REPEAT_STOP_SECONDS = 2.0  # how often a requested stop is passed on again, until every run has stopped
ABORT_EXIT_CODE = 130  # a second Ctrl-C, as agents.stop_request


class StopSignals:
    """Ctrl-C or SIGTERM while a benchmark trains: every run stops with a checkpoint, no further run
    starts (``requested`` names the signal).

    The first signal, or ``request(name)`` for a run that one stopped, is passed on at once as SIGTERM
    to the worker processes of ``run_side_by_side`` (``workers``; not to other children, such as an
    in-process run's environment workers), and again every ``REPEAT_STOP_SECONDS`` to them and to this
    process until the block ends: a run whose trainer was still being built when it came (its own handler not yet
    in place) gets one once its loop runs. Repeating is safe because a second SIGTERM, unlike a second
    Ctrl-C, never aborts a run. A second Ctrl-C here aborts at once, as it does a run.
    """

    def __init__(self):
        self.requested: str | None = None
        self._done = threading.Event()
        self._repeater: threading.Thread | None = None
        self._previous: dict = {}
        self.workers: set[int] = set()  # the pids a stop is passed on to, besides this process

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
            self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> bool:
        self._done.set()
        if self._repeater is not None:
            self._repeater.join()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.requested:
            print("\naborted by a second Ctrl-C; every run's last checkpoint is intact", file=sys.stderr, flush=True)
            os._exit(ABORT_EXIT_CODE)
        if not self.requested:
            print(f"{signal.Signals(signum).name}: stopping every run with a checkpoint (Ctrl-C again to abort at "
                  "once)", flush=True)
        self.request(signal.Signals(signum).name)

    def request(self, name: str | None) -> None:
        """Stop (``name``: the signal's name; None does nothing)."""
        if not name or self.requested:
            return
        self.requested = name
        self._pass_on(to_self=False)
        self._repeater = threading.Thread(target=self._repeat, daemon=True, name="stop-repeater")
        self._repeater.start()

    def _repeat(self) -> None:
        while not self._done.wait(REPEAT_STOP_SECONDS):
            self._pass_on(to_self=True)

    def _pass_on(self, to_self: bool) -> None:
        for pid in [*self.workers, *[os.getpid()] * to_self]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


_worker_stopped: list[str] = []  # in a worker process: the signals it got outside a run


def _start_worker() -> None:
    """A worker notes Ctrl-C and SIGTERM that come while no run is training (a run's trainer takes
    them while it trains), instead of dying of them; it then starts no further call."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: _worker_stopped.append(signal.Signals(signum).name))


def _call_unless_stopped(function: Callable[..., Any], arguments: tuple) -> tuple[bool, Any]:
    """``(True, function(*arguments))``, or ``(False, None)`` in a worker that was stopped. A call that
    returns a signal's name (``train_run`` stopped by it) stops the worker too."""
    if _worker_stopped:
        return False, None
    result = function(*arguments)
    if isinstance(result, str) and result in SIGNAL_EXIT_CODES:
        _worker_stopped.append(result)
    return True, result


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ctrl-C and SIGTERM ignored: processes spawned now inherit that, so a worker never dies of one
    before ``_start_worker`` has set its handlers."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_side_by_side(function: Callable[..., Any], calls: Mapping[Hashable, tuple], jobs: int,
                     report: Callable[[Hashable, Any], None] = lambda key, result: None,
                     stop: StopSignals | None = None) -> dict:
    """``function(*calls[key])`` for every key, ``jobs`` at a time, each job in its own single-threaded
    spawned process (``jobs <= 1``: here, one after another); ``report(key, result)`` as each ends.
    With ``stop`` (entered by the caller), no call starts once a stop is requested, the workers get
    Ctrl-C and SIGTERM passed on, and an error in one call stops the others: the results hold the
    calls that ran."""
    results = {}
    if jobs <= 1:
        for key, arguments in calls.items():
            if stop is not None and stop.requested:
                break
            results[key] = function(*arguments)
            report(key, results[key])
        return results
    # Spawned workers read XLA_FLAGS when they import jax; this process's jax is already set up.
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SINGLE_THREADED_XLA}".strip()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker) as pool:
        before = set(multiprocessing.active_children())
        with _signals_ignored() if stop is not None else contextlib.nullcontext():
            futures = {pool.submit(_call_unless_stopped, function, arguments): key for key, arguments in calls.items()}
        if stop is not None:  # the pool spawns its workers as calls are submitted
            stop.workers = {child.pid for child in set(multiprocessing.active_children()) - before}
        try:
            _collect(futures, results, report, stop)
        except BaseException:
            if stop is not None:
                stop.request("SIGTERM")  # the other runs stop with a checkpoint instead of running on
            raise
    return results


def _collect(futures: dict, results: dict, report: Callable[[Hashable, Any], None], stop: StopSignals | None) -> None:
    """Results in ``results`` and ``report`` as the calls end; the calls not started yet are cancelled
    once a stop is requested."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
        for future in sorted(done, key=list(futures).index):
            if future.cancelled():
                continue
            if stop is not None and stop.requested and isinstance(future.exception(), BrokenProcessPool):
                continue  # a worker aborted by a second Ctrl-C: its run keeps its last checkpoint
            started, result = future.result()
            if started:
                results[futures[future]] = result
                report(futures[future], result)
        if stop is not None and stop.requested:
            for future in pending:
                future.cancel()
