"""Reading the audit trail: filters, cursors, rows → API structs; every read is itself audited."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from flighttoken.db.queries import audit
from flighttoken.devices.model import Device
from flighttoken.errors import InvalidRequest
from flighttoken.privacy.schemas import AuditEvent, DecisionEvent, DeviceRef
from flighttoken.services import Services


def check_range(since: datetime | None, until: datetime | None) -> None:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidRequest(f"{name} needs a UTC offset, e.g. 2026-01-01T00:00:00Z", code="timezone_required")
    if since is not None and until is not None and since >= until:
        raise InvalidRequest("since must be before until", code="invalid_time_range")


def parse_cursor(cursor: str | None) -> int:
    """Cursors are the last id of the previous page; opaque to clients."""
    if cursor is None:
        return 0
    if not cursor.isdigit() or len(cursor) > 19:
        raise InvalidRequest("cursor must be a next_cursor value from a previous page", code="invalid_cursor")
    return int(cursor)


def _device(row) -> DeviceRef | None:
    if row["device_id"] is None:
        return None
    return DeviceRef(id=row["device_id"], name=row["device_name"], kind=row["device_kind"],
                     terminal=row["terminal"], gate=row["gate"], lounge_id=row["lounge_id"])


def to_event(row) -> AuditEvent:
    return AuditEvent(id=row["id"], at=row["at"], actor=row["actor"], device=_device(row), action=row["action"],
                      outcome=row["outcome"], flight_id=row["flight_id"], token_id=row["token_id"],
                      detail=msgspec.json.decode(row["detail"]))


def to_decision(row) -> DecisionEvent:
    return DecisionEvent(id=row["id"], at=row["at"], device=_device(row), touchpoint=row["touchpoint"],
                         flight_id=row["flight_id"], token_id=row["token_id"], decision=row["decision"],
                         reason=row["reason"], score=row["score"], margin=row["margin"], latency_ms=row["latency_ms"],
                         method=row["method"], bags=row["bags"])


async def record_read(services: Services, device: Device, what: str, **filters: Any) -> None:
    """Who looked at the audit trail, and for what, is part of the trail."""
    given = {k: (v.isoformat() if isinstance(v, datetime) else str(v)) for k, v in filters.items() if v is not None}
    await audit.record(services.db(), actor=f"device:{device.id}", action=f"audit.read_{what}", outcome="ok",
                       detail=given)
