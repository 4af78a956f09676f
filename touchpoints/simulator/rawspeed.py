"""Raw model throughput on this machine: the ceiling the service's identify throughput is held to.

Runs only the detector's and the recogniser's ``session.run`` (the same ONNX files and thread
settings as the service, via ``FaceEngine``) on the tensors the engine makes from the simulation's
own photos: no decoding, alignment, quality checks, search, HTTP or database. In the service's own
engine configuration (its ``engine_threads``; batches only as large as its ``batch_max_size``), two
ways, and the best counts, so the ratio is never flattered by a weak baseline:

* sequential: one caller, detector then recogniser, photo after photo;
* two callers: the same from two threads at once (the service overlaps requests too);
* batched, only when the service batches (``batch_max_size`` > 1): the detector per photo and the
  recogniser on batches of ``batch_max_size`` crops, as the service's micro-batcher at best does.

Each measurement also says what the rest of the machine ran meanwhile (``other_cpu_s_per_s``) and
what the hypervisor stole (``steal_s_per_s``): raw is a fair ceiling only when both are near 0.

(Until issue 8's review the recogniser was also timed on batches of 8 with batching off in the
service: a configuration the service never runs, which held it to a ceiling it cannot reach.)
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np


def _prepare(engine: Any, photos: list[bytes]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    from flighttoken.faces.decode import decode_image

    items = []
    for data in photos:
        front = engine._front(data)
        if front.crop is None:
            continue
        img, _ = decode_image(data, engine.limits)
        det_blob, _ = engine.detector.prepare(img)
        items.append((det_blob, engine.recognizer.prepare([front.crop], flip=engine.flip), front.crop))
    return items


def _timed(seconds: float, one_round: Any) -> tuple[float, float]:
    """Repeat ``one_round`` (which returns the faces it processed) for about ``seconds``: (faces per
    second, CPU milliseconds per face). CPU is this process's, every thread, onnxruntime's included."""
    done, t0, cpu0 = 0, time.perf_counter(), time.process_time()
    while True:
        done += one_round()
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return done / elapsed, (time.process_time() - cpu0) * 1000 / done


def _machine_cpu_s() -> tuple[float, float] | None:
    """(CPU-seconds every process on this machine has used, seconds stolen by the hypervisor),
    from ``/proc/stat``; None off Linux."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _disturbance(machine0: tuple[float, float] | None, cpu0: float, wall0: float) -> dict[str, float]:
    """What the rest of the machine (PostgreSQL, the service, anything else) ran per second while
    this process measured, and what the hypervisor stole: raw is a fair ceiling when both are near 0."""
    machine1 = _machine_cpu_s()
    if machine0 is None or machine1 is None:
        return {}
    wall, ours = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"other_cpu_s_per_s": round(max(0.0, machine1[0] - machine0[0] - ours) / wall, 3),
            "steal_s_per_s": round((machine1[1] - machine0[1]) / wall, 3)}


def measure(engine: Any, photos: list[bytes], seconds: float = 6.0) -> dict[str, Any]:
    """Blocking; call through ``asyncio.to_thread``. ``seconds`` is the total, split between the modes."""
    items = _prepare(engine, photos)
    if not items:
        raise ValueError("no face found in the sample photos")
    det, rec = engine.detector, engine.recognizer
    batch = engine.settings.engine.batch_max_size  # the service's largest batch: 1 means it never batches
    batches = [(
        [d for d, _, _ in items[i:i + batch]],
        rec.prepare([c for _, _, c in items[i:i + batch]], flip=engine.flip),
    ) for i in range(0, len(items), batch)]

    def sequential() -> int:
        for d, r, _ in items:
            det.run(d)
            rec.run(r)
        return len(items)

    def batched() -> int:
        for dets, r in batches:
            for d in dets:
                det.run(d)
            rec.run(r)
        return len(items)

    def two_callers() -> int:
        threads = [threading.Thread(target=sequential) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return 2 * len(items)

    machine0, cpu0, wall0 = _machine_cpu_s(), time.process_time(), time.perf_counter()
    sequential()  # warm-up: the first runs allocate the sessions' arenas
    modes = {"sequential": sequential, "two_callers": two_callers}
    if batch > 1:
        modes["batched"] = batched
    share = seconds / len(modes)
    runs = {name: _timed(share, fn) for name, fn in modes.items()}
    best = max(runs, key=lambda k: runs[k][0])
    return {"faces_per_s": round(runs[best][0], 2), "best_mode": best, **_disturbance(machine0, cpu0, wall0),
            "modes": {k: round(v[0], 2) for k, v in runs.items()},
            "cpu_ms_per_face": round(min(v[1] for v in runs.values()), 2),
            "cpu_ms_per_face_by_mode": {k: round(v[1], 2) for k, v in runs.items()}, "photos": len(items),
            "engine_threads": engine.settings.models.engine_threads, "batch_max_size": batch}
