"""Service settings: read once from ``FLIGHTTOKEN_*`` environment variables into one Struct of sections.

Every setting keeps its flat name (``settings.decisions.gate_threshold``) and maps to
``FLIGHTTOKEN_<FLAT NAME IN UPPER CASE>``; ``DATABASE_URL`` is also honoured because that is what
platforms and CI export. A bad value stops start-up with one line that names the variable, never a
traceback. Ranges are ``msgspec.Meta`` constraints on the section fields; ``checks.py`` holds the
rest. Figures measured for the defaults are in ``ops/results/``, not in the docstrings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

import msgspec

from flighttoken.settings.base import CHECKOUT_ROOT, ENV_PREFIX, Section, SettingsError, env_name
from flighttoken.settings.checks import check, watchlist_touchpoints
from flighttoken.settings.faces import (
    EngineSettings,
    ImageSettings,
    ModelSettings,
    QualitySettings,
    bundled_model_dir,
)
from flighttoken.settings.matching import (
    WATCHLIST_TOUCHPOINT_KINDS,
    DecisionSettings,
    GallerySettings,
    WatchlistSettings,
)
from flighttoken.settings.service import (
    DatabaseSettings,
    HttpSettings,
    LoggingSettings,
    OperationsSettings,
    PrivacySettings,
)

__all__ = [
    "CHECKOUT_ROOT", "ENV_PREFIX", "FIELD_SECTION", "SECTIONS", "WATCHLIST_TOUCHPOINT_KINDS", "DatabaseSettings",
    "DecisionSettings", "EngineSettings", "GallerySettings", "HttpSettings", "ImageSettings", "LoggingSettings",
    "ModelSettings", "OperationsSettings", "PrivacySettings", "QualitySettings", "Settings", "SettingsError",
    "WatchlistSettings", "bundled_model_dir", "env_name", "load_settings", "watchlist_touchpoints",
]


def _section(cls: type[Section]) -> Section:
    return msgspec.field(default_factory=cls)  # type: ignore[return-value]


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    mode: Literal["", "production", "development"] = ""
    """production: refuse to start with development defaults (no master key, --demo, an open /metrics);
    development: allow them. Empty: production whenever DATABASE_URL is set, development for the
    embedded database (flighttoken/production.py)."""
    faces_dir: str = str(CHECKOUT_ROOT.parent / "shared" / "faces")
    """Test and benchmark face photos."""

    database: DatabaseSettings = _section(DatabaseSettings)
    http: HttpSettings = _section(HttpSettings)
    logging: LoggingSettings = _section(LoggingSettings)
    models: ModelSettings = _section(ModelSettings)
    images: ImageSettings = _section(ImageSettings)
    quality: QualitySettings = _section(QualitySettings)
    engine: EngineSettings = _section(EngineSettings)
    decisions: DecisionSettings = _section(DecisionSettings)
    galleries: GallerySettings = _section(GallerySettings)
    privacy: PrivacySettings = _section(PrivacySettings)
    operations: OperationsSettings = _section(OperationsSettings)
    watchlist: WatchlistSettings = _section(WatchlistSettings)

    @property
    def production(self) -> bool:
        """Production mode: set explicitly, or implied by a real PostgreSQL (DATABASE_URL)."""
        return self.mode == "production" or (not self.mode and bool(self.database.database_url))

    def replace(self, **changes: object) -> Settings:
        """A copy with some settings changed, by flat name (``gate_threshold=0.5``) or whole section.

        Like ``msgspec.structs.replace``, the values are taken as given, not validated.
        """
        top, nested = _group(changes)
        for section, fields in nested.items():
            top[section] = msgspec.structs.replace(top.get(section, getattr(self, section)), **fields)
        return msgspec.structs.replace(self, **top)


SECTIONS: dict[str, type[Section]] = {
    f.name: f.type for f in msgspec.structs.fields(Settings) if isinstance(f.type, type) and issubclass(f.type, Section)
}
FIELD_SECTION: dict[str, str] = {
    **{f.name: "" for f in msgspec.structs.fields(Settings) if f.name not in SECTIONS},
    **{f.name: section for section, cls in SECTIONS.items() for f in msgspec.structs.fields(cls)},
}
"""Every flat setting name -> the section holding it ("" for the top level)."""


def _group(values: Mapping[str, object]) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """Split flat names (and whole sections) into top-level values and per-section field values."""
    top: dict[str, object] = {}
    nested: dict[str, dict[str, object]] = {}
    for key, value in values.items():
        if key in SECTIONS:
            top[key] = value
        elif key not in FIELD_SECTION:
            raise SettingsError(f"{key} is not a FlightToken setting (typo?)")
        elif FIELD_SECTION[key]:
            nested.setdefault(FIELD_SECTION[key], {})[key] = value
        else:
            top[key] = value
    return top, nested


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from the environment, validating every value.

    ``overrides`` (already typed values, by flat name or whole section) win over the environment;
    tests use them.
    """
    environ = os.environ if environ is None else environ
    unknown = sorted(k for k in environ
                     if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX):].lower() not in FIELD_SECTION)
    if unknown:
        raise SettingsError(f"{unknown[0]} is not a FlightToken setting (typo?)")
    found = {}
    for field in FIELD_SECTION:
        for name in (ENV_PREFIX + field.upper(), env_name(field)):
            if name in environ:
                found[field] = environ[name]
                break
    raw, nested = _group(found)
    top, over = _group(overrides)
    for section, value in top.items():
        if section in SECTIONS:  # a whole section given: its fields win over the environment's
            nested.setdefault(section, {}).update(msgspec.structs.asdict(value))  # type: ignore[arg-type]
        else:
            raw[section] = value
    for section, fields in over.items():
        nested.setdefault(section, {}).update(fields)
    raw.update(nested)
    try:
        # strict=False lets "8000" become 8000: environment values are always strings.
        settings = msgspec.convert(raw, type=Settings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = message.rsplit("$.", 1)[-1].rstrip("`").rsplit(".", 1)[-1] if "$." in message else ""
        where = env_name(field) if field in FIELD_SECTION else "a FlightToken setting"
        raise SettingsError(f"{where}: {message.split(' - at ')[0]}") from None
    check(settings)
    return settings
