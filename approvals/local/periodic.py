"""A timer of the local stack: plays what AWS runs on a schedule."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """A daemon thread that calls ``tick`` every ``interval`` seconds until stopped (first
    at once if ``at_start``); a failing tick is logged and the next one runs all the same."""

    def __init__(
        self, name: str, interval: float, tick: Callable[[], object], *, at_start: bool = False
    ) -> None:
        self._interval = interval
        self._tick = tick
        self._at_start = at_start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        if self._at_start:
            self._call()
        while not self._stop.wait(self._interval):
            self._call()

    def _call(self) -> None:
        try:
            self._tick()
        except Exception:
            log.exception("%s failed", self._thread.name)

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Ends the ticks after the one under way, if any (see :meth:`stop`)."""
        self._stop.set()

    def stop(self) -> None:
        self.request_stop()
        self._thread.join(timeout=10)
