"""Ctrl-C and SIGTERM as a request to stop a training loop cleanly; a second Ctrl-C aborts at once."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from typing import Callable

ABORT_EXIT_CODE = 130  # what a shell reports for a process ended by SIGINT


class StopRequest:
    """Turns the first Ctrl-C or SIGTERM into a request to stop cleanly; a second Ctrl-C aborts.

    Python runs signal handlers only between bytecodes of the main thread, never during a long
    XLA compilation. So the signals also go to a wake-up socket (written by the C-level handler,
    at once) that a watcher thread reads: it acknowledges the first and ends the process on the
    second Ctrl-C, whatever the main thread is doing. The last checkpoint stays intact (orbax
    writes atomically) and the run directory's lock dies with the process.
    """

    def __init__(self, say: Callable[[str], None] = print):
        self.requested: str | None = None
        self.say = say

    def _handle(self, signum, frame):
        self.requested = self.requested or signal.Signals(signum).name

    def _watch(self, reader: socket.socket) -> None:
        with reader:
            while data := reader.recv(64):  # empty once the writer is closed
                self._on_signals(data)

    def _on_signals(self, data: bytes) -> None:
        for signum in data:
            if signum not in (signal.SIGINT, signal.SIGTERM):
                continue
            if signum == signal.SIGINT and self._acknowledged:
                print("\naborted by a second Ctrl-C; the last checkpoint is intact", file=sys.stderr, flush=True)
                os._exit(ABORT_EXIT_CODE)
            self.requested = self.requested or signal.Signals(signum).name
            if not self._acknowledged:
                self._acknowledged = True
                self.say(f"{self.requested}: stopping after this step with a checkpoint "
                         "(Ctrl-C again to abort at once)")

    def __enter__(self):
        self.previous, self._acknowledged, self._writer = {}, False, None
        if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
            return self
        self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        self._previous_wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self._writer = writer
        threading.Thread(target=self._watch, args=(reader,), daemon=True, name="stop-request").start()
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self._writer is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            self._writer.close()  # ends the watcher
        return False
