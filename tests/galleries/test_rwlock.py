"""The readers-writer lock: readers share, writers exclude, a waiting writer goes first."""

from __future__ import annotations

import random
import threading

from flighttoken.galleries.rwlock import RWLock


def test_rwlock_readers_share_and_writers_exclude() -> None:
    lock = RWLock()
    state = {"readers": 0, "writers": 0}
    guard = threading.Lock()
    violations: list[str] = []
    inside_together = threading.Barrier(3, timeout=30)  # a deadlock guard, not a timing check

    def check(kind: str) -> None:
        with guard:
            if kind == "w" and (state["readers"] or state["writers"] != 1):
                violations.append(f"writer with {state}")
            if kind == "r" and state["writers"]:
                violations.append(f"reader with {state}")

    def enter(key: str, delta: int) -> None:
        with guard:
            state[key] += delta

    def co_reader() -> None:  # three readers must all be inside at once to pass the barrier
        with lock.read():
            inside_together.wait()

    def worker(seed: int) -> None:
        r = random.Random(seed)
        for _ in range(300):
            if r.random() < 0.2:
                with lock.write():
                    enter("writers", 1)
                    check("w")
                    enter("writers", -1)
            else:
                with lock.read():
                    enter("readers", 1)
                    check("r")
                    enter("readers", -1)

    shared = [threading.Thread(target=co_reader) for _ in range(3)]
    mixed = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
    for t in shared + mixed:
        t.start()
    for t in shared + mixed:
        t.join()
    assert not violations


def test_rwlock_waiting_writer_goes_before_new_readers() -> None:
    lock = RWLock()
    order: list[str] = []
    release_first = threading.Event()
    first_in = threading.Event()

    def first_reader() -> None:
        with lock.read():
            first_in.set()
            release_first.wait()

    def writer() -> None:
        with lock.write():
            order.append("writer")

    def late_reader() -> None:
        with lock.read():
            order.append("late reader")

    t1 = threading.Thread(target=first_reader)
    t1.start()
    first_in.wait()
    tw = threading.Thread(target=writer)
    tw.start()
    while lock._writers_waiting == 0:  # the writer is queued behind the first reader
        threading.Event().wait(0.001)
    t2 = threading.Thread(target=late_reader)
    t2.start()
    release_first.set()
    for t in (t1, tw, t2):
        t.join()
    assert order == ["writer", "late reader"]


def test_try_read_never_waits_for_a_writer() -> None:
    lock = RWLock()
    with lock.try_read() as first, lock.try_read() as second:
        assert first and second  # readers share
    with lock.write(), lock.try_read() as acquired:
        assert not acquired
    with lock.try_read() as acquired:
        assert acquired  # and a refused attempt left nothing behind

