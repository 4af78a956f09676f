"""What an instance holds for the watchlist: the in-memory gallery and the alert fan-out."""

from __future__ import annotations

from dataclasses import dataclass, field

from flighttoken.watchlist.gallery import WatchlistGallery
from flighttoken.watchlist.hub import AlertHub


@dataclass(eq=False)
class WatchlistState:
    gallery: WatchlistGallery = field(default_factory=WatchlistGallery)
    hub: AlertHub = field(default_factory=AlertHub)
    loaded: bool = False
