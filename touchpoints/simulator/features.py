"""Optional service features the simulator uses when the service has them.

Each is detected once at the start: from the OpenAPI document, or (for the watchlist, which the
service deliberately leaves out of it) by asking with an authority key. A missing feature is
reported as "not available" and the passengers who would have used it travel normally.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from touchpoints.capabilities import Capabilities, fill_path
from touchpoints.clients import AdminClient
from touchpoints.transport import ApiError, TouchpointError, Transport

NOT_AVAILABLE = "not available"


@dataclass
class Features:
    caps: Capabilities
    devices_api: str | None = None
    opt_out: str | None = None
    delay: str | None = None
    gate_change: str | None = None
    progress: str | None = None
    close_boarding: bool = False
    purge_receipt: str | None = None
    watchlist: bool = False
    late_enrol_by_pass: bool = False
    """A late enrolment sends the boarding pass in place of the booking (newer services)."""
    metrics: Transport | None = None
    """Reads the service's /metrics (process CPU), when it answers."""
    notes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def detect(cls, caps: Capabilities) -> Features:
        p = r"/v1/flights/\{[^}]+\}"
        return cls(
            caps=caps,
            devices_api=caps.find("POST", r"/v1/devices/?"),
            opt_out=caps.find("POST", r"/v1/opt-outs/?"),
            delay=caps.find("POST", p + r"/delay"),
            gate_change=caps.find("POST", p + r"/gate"),
            progress=caps.find("GET", p + r"/progress"),
            close_boarding=caps.find("POST", p + r"/close") is not None,
            purge_receipt=caps.find("GET", r"/v1/purge-receipts/\{[^}]+\}"),
            late_enrol_by_pass="boarding_pass" in (caps.request_schema(
                "POST", caps.find("POST", r"/v1/enrolments/?") or "/v1/enrolments").get("properties") or {}),
        )

    async def detect_watchlist(self, authority: Transport | None) -> None:
        if authority is None:
            self.notes["watchlist"] = "no authority key"
            return
        try:
            await authority.request("GET", "/v1/watchlist/subjects?limit=1", repeatable=True)
            self.watchlist = True
        except ApiError as exc:
            self.notes["watchlist"] = f"GET /v1/watchlist/subjects: {exc.status} {exc.code}"

    def table(self) -> dict[str, str]:
        def state(value: object, name: str) -> str:
            return "available" if value else self.notes.get(name, NOT_AVAILABLE)

        return {"device_api": state(self.devices_api, "device_api"), "opt_out": state(self.opt_out, "opt_out"),
                "watchlist": state(self.watchlist, "watchlist"), "delay": state(self.delay, "delay"),
                "gate_change": state(self.gate_change, "gate_change"), "progress": state(self.progress, "progress"),
                "close_boarding": state(self.close_boarding, "close_boarding"),
                "purge_receipt": state(self.purge_receipt, "purge_receipt"),
                "metrics": state(self.metrics, "metrics")}

    async def detect_metrics(self, transport: Transport) -> None:
        try:
            found = await self.service_cpu_s(transport)
        except (ApiError, TouchpointError) as exc:
            self.notes["metrics"] = f"GET /metrics: {exc}"
            return
        if found is None:
            self.notes["metrics"] = "no process_cpu_seconds_total in /metrics"
        else:
            self.metrics = transport

    @staticmethod
    async def service_cpu_s(transport: Transport) -> float | None:
        """The service process's CPU seconds so far (Prometheus ``process_cpu_seconds_total``)."""
        text = (await transport.request("GET", "/metrics", repeatable=True)).text
        for line in text.splitlines():
            if line.startswith("process_cpu_seconds_total "):
                return float(line.split()[1])
        return None

    # ---- calls -------------------------------------------------------------------------------

    async def delay_flight(self, admin: AdminClient, flight_id: uuid.UUID, minutes: int) -> dict[str, Any]:
        assert self.delay
        return await admin.post(fill_path(self.delay, flight_id=flight_id),
                                {"minutes": minutes, "reason": "simulated delay"})

    async def change_gate(self, admin: AdminClient, flight_id: uuid.UUID, gate: str) -> dict[str, Any]:
        assert self.gate_change
        return await admin.post(fill_path(self.gate_change, flight_id=flight_id), {"gate": gate})

    async def read_progress(self, admin: AdminClient, flight_id: uuid.UUID) -> dict[str, Any]:
        assert self.progress
        return await admin.get(fill_path(self.progress, flight_id=flight_id))

    async def read_receipt(self, admin: AdminClient, flight_id: uuid.UUID) -> dict[str, Any] | None:
        assert self.purge_receipt
        try:
            return await admin.get(fill_path(self.purge_receipt, flight_id=flight_id))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def opt_out_passenger(self, kiosk: Transport, document: dict[str, Any], booking_reference: str,
                                flight_id: uuid.UUID) -> dict[str, Any]:
        assert self.opt_out
        body = {"booking_reference": booking_reference, "flight_id": str(flight_id),
                "document": {k: document[k] for k in ("type", "number", "issuing_state")}}
        return (await kiosk.request("POST", self.opt_out, json=body)).json()

    async def add_watchlist_subject(self, authority: Transport, case_reference: str, photo: bytes) -> str:
        body = {"case_reference": case_reference, "reason_code": "simulation", "added_by": "Airport-day simulator",
                "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(), "photos": [photo]}
        return (await authority.request("POST", "/v1/watchlist/subjects", json=body)).json()["id"]

    async def remove_watchlist_subject(self, authority: Transport, subject_id: str) -> None:
        await authority.request("POST", f"/v1/watchlist/subjects/{subject_id}/remove",
                                json={"removed_by": "Airport-day simulator"}, repeatable=True)

    async def all_alerts(self, authority: Transport) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            page = (await authority.request("GET", f"/v1/alerts?status=all&limit=500&after={after}",
                                            repeatable=True)).json()
            out += page["alerts"]
            if len(page["alerts"]) < 500:
                return out
            after = page["next_after"]
