"""Face engine speed: engine latency against raw onnxruntime time, and micro-batching throughput.

    .venv/bin/python -m ops.bench.engine [--iterations 120] [--rounds 4]

Latency: one caller, ``await engine.analyse(bytes)`` (decode, detection, quality, embedding and the
thread hops included) for a 640x480 one-face frame (an LFW photo on a grey canvas) and for t1.jpg
(6 faces). Raw: the same ``session.run`` calls on the same tensors (detector blob, aligned crop),
nothing else. Engine and raw runs are interleaved in random order so machine noise hits both alike;
the engine's own in-run session time is reported too. Throughput: 8 concurrent callers, the same
sessions with the micro-batcher on and off, alternated over rounds. Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import structlog
import uvloop

from flighttoken import executor
from flighttoken.faces.decode import decode_image
from flighttoken.faces.detect import find_faces
from flighttoken.faces.engine import FaceEngine
from flighttoken.settings import Settings, load_settings

TARGET_LATENCY_RATIO = 1.10
TARGET_BATCH_GAIN = 1.3


def err(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def one_face_frame(settings: Settings) -> bytes:
    return canvas_frame(Path(settings.faces_dir) / "lfw-train" / "Tony_Blair" / "Tony_Blair_0002.jpg")


def canvas_frame(photo: Path) -> bytes:
    """A 640x480 camera-like JPEG: the 250x250 LFW photo on a grey canvas."""
    img = cv2.imread(str(photo))
    if img is None:
        raise SystemExit(f"cannot read {photo}: set FLIGHTTOKEN_FACES_DIR")
    canvas = np.full((480, 640, 3), 120, np.uint8)
    canvas[115:365, 195:445] = img
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return buf.tobytes()


def six_face_frame() -> bytes:
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.submodule_search_locations
    return (Path(next(iter(spec.submodule_search_locations))) / "data" / "images" / "t1.jpg").read_bytes()


def stats_ms(samples: list[float]) -> dict[str, float]:
    a = np.array(samples) * 1000
    return {"median": round(float(np.median(a)), 2), "p99": round(float(np.percentile(a, 99)), 2),
            "mean": round(float(a.mean()), 2)}


def model_inputs(engine: FaceEngine, data: bytes) -> tuple[list[np.ndarray], np.ndarray, int]:
    """The exact tensors the engine feeds its sessions for this frame: detector blob(s), recogniser blob."""
    img, info = decode_image(data, engine.limits)
    det, rec = engine.detector, engine.recognizer
    det_blob, _ = det.prepare(img)
    det.reset_stats()
    dets, scene = find_faces(det, img, info.scale, engine.settings.quality.tailgating_size_ratio)
    assert scene.subject is not None, "benchmark frame has no face"
    # One detector blob stands for the frame only if it takes no half-size second look.
    assert det.reset_stats().calls == 1, "frame takes the second look"
    landmarks = dets.landmarks[scene.subject]
    det_blobs = [det_blob]
    rec_blob = rec.prepare([rec.align(img, landmarks)], flip=engine.flip)
    return det_blobs, rec_blob, len(dets)


async def latency(engine: FaceEngine, data: bytes, iterations: int) -> dict[str, object]:
    det_blobs, rec_blob, faces = model_inputs(engine, data)

    def raw() -> None:
        for blob in det_blobs:
            engine.detector.run(blob)
        engine.recognizer.run(rec_blob)

    for _ in range(5):  # warm-up: first runs allocate arenas
        await engine.analyse(data)
        raw()
    eng, raw_t, inline = [], [], []
    for _ in range(iterations):
        order = ["engine", "raw"]
        random.shuffle(order)
        for what in order:
            if what == "engine":
                engine.detector.reset_stats()
                engine.recognizer.reset_stats()
                t0 = time.perf_counter()
                await engine.analyse(data)
                eng.append(time.perf_counter() - t0)
                inline.append(engine.detector.reset_stats().seconds + engine.recognizer.reset_stats().seconds)
            else:
                t0 = time.perf_counter()
                raw()
                raw_t.append(time.perf_counter() - t0)
    e, r, i = stats_ms(eng), stats_ms(raw_t), stats_ms(inline)
    # Paired per-iteration ratio against the engine's own model time: robust to drift between runs.
    paired = float(np.median(np.array(eng) / np.array(inline)))
    return {"engine_ms": e, "raw_ms": r, "raw_inline_ms": i, "faces": faces,
            "ratio_median": round(e["median"] / r["median"], 3),
            "ratio_paired_inline": round(paired, 3)}


def recognizer_batch_scaling(engine: FaceEngine, iterations: int) -> dict[str, float]:
    """Raw recogniser time per face at batch 1 and 8: the ceiling of what batching can save."""
    rec = engine.recognizer
    crop = np.random.default_rng(0).integers(0, 255, (rec.crop_size, rec.crop_size, 3), dtype=np.uint8)
    blobs = {1: rec.prepare([crop], flip=False), 8: rec.prepare([crop] * 8, flip=False)}
    times: dict[int, list[float]] = {1: [], 8: []}
    for _ in range(iterations):
        for b, blob in blobs.items():
            t0 = time.perf_counter()
            rec.run(blob)
            times[b].append((time.perf_counter() - t0) / b)
    one, eight = float(np.median(times[1])) * 1000, float(np.median(times[8])) * 1000
    return {"per_face_ms_batch1": round(one, 2), "per_face_ms_batch8": round(eight, 2),
            "batch8_saving": round(1 - eight / one, 3)}


async def throughput(engine: FaceEngine, data: bytes, callers: int, per_caller: int) -> tuple[float, dict[int, int]]:
    if engine.batcher is not None:
        engine.batcher.reset_stats()

    async def caller() -> None:
        for _ in range(per_caller):
            await engine.analyse(data)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    fps = callers * per_caller / (time.perf_counter() - t0)
    sizes = engine.batcher.stats().sizes if engine.batcher is not None else {1: callers * per_caller}
    return fps, sizes


async def run(args: argparse.Namespace) -> dict[str, object]:
    settings = load_settings()
    engine = FaceEngine.load(settings)
    executor.configure()
    frames = {"one_face_640x480": one_face_frame(settings), "six_faces_t1": six_face_frame()}
    out: dict[str, object] = {"bench": "engine", "threads": settings.models.engine_threads,
                              "flip_average": settings.engine.flip_average,
                              "executor_workers": executor.DEFAULT_WORKERS}
    for name, data in frames.items():
        res = await latency(engine, data, args.iterations)
        out[name] = res
        err(f"{name}: engine {res['engine_ms']} raw {res['raw_ms']} ratio {res['ratio_median']} "
            f"(paired vs in-engine model time {res['ratio_paired_inline']})")

    scaling = recognizer_batch_scaling(engine, 20)
    out["recognizer_batch_scaling"] = scaling
    err(f"recogniser per face: batch 1 {scaling['per_face_ms_batch1']} ms, batch 8 {scaling['per_face_ms_batch8']} ms")

    # Same sessions, batching on vs off; the default settings' 2 ms wait.
    batched = FaceEngine(settings.replace(batch_max_size=max(settings.engine.batch_max_size, 8)),
                         engine.detector, engine.recognizer)
    unbatched = FaceEngine(settings.replace(batch_max_size=1), engine.detector, engine.recognizer)
    data = frames["one_face_640x480"]
    await throughput(batched, data, args.callers, 2)
    await throughput(unbatched, data, args.callers, 2)
    b_fps, u_fps, sizes_total = [], [], {}
    for rnd in range(args.rounds):
        pair = [("b", batched), ("u", unbatched)]
        if rnd % 2:
            pair.reverse()
        for tag, eng in pair:
            fps, sizes = await throughput(eng, data, args.callers, args.per_caller)
            (b_fps if tag == "b" else u_fps).append(fps)
            if tag == "b":
                for k, v in sizes.items():
                    sizes_total[k] = sizes_total.get(k, 0) + v
    bm, um = float(np.median(b_fps)), float(np.median(u_fps))
    out["throughput_8_callers"] = {"batched_fps": round(bm, 1), "unbatched_fps": round(um, 1),
                                   "gain": round(bm / um, 3), "batched_rounds": [round(x, 1) for x in b_fps],
                                   "unbatched_rounds": [round(x, 1) for x in u_fps],
                                   "batch_sizes": dict(sorted(sizes_total.items()))}
    err(f"throughput, {args.callers} callers: batched {bm:.1f}/s, unbatched {um:.1f}/s, gain {bm / um:.2f}; "
        f"batch sizes {dict(sorted(sizes_total.items()))}")
    one = out["one_face_640x480"]
    assert isinstance(one, dict)
    out["targets"] = {
        "latency_ratio_max": TARGET_LATENCY_RATIO, "latency_ratio": one["ratio_median"],
        "latency_met": one["ratio_median"] <= TARGET_LATENCY_RATIO,
        "batch_gain_min": TARGET_BATCH_GAIN, "batch_gain": round(bm / um, 3),
        "batch_gain_met": bm / um >= TARGET_BATCH_GAIN,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    # Logs to stderr: stdout carries only the result line.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    ap = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    ap.add_argument("--iterations", type=int, default=120, help="latency samples per frame")
    ap.add_argument("--rounds", type=int, default=4, help="alternating throughput rounds per mode")
    ap.add_argument("--callers", type=int, default=8)
    ap.add_argument("--per-caller", type=int, default=10)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = uvloop.run(run(args))  # the loop the service runs on
    result["seconds"] = round(time.perf_counter() - t0, 1)
    executor.shutdown()
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
