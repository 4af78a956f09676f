"""Field types shared by the API bodies: one definition of each constrained string, byte or time field.

Each is an ``Annotated[..., msgspec.Meta(...)]``: msgspec checks it when a body is decoded, and the
OpenAPI document lists its pattern and bounds. A body that needs its own example or description adds
one more ``msgspec.Meta`` around the shared type; the constraints stay the shared ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

# Printable text only: control characters (NUL above all, which PostgreSQL text cannot hold) are
# never part of a name printed in a passport, nor of an officer's name.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=80, pattern=PRINTABLE)]
# ICAO 9303 three-letter state code ("<" fills a shorter one, e.g. "D<<").
Alpha3 = Annotated[str, msgspec.Meta(pattern=r"^[A-Z<]{1,3}$", examples=["HKG"])]
DocumentType = Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z<]?$", examples=["P"])]
DocumentNumber = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9<]{1,20}$", examples=["K12345678"])]
BookingReference = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{5,8}$", examples=["ABC123"])]
# A boarding pass's barcode text (IATA BCBP, Resolution 792) as the device decoded it. Only its size is
# checked here: the parser (flighttoken/boardingpass) refuses anything else as 422 naming the item.
BoardingPassText = Annotated[str, msgspec.Meta(
    max_length=2000, description="the barcode's text (IATA BCBP, format M)",
    examples=["M1CHAN/TAI MAN        EABC123 HKGLAXCX 0884 123Y042A0025 100"])]
# A face photo (a capture, a chip's DG2 image, a watchlist photo); never stored.
Image = Annotated[bytes, msgspec.Meta(min_length=1, description="JPEG or PNG, base64 in JSON")]
# snake_case codes recorded for the audit trail (a watchlist reason, a staff hold's reason).
ReasonCode = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{1,39}$")]
# A moment with its offset: a naive time would be read in whatever zone the server runs in.
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
# A member of staff's id as their own system knows it (an airline agent's staff number or login).
StaffId = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@/-]*$",
                                      examples=["CX-4411"])]
