"""The Settings struct: a few top-level values and one section per concern (``SECTIONS``), and
``FIELD_SECTION``, which maps every flat setting name to its section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeVar

import msgspec

from flighttoken.settings.base import CHECKOUT_ROOT, Section, SettingsError
from flighttoken.settings.faces import EngineSettings, ImageSettings, ModelSettings, QualitySettings
from flighttoken.settings.matching import DecisionSettings, GallerySettings, WatchlistSettings
from flighttoken.settings.service import (
    DatabaseSettings,
    DcsSettings,
    HttpSettings,
    LoggingSettings,
    OperationsSettings,
    PrivacySettings,
)

S = TypeVar("S", bound=Section)


def _section(cls: type[S]) -> S:
    return msgspec.field(default_factory=cls)


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
    dcs: DcsSettings = _section(DcsSettings)

    @property
    def production(self) -> bool:
        """Production mode: set explicitly, or implied by a real PostgreSQL (DATABASE_URL)."""
        return self.mode == "production" or (not self.mode and bool(self.database.database_url))

    def replace(self, **changes: object) -> Settings:
        """A copy with some settings changed, by flat name (``gate_threshold=0.5``) or whole section.

        Like ``msgspec.structs.replace``, the values are taken as given, not validated.
        """
        top, nested = group_by_section(changes)
        for section, fields in nested.items():
            current = top.get(section, getattr(self, section))
            assert isinstance(current, Section), f"{section} must be a {SECTIONS[section].__name__}"
            top[section] = msgspec.structs.replace(current, **fields)
        return msgspec.structs.replace(self, **top)


SECTIONS: dict[str, type[Section]] = {
    f.name: f.type for f in msgspec.structs.fields(Settings) if isinstance(f.type, type) and issubclass(f.type, Section)
}
FIELD_SECTION: dict[str, str] = {
    **{f.name: "" for f in msgspec.structs.fields(Settings) if f.name not in SECTIONS},
    **{f.name: section for section, cls in SECTIONS.items() for f in msgspec.structs.fields(cls)},
}
"""Every flat setting name -> the section holding it ("" for the top level)."""


def group_by_section(values: Mapping[str, object]) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
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
