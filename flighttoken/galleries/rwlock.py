"""The readers-writer lock a gallery's searches share and its writes take alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["RWLock"]


class RWLock:
    """Writer-preferring readers-writer lock (not reentrant).

    Writers are rare (enrolments, departures) and readers constant (every touchpoint), so a
    waiting writer blocks new readers; otherwise a steady stream of searches could starve it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def try_read(self) -> Iterator[bool]:
        """Like ``read`` but never waits: yields False (holding nothing) if a writer is in or queued."""
        with self._cond:
            if self._writer or self._writers_waiting:
                acquired = False
            else:
                self._readers += 1
                acquired = True
        try:
            yield acquired
        finally:
            if acquired:
                with self._cond:
                    self._readers -= 1
                    if self._readers == 0:
                        self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            except BaseException:
                # Interrupted while waiting: readers held back for us must be let go.
                self._writers_waiting -= 1
                self._cond.notify_all()
                raise
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
