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

import msgspec

from flighttoken.settings.base import CHECKOUT_ROOT, ENV_PREFIX, SettingsError, env_name
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
from flighttoken.settings.root import FIELD_SECTION, SECTIONS, Settings, group_by_section
from flighttoken.settings.service import (
    DatabaseSettings,
    DcsSettings,
    HttpSettings,
    LoggingSettings,
    OperationsSettings,
    PrivacySettings,
)

__all__ = [
    "CHECKOUT_ROOT", "ENV_PREFIX", "FIELD_SECTION", "SECTIONS", "WATCHLIST_TOUCHPOINT_KINDS", "DatabaseSettings",
    "DcsSettings",
    "DecisionSettings", "EngineSettings", "GallerySettings", "HttpSettings", "ImageSettings", "LoggingSettings",
    "ModelSettings", "OperationsSettings", "PrivacySettings", "QualitySettings", "Settings", "SettingsError",
    "WatchlistSettings", "bundled_model_dir", "env_name", "load_settings", "watchlist_touchpoints",
]




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
    raw, nested = group_by_section(found)
    top, over = group_by_section(overrides)
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
