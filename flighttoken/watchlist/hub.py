"""In-process fan-out of alerts to every open alert stream on this instance.

``publish`` is the single way in: screening calls it once an alert has committed, and a
LISTEN/NOTIFY handler (cross-instance delivery, issue 9) calls it for alerts raised elsewhere —
see ``watchlist.sync``. An alert id already published is dropped, so both paths may deliver the
same alert. A subscriber that falls behind is cut off rather than slowing anyone down; its console
reconnects with ``Last-Event-ID`` and the stream replays what it missed from PostgreSQL.

``end_streams_of`` ends the streams of one device at once: its key was disabled or rotated (on this
instance or, through a ``device_changed`` sync event, on another), and a stream must not outlive
the key that opened it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from flighttoken.watchlist.schemas import Alert

_RECENT = 4096  # alert ids remembered for de-duplication


class Subscription:
    def __init__(self, size: int, device_id: uuid.UUID | None) -> None:
        self.queue: asyncio.Queue[Alert | None] = asyncio.Queue(size)
        self.device_id = device_id
        self.lagged = False
        self.ended = False

    def offer(self, alert: Alert | None) -> None:
        try:
            self.queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.lagged = True


class AlertHub:
    def __init__(self, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._recent: deque[int] = deque(maxlen=_RECENT)
        self._recent_set: set[int] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @contextmanager
    def subscribe(self, device_id: uuid.UUID | None = None) -> Iterator[Subscription]:
        sub = Subscription(self._queue_size, device_id)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    def publish(self, alert: Alert) -> bool:
        """Deliver to every subscriber; False when this alert id was already published."""
        if alert.id in self._recent_set:
            return False
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(alert.id)
        self._recent_set.add(alert.id)
        for sub in list(self._subscribers):
            sub.offer(alert)
        return True

    def end_streams_of(self, device_id: uuid.UUID) -> int:
        """End every stream this device opened (its key changed); returns how many."""
        ended = [sub for sub in self._subscribers if sub.device_id == device_id]
        for sub in ended:
            sub.ended = True
            sub.offer(None)  # wakes the stream; a full queue is woken by its next item or heartbeat
        return len(ended)

    def close(self) -> None:
        """End every stream (shutdown): consoles reconnect to another instance."""
        for sub in list(self._subscribers):
            sub.offer(None)
