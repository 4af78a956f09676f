"""The simulated airport's devices: one API key per physical device, as in a real deployment.

Where the keys come from, in the order a test manager is most likely to have them:

* ``--admin-key`` against a service with the device API (``POST /v1/devices``): the simulator adds
  its devices (named ``sim-<run>-...``) and disables them all when the day ends. Nothing else needed.
* ``--database-url`` (the service's PostgreSQL): the devices, and an admin key if none was given,
  are written with ``flighttoken.devices.registry.add_device``, as ``flighttoken devices add`` does,
  and disabled at the end. For a fresh test database or a service without the device API.
* ``--devices FILE``: keys made beforehand, as JSON
  ``{"admin": K, "kiosk": [K...], "bag_drop": [K...], "e_security_gate": [K...], "e_channel": [K...],
  "lounge": [K...], "gates": {"N1": [K...]},
  "authority": K}``; they are left as they are.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from touchpoints.clients import AdminClient
from touchpoints.simulator.scenario import Plan

LOUNGE_ID = "L1"
TERMINAL = "T1"


class ProvisioningError(Exception):
    """The simulator cannot get device keys; the message says which option to give."""


@dataclass
class DeviceKeys:
    admin: str
    kiosks: list[str]
    e_channels: list[str]
    lounges: list[str]
    gates: dict[str, list[str]]
    authority: str | None = None
    bag_drops: list[str] = field(default_factory=list)
    e_security_gates: list[str] = field(default_factory=list)
    source: str = "file"
    created: list[uuid.UUID] = field(default_factory=list)
    """Devices this run created (to disable at the end)."""
    admin_created: uuid.UUID | None = None

    def check(self, plan: Plan) -> None:
        missing = [g for g in plan.gates if not self.gates.get(g)]
        if missing or not (self.kiosks and self.bag_drops and self.e_security_gates and self.e_channels
                           and self.lounges):
            raise ProvisioningError(f"the device keys do not cover the day (gates without readers: {missing}; "
                                    "kiosk, bag_drop, e_security_gate, e_channel and lounge keys are needed too)")


def _specs(plan: Plan, run_id: str, with_authority: bool) -> list[dict[str, Any]]:
    o = plan.options
    specs: list[dict[str, Any]] = []
    specs += [{"role": "kiosk", "kind": "kiosk", "name": f"sim-{run_id}-kiosk-{i + 1}"} for i in range(o.kiosks)]
    specs += [{"role": "bag_drop", "kind": "bag_drop", "name": f"sim-{run_id}-bagdrop-{i + 1}"}
              for i in range(o.bag_drops)]
    specs += [{"role": "e_security_gate", "kind": "e_security_gate", "name": f"sim-{run_id}-esg-{i + 1}"}
              for i in range(o.e_security_gates)]
    specs += [{"role": "e_channel", "kind": "e_channel", "name": f"sim-{run_id}-ech-{i + 1}"}
              for i in range(o.e_channels)]
    specs += [{"role": "lounge", "kind": "lounge", "lounge_id": LOUNGE_ID, "name": f"sim-{run_id}-lounge-{i + 1}"}
              for i in range(o.lounge_readers)]
    for gate in plan.gates:
        specs += [{"role": "gate", "kind": "gate", "gate": gate, "name": f"sim-{run_id}-gate-{gate}-{i + 1}"}
                  for i in range(o.gate_readers)]
    if with_authority:
        specs.append({"role": "authority", "kind": "authority", "name": f"sim-{run_id}-authority"})
    return specs


def _collect(keys: list[tuple[dict[str, Any], str]], admin: str, source: str) -> DeviceKeys:
    out = DeviceKeys(admin=admin, kiosks=[], e_channels=[], lounges=[], gates={}, source=source)
    for spec, key in keys:
        role = spec["role"]
        if role == "gate":
            out.gates.setdefault(spec["gate"], []).append(key)
        elif role == "authority":
            out.authority = key
        else:
            {"kiosk": out.kiosks, "bag_drop": out.bag_drops, "e_security_gate": out.e_security_gates,
             "e_channel": out.e_channels, "lounge": out.lounges}[role].append(key)
    return out


def from_file(path: Path) -> DeviceKeys:
    try:
        raw = json.loads(path.read_text())
        return DeviceKeys(admin=raw["admin"], kiosks=list(raw["kiosk"]), e_channels=list(raw["e_channel"]),
                          lounges=list(raw["lounge"]), gates={g: list(k) for g, k in raw["gates"].items()},
                          authority=raw.get("authority"), bag_drops=list(raw["bag_drop"]),
                          e_security_gates=list(raw["e_security_gate"]), source="file")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProvisioningError(f"cannot read device keys from {path}: {exc}") from None


async def via_api(admin: AdminClient, plan: Plan, run_id: str, admin_key: str, devices_path: str) -> DeviceKeys:
    pairs, created = [], []
    path = devices_path.rstrip("/")
    try:
        for spec in _specs(plan, run_id, with_authority=True):
            body = {k: v for k, v in spec.items() if k != "role"} | {"terminal": TERMINAL}
            made = await admin.post(path, body)
            pairs.append((spec, made["api_key"]))
            created.append(uuid.UUID(made["device"]["id"]))
    except Exception:
        for device_id in created:  # leave no half-provisioned set of live keys behind
            await admin.post(f"{path}/{device_id}/disable", None)
        raise
    keys = _collect(pairs, admin_key, "device API")
    keys.created = created
    return keys


async def via_database(dsn: str, plan: Plan, run_id: str, admin_key: str | None) -> DeviceKeys:
    import asyncpg

    from flighttoken.devices.model import DeviceKind
    from flighttoken.devices.registry import add_device

    specs = _specs(plan, run_id, with_authority=True)
    conn = await asyncpg.connect(dsn)
    try:
        pairs, created = [], []
        admin_created = None
        async with conn.transaction():
            if admin_key is None:
                device, admin_key = await add_device(conn, name=f"sim-{run_id}-admin", kind=DeviceKind.ADMIN)
                admin_created = device.id
            for spec in specs:
                device, key = await add_device(conn, name=spec["name"], kind=DeviceKind(spec["kind"]),
                                               terminal=TERMINAL, gate=spec.get("gate"),
                                               lounge_id=spec.get("lounge_id"))
                pairs.append((spec, key))
                created.append(device.id)
    finally:
        await conn.close()
    keys = _collect(pairs, admin_key, "database")
    keys.created, keys.admin_created = created, admin_created
    return keys


async def retire(keys: DeviceKeys, admin: AdminClient | None, dsn: str | None, devices_path: str | None) -> int:
    """Disable every device this run created; returns how many."""
    if not keys.created and keys.admin_created is None:
        return 0
    if keys.source == "device API" and admin is not None and devices_path:
        for device_id in keys.created:
            await admin.post(f"{devices_path.rstrip('/')}/{device_id}/disable", None)
        return len(keys.created)
    if dsn:
        import asyncpg

        from flighttoken.db.queries import devices as device_q

        conn = await asyncpg.connect(dsn)
        try:
            ids = [*keys.created, *([keys.admin_created] if keys.admin_created else [])]
            for device_id in ids:
                await device_q.disable(conn, device_id)
            return len(ids)
        finally:
            await conn.close()
    return 0
