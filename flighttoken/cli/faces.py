"""``flighttoken faces check IMAGE...``: what the engine sees in each photo, and whether it would pass.

The face engine is imported only when the command runs: every other command starts without it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from flighttoken.settings import Settings

if TYPE_CHECKING:
    from flighttoken.faces.engine import FaceAnalysis
    from flighttoken.faces.quality import QualityThresholds


def check_images(paths: Sequence[str | Path], settings: Settings, *, out: TextIO | None = None) -> int:
    """Print detection, quality and template facts per image; 0 only if every image passes.

    Exit codes: 0 all pass, 1 some image fails (unreadable, not decodable, no face or a quality
    gate), 2 the models cannot be loaded.
    """
    from flighttoken.faces.engine import FaceEngine
    from flighttoken.faces.errors import ImageError, ModelLoadError

    stream: TextIO = out or sys.stdout  # sys.stdout is typed "TextIO | Any": name the type here
    try:
        engine = FaceEngine.load(settings)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=stream)
        return 2
    d = settings.decisions
    print(f"detector {engine.detector.model_id}, recogniser {engine.model_id}, "
          f"flip-average {'on' if engine.flip else 'off'}, verify threshold {d.verify_threshold}, "
          f"floors gate {d.gate_threshold} / e-channel {d.e_channel_threshold} / lounge {d.lounge_threshold}",
          file=stream)
    failed = 0
    for path in paths:
        print(f"\n{path}", file=stream)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            print(f"  FAIL unreadable: {exc.strerror or exc}", file=stream)
            failed += 1
            continue
        try:
            result = engine.analyse_sync(data)
        except ImageError as exc:
            print(f"  FAIL {exc.code}: {exc.detail}", file=stream)
            failed += 1
            continue
        _print_analysis(result, engine.thresholds, stream)
        failed += not result.quality_ok
    print(f"\n{len(paths) - failed}/{len(paths)} passed", file=stream)
    return 1 if failed else 0


def _print_analysis(r: FaceAnalysis, t: QualityThresholds, out: TextIO) -> None:
    img = r.image
    scaled = f", decoded at 1/{img.scale:g}" if img.scale != 1 else ""
    print(f"  image: {img.format} {img.width}x{img.height}{scaled}", file=out)
    if r.subject is None or r.quality is None:
        print("  faces: none", file=out)
        print("  verdict: FAIL no_face", file=out)
        return
    s, q = r.subject, r.quality
    box = ", ".join(f"{v:.0f}" for v in s.box)
    print(f"  faces: {1 + r.other_faces} (subject + {r.other_faces} other)"
          f"{'  TAILGATING: another face of comparable size' if r.tailgating else ''}", file=out)
    print(f"  subject: box [{box}]  detector score {s.det_score:.3f}  inter-eye {s.inter_eye_px:.1f} px", file=out)
    checks = [
        ("detector score", f"{q.det_score:.3f}", f">= {t.min_det_score}", q.det_score >= t.min_det_score),
        ("inter-eye px", f"{q.inter_eye_px:.1f}", f">= {t.min_inter_eye_px}", q.inter_eye_px >= t.min_inter_eye_px),
        ("sharpness", f"{q.sharpness:.1f}", f">= {t.min_sharpness}", q.sharpness >= t.min_sharpness),
        ("brightness", f"{q.brightness:.1f}", f"{t.min_brightness}-{t.max_brightness}",
         t.min_brightness <= q.brightness <= t.max_brightness),
        ("clipped dark/bright", f"{q.dark_fraction:.3f}/{q.bright_fraction:.3f}", f"<= {t.max_clipped_fraction}",
         max(q.dark_fraction, q.bright_fraction) <= t.max_clipped_fraction),
        ("yaw deg", f"{q.yaw_deg:+.1f}", f"|x| <= {t.max_yaw_deg}", abs(q.yaw_deg) <= t.max_yaw_deg),
        ("roll deg", f"{q.roll_deg:+.1f}", f"|x| <= {t.max_roll_deg}", abs(q.roll_deg) <= t.max_roll_deg),
    ]
    for name, value, limit, ok in checks:
        print(f"    {name:<20} {value:>12}  ({limit})  {'ok' if ok else 'FAIL'}", file=out)
    if r.template is not None:
        print(f"  template: {r.template.model_id}, {r.template.dim}-d, "
              f"norm before normalisation {r.template_norm:.2f}", file=out)
    verdict = "PASS" if r.quality_ok else "FAIL " + ", ".join(r.quality_failures)
    print(f"  verdict: {verdict}", file=out)


def cmd_faces_check(settings: Settings, args: argparse.Namespace) -> int:
    return check_images(args.images, settings)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    faces = sub.add_parser("faces", help="face engine tools").add_subparsers(dest="faces_command", required=True)
    check = faces.add_parser("check", help="print detection, quality and template facts for images")
    check.add_argument("images", nargs="+")
    check.set_defaults(run=cmd_faces_check)
