"""The checks a single field's ``msgspec.Meta`` constraint cannot express: relations between fields,
values with a gap, and names looked up elsewhere (time zones, device kinds)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flighttoken.settings.base import SettingsError, env_name
from flighttoken.settings.matching import WATCHLIST_TOUCHPOINT_KINDS

if TYPE_CHECKING:
    from flighttoken.settings.root import Settings


def check(s: Settings) -> None:
    """Raise SettingsError naming the first variable that is wrong."""
    http, db, quality = s.http, s.database, s.quality
    if http.authority_port == http.port:
        raise SettingsError(f"{env_name('authority_port')}: must differ from {env_name('port')}")
    if db.db_pool_max < db.db_pool_min:
        raise SettingsError(f"{env_name('db_pool_max')}: must be >= {env_name('db_pool_min')} >= 1")
    if quality.quality_max_brightness <= quality.quality_min_brightness:
        raise SettingsError(f"{env_name('quality_max_brightness')}: must be above "
                            f"{env_name('quality_min_brightness')}, both within 0-255")
    if s.dcs.dcs_lease_s <= s.dcs.dcs_timeout_s:
        raise SettingsError(f"{env_name('dcs_lease_s')}: must exceed {env_name('dcs_timeout_s')} (a claim must "
                            "outlive the delivery it covers)")
    if s.dcs.dcs_backoff_cap_s < s.dcs.dcs_backoff_base_s:
        raise SettingsError(f"{env_name('dcs_backoff_cap_s')}: must be >= {env_name('dcs_backoff_base_s')}")
    _check_timezone(s.operations.ops_timezone)
    unknown = sorted(watchlist_touchpoints(s) - set(WATCHLIST_TOUCHPOINT_KINDS))
    if unknown:
        raise SettingsError(f"{env_name('watchlist_touchpoints')}: {unknown[0]!r} is not one of "
                            f"{', '.join(WATCHLIST_TOUCHPOINT_KINDS)}")


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{env_name('ops_timezone')}: {name!r} is not an IANA time zone "
                            "(e.g. Asia/Hong_Kong)") from None


def watchlist_touchpoints(s: Settings) -> frozenset[str]:
    """The device kinds (values) whose captures are screened against the watchlist."""
    return frozenset(k.strip() for k in s.watchlist.watchlist_touchpoints.split(",") if k.strip())
