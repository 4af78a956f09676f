"""The day in one PNG: identify latency over time (with throughput), and boarding progress per flight."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from touchpoints.simulator.recorder import IDENTIFY_TOUCHPOINTS, Obs, boards, is_identify

COLOURS = {"kiosk": "#7f7f7f", "bag_drop": "#8c564b", "e_security_gate": "#9467bd", "e_channel": "#1f77b4",
           "lounge": "#2ca02c", "gate": "#d62728"}
MAX_POINTS = 20_000


def draw(obs: list[Obs], flights: list[str], events: list[tuple[float, int, str]], path: Path,
         title: str = "", pauses: Sequence[tuple[float, float]] = ()) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display; safe in threads and on servers
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    answered = [o for o in obs if o.status]
    step = max(1, len(answered) // MAX_POINTS)
    for tp in ("kiosk", *IDENTIFY_TOUCHPOINTS):
        mine = [o for o in answered if o.touchpoint == tp][::step]
        if mine:
            top.scatter([o.done for o in mine], [o.latency_ms for o in mine], s=6, alpha=0.5, color=COLOURS[tp],
                        label=tp.replace("_", "-"), rasterized=True, linewidths=0)
    ident = [o for o in answered if is_identify(o)]
    if ident:
        buckets: dict[int, list[float]] = defaultdict(list)
        for o in ident:
            buckets[int(o.done // 10)].append(o.latency_ms)
        keys = sorted(buckets)
        top.plot([k * 10 + 5 for k in keys], [np.percentile(buckets[k], 95) for k in keys], color="black", lw=1.2,
                 label="identify p95 (10 s)")
        rate = top.twinx()
        counts = defaultdict(int)
        for o in ident:
            counts[int(o.done // 5)] += 1
        ck = range(0, max(counts) + 1)
        rate.plot([k * 5 + 2.5 for k in ck], [counts.get(k, 0) / 5 for k in ck], color="#ff7f0e", lw=1, alpha=0.8)
        rate.set_ylabel("identifies / s (5 s)", color="#ff7f0e")
    for k, (a, b) in enumerate(pauses):
        top.axvspan(a, b, color="grey", alpha=0.15, lw=0, label="day paused: bare models timed" if k == 0 else None)
    top.set_yscale("log")
    top.set_ylabel("service latency, ms (log)")
    top.legend(loc="upper left", fontsize=8, markerscale=3, ncol=5)
    top.set_title(title or "Airport day: latency over time", fontsize=11)
    top.grid(True, which="both", alpha=0.2)

    boarded: dict[int, list[float]] = defaultdict(list)
    for o in answered:
        if boards(o):
            boarded[o.flight].append(o.done)
    cmap = plt.get_cmap("tab20")
    for i, code in enumerate(flights):
        times = sorted(boarded.get(i, []))
        if times:
            bottom.step([times[0], *times], [0, *range(1, len(times) + 1)], where="post", color=cmap(i % 20), lw=1,
                        label=code)
    for t, i, what in events:
        if what == "departed":
            bottom.axvline(t, color=cmap(i % 20), lw=0.6, ls=":", alpha=0.8)
    bottom.set_xlabel("seconds since the first arrival")
    bottom.set_ylabel("boarded (biometric)")
    bottom.set_title("Boarding progress per flight (dotted: departure, purge follows)", fontsize=10)
    if len(flights) <= 24:
        bottom.legend(loc="upper left", fontsize=7, ncol=min(8, max(1, len(flights))))
    bottom.grid(True, alpha=0.2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
