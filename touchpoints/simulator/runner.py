"""Run a planned airport day against a live service, over HTTP, with the device clients.

Devices serve one person at a time, so people queue at kiosks, e-channels, lounge readers and gate
readers (FIFO). Passengers arrive at the kiosks at the configured rate (Poisson), then walk through
immigration, the lounge and, once their flight boards, the gate. A flight boards when all its
passengers are airside, departs when all have been to the gate, and is then checked for its purge.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog

from touchpoints.clients import (
    AdminClient,
    BagDropClient,
    EChannelClient,
    ESecurityGateClient,
    GateClient,
    KioskClient,
    LoungeClient,
)
from touchpoints.models import (
    CAPTURE_REASONS,
    MATCHING_REASONS,
    Booking,
    Consent,
    EnrolmentRequest,
    NewFlight,
    TravelDocument,
)
from touchpoints.simulator.devices import DeviceKeys
from touchpoints.simulator.features import Features
from touchpoints.simulator.frames import alone_frame
from touchpoints.simulator.recorder import Obs, Recorder
from touchpoints.simulator.scenario import FlightPlan, PassengerPlan, Plan
from touchpoints.simulator.steps import TERMS_TEXT, Steps
from touchpoints.transport import ApiError, RetryPolicy, TouchpointError, Transport

log = structlog.get_logger(__name__)
# Refer reasons another capture can fix; journey refusals (wrong flight, already boarded) cannot.
RETRYABLE_REASONS = CAPTURE_REASONS | MATCHING_REASONS
# Post-departure answers that can only come from the departed token still being searchable.
PURGE_FAILURE_REASONS = frozenset({"token_ended", "flight_closed"})


class Lanes:
    """A bank of identical devices with one FIFO queue: a person waits for the next free device."""

    def __init__(self, clients: list[Any]) -> None:
        self._free: asyncio.Queue[Any] = asyncio.Queue()
        for c in clients:
            self._free.put_nowait(c)

    @asynccontextmanager
    async def use(self) -> AsyncIterator[Any]:
        client = await self._free.get()
        try:
            yield client
        finally:
            self._free.put_nowait(client)


@dataclass
class FlightState:
    plan: FlightPlan
    id: uuid.UUID | None = None
    gate: str = ""
    pre_remaining: int = 0
    gate_remaining: int = 0
    enrolled: int = 0
    airside: asyncio.Event = field(default_factory=asyncio.Event)
    half_enrolled: asyncio.Event = field(default_factory=asyncio.Event)
    boarding: asyncio.Event = field(default_factory=asyncio.Event)
    all_at_gate: asyncio.Event = field(default_factory=asyncio.Event)
    purged: asyncio.Event = field(default_factory=asyncio.Event)
    departed: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    boarded: list[int] = field(default_factory=list)

    def kiosk_done(self) -> None:
        self.enrolled += 1
        if self.enrolled >= max(1, len(self.plan.passengers) // 2):
            self.half_enrolled.set()

    def pre_done(self) -> None:
        self.pre_remaining -= 1
        if self.pre_remaining <= 0:
            self.airside.set()

    def gate_done(self) -> None:
        self.gate_remaining -= 1
        if self.gate_remaining <= 0:
            self.all_at_gate.set()


@dataclass
class PassengerState:
    token_id: uuid.UUID | None = None
    probe_turn: int = 0
    outcome: str = ""
    """boarded (face, 1:1 or by a gate agent: ``method``), officer (stopped by an officer somewhere),
    kiosk_refused, late_enrol_refused, opted_out, watchlist."""
    method: str = ""
    """How the passenger boarded: face, one_to_one (boarding pass + 1:1) or manual (gate agent)."""
    manual_reason: str = ""
    staff: list[tuple[str, str]] = field(default_factory=list)
    """(touchpoint, refer reason) wherever an officer or staff had to process the passenger."""
    fallback: list[tuple[str, bool]] = field(default_factory=list)
    """(touchpoint, whether the boarding pass + 1:1 let them through)."""


class Runner(Steps):
    def __init__(self, plan: Plan, base_url: str, keys: DeviceKeys, features: Features, *,
                 http: httpx.AsyncClient, recorder: Recorder, dsn: str | None = None, authority_url: str | None = None,
                 timeout: float = 30.0,
                 before_wave: Callable[[], Awaitable[None]] | None = None) -> None:
        self.plan, self.o, self.features, self.rec, self.dsn = plan, plan.options, features, recorder, dsn
        self.before_wave = before_wave
        """Run with the day paused and the service idle, just before the final wave goes airside."""
        self._wave_release: asyncio.Task[None] | None = None
        self.rng = random.Random(plan.options.seed + 1)
        retry = RetryPolicy(max_attempts=5, max_total_wait_s=30.0)

        def make(cls: type, key: str) -> Any:
            return cls(base_url, key, timeout=timeout, retry=retry, http=http)

        self.admin: AdminClient = make(AdminClient, keys.admin)
        self.clients: list[Any] = [self.admin]

        def lanes(cls: type, ks: list[str]) -> Lanes:
            made = [make(cls, k) for k in ks]
            self.clients += made
            return Lanes(made)

        self.kiosks = lanes(KioskClient, keys.kiosks)
        self.bag_drops = lanes(BagDropClient, keys.bag_drops)
        self.e_security_gates = lanes(ESecurityGateClient, keys.e_security_gates)
        self.e_channels = lanes(EChannelClient, keys.e_channels)
        self.lounges = lanes(LoungeClient, keys.lounges)
        self.gates = {g: lanes(GateClient, ks) for g, ks in keys.gates.items()}
        # The watchlist is only on the service's authority listener.
        self.authority = Transport(authority_url, keys.authority, timeout=timeout, retry=retry, http=http) \
            if keys.authority and authority_url else None
        self.flights = [FlightState(plan=f, gate=f.gate) for f in plan.flights]
        self.people = [PassengerState() for _ in plan.passengers]
        self._last: dict[int, Obs] = {}
        """Each passenger's latest identify answer."""
        self.bank_purged = [asyncio.Event() for _ in range(plan.banks)]
        # --final-wave N: the last N banks go airside only once all of them are past the kiosks.
        self.wave_banks = frozenset(range(max(0, plan.banks - self.o.final_wave), plan.banks))
        self.wave_at_kiosk = sum(1 for p in plan.passengers if p.bank in self.wave_banks)
        self.check_in_closed = asyncio.Event()
        self.wave_held = 0
        """Passengers who reached the airside door before check-in closed and waited there."""
        if not self.o.final_wave or self.wave_at_kiosk == 0:
            self.check_in_closed.set()
        self.watch_subjects: dict[str, int] = {}
        """watchlist subject id → passenger index."""
        self.opt_out_results: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.alone_frames = 0  # retakes taken alone (frames.py): the passenger's photos were used up
        self.day_start: datetime = datetime.now(UTC)

    # ---- the day -------------------------------------------------------------------------------

    async def run(self) -> None:
        self.day_start = datetime.now(UTC)
        await self._create_flights()
        for f in self.flights:
            f.pre_remaining = len(f.plan.passengers)
            f.gate_remaining = len(f.plan.passengers) + sum(1 for s in f.plan.strangers
                                                             if self.plan.strangers[s].at_gate)
            if f.pre_remaining == 0:
                f.airside.set()
        flight_tasks = [asyncio.create_task(self._fly(f), name=f"flight-{f.plan.code}") for f in self.flights]
        people: list[asyncio.Task[None]] = []
        for kind, index in self.plan.arrivals:
            bank = self.plan.passengers[index].bank if kind == "p" else \
                self.plan.flights[self.plan.strangers[index].flight].bank
            if bank >= 2:
                # The same faces travelled two banks ago: check-in opens once those flights are purged.
                await self.bank_purged[bank - 2].wait()
            coro = self._passenger(index) if kind == "p" else self._stranger(index)
            people.append(asyncio.create_task(coro))
            await asyncio.sleep(self.rng.expovariate(self.o.arrival_rate))
        await asyncio.gather(*people)
        await asyncio.gather(*flight_tasks)
        if self.features.watchlist and self.authority is not None:
            for subject_id in list(self.watch_subjects):
                await self._quietly(self.features.remove_watchlist_subject(self.authority, subject_id))

    async def _create_flights(self) -> None:
        for f in self.flights:
            p = f.plan
            departure = (self.day_start + timedelta(minutes=p.departure_offset_min)).replace(microsecond=0)
            flight = await self.admin.create_flight(NewFlight(airline=p.airline, number=p.number,
                                                              scheduled_departure=departure,
                                                              destination=p.destination, gate=p.gate))
            f.id = flight.id
            f.facts["scheduled_departure"] = flight.scheduled_departure.isoformat()

    # ---- flights -------------------------------------------------------------------------------

    async def _fly(self, f: FlightState) -> None:
        try:
            await self._fly_steps(f)
        except Exception as exc:  # whatever failed, the day must finish and report it
            # Passengers waiting for this flight go on, and are refused at the gate.
            self.errors.append(f"flight {f.plan.code}: {type(exc).__name__}: {exc}")
            f.facts["error"] = str(exc)
            f.boarding.set()
            f.purged.set()
        finally:
            bank = f.plan.bank
            if all(x.purged.is_set() for x in self.flights if x.plan.bank == bank):
                self.bank_purged[bank].set()

    async def _fly_steps(self, f: FlightState) -> None:
        assert f.id is not None
        if f.plan.delay_min:
            await f.half_enrolled.wait()
            f.facts["delay"] = await self._feature_call(
                "delay", self.features.delay and self.features.delay_flight(self.admin, f.id, f.plan.delay_min),
                f, f"delay +{f.plan.delay_min} min")
        await f.airside.wait()
        if f.plan.new_gate:
            f.facts["gate_change"] = await self._feature_call(
                "gate_change", self.features.gate_change and self.features.change_gate(self.admin, f.id,
                                                                                       f.plan.new_gate),
                f, f"gate {f.plan.gate} → {f.plan.new_gate}")
            if f.facts["gate_change"] == "done":
                f.gate = f.plan.new_gate
        await self.admin.set_state(f.id, "boarding")
        self.rec.event(f.plan.index, "boarding")
        f.boarding.set()
        await f.all_at_gate.wait()
        if self.features.progress:
            f.facts["server_progress"] = await self._quietly(self.features.read_progress(self.admin, f.id))
        if self.features.close_boarding:
            await self.admin.set_state(f.id, "closed")
            self.rec.event(f.plan.index, "closed")
        await self.admin.set_state(f.id, "departed")
        f.departed = True
        self.rec.event(f.plan.index, "departed")
        await self._check_purge(f)
        self.rec.event(f.plan.index, "purged")
        f.purged.set()

    async def _feature_call(self, name: str, call: Any, f: FlightState, label: str) -> str:
        if not call:
            call_state = "not available"
        else:
            try:
                await call
                call_state = "done"
                self.rec.event(f.plan.index, label)
            except (ApiError, TouchpointError) as exc:
                call_state = f"failed: {exc}"
                self.errors.append(f"{name} {f.plan.code}: {exc}")
        return call_state

    async def _check_purge(self, f: FlightState) -> None:
        assert f.id is not None
        purge: dict[str, Any] = {}
        if self.features.purge_receipt:
            receipt = await self._quietly(self.features.read_receipt(self.admin, f.id))
            purge["receipt"] = None if receipt is None else {
                k: receipt.get(k) for k in ("completed", "key_destroyed_at", "templates_deleted", "tokens_ended",
                                            "tokens_total", "trigger")}
        if self.dsn:
            from touchpoints.simulator.dbcheck import leftovers

            purge["database"] = await leftovers(self.dsn, f.id)
        # The departed passengers' faces, shown to an e-channel: none may be recognised any more.
        sample = self.rng.sample(f.boarded, min(self.o.purge_probes, len(f.boarded)))
        for p in sample:
            await self._identify(self.e_channels, "e_channel", "purge_probe", p, f.plan.index)
        f.facts["purge"] = purge

    # ---- people --------------------------------------------------------------------------------

    async def _passenger(self, index: int) -> None:
        p = self.plan.passengers[index]
        f = self.flights[p.flight]
        me = self.people[index]
        airside = past_kiosk = False
        late = "late_enrol" in p.roles
        try:
            me.token_id = None if late else await self._enrol(p)
            past_kiosk = True
            f.kiosk_done()
            self._left_kiosk(p)
            if me.token_id is None and not late:
                me.outcome = "kiosk_refused"
                return
            if "kiosk_repeat" in p.roles:
                await self._enrol(p, purpose="kiosk_repeat")
            if "opt_out" in p.roles and self.features.opt_out:
                await self._opt_out(p)
                await self._identify(self.e_channels, "e_channel", "opted_out", index, p.flight)
                me.outcome = "opted_out"
                return
            if "watchlist" in p.roles and self.features.watchlist and p.watchlist_photo is not None:
                await self._watchlist(p)
                await self._identify(self.e_channels, "e_channel", "watchlist", index, p.flight)
                me.outcome = "watchlist"
                return
            if "lounge_first" in p.roles:
                await self._identify(self.lounges, "lounge", "lounge_first", index, p.flight)
            if p.bags:
                await self._walk()
                await self._through(self.bag_drops, "bag_drop", index, p.flight, bags=p.bags)
            # Late enrollees have no check-in to close: they go airside at once, enrolling there.
            if not late and p.bank in self.wave_banks and not self.check_in_closed.is_set():
                self.wave_held += 1
                await self.check_in_closed.wait()
            await self._walk()
            if late:
                me.token_id = await self._late_enrol(index)
                if me.token_id is None:
                    me.outcome = "late_enrol_refused"
                    return
            elif not await self._through(self.e_security_gates, "e_security_gate", index, p.flight):
                me.outcome = "officer"
                return
            await self._walk()
            if not await self._through(self.e_channels, "e_channel", index, p.flight):
                me.outcome = "officer"
                return
            if p.lounge:
                await self._walk()
                await self._through(self.lounges, "lounge", index, p.flight)
            f.pre_done()
            airside = True
            await f.boarding.wait()
            await self._walk()
            if "stale_gate" in p.roles and f.gate != f.plan.gate:
                await self._identify(self.gates[f.plan.gate], "gate", "stale_gate", index, p.flight)
            if "wrong_gate" in p.roles:
                other = self.rng.choice([g for g in self.gates if g != f.gate])
                await self._identify(self.gates[other], "gate", "wrong_gate", index, p.flight)
            if await self._through(self.gates[f.gate], "gate", index, p.flight):
                me.outcome, me.method = "boarded", me.method or "face"
                f.boarded.append(index)
                if "double_board" in p.roles:
                    await self._identify(self.gates[f.gate], "gate", "double_board", index, p.flight)
            else:
                me.outcome = "officer"
        except Exception as exc:  # one passenger's failure must not stop the day; it is reported
            self.errors.append(f"passenger {index}: {type(exc).__name__}: {exc}")
            me.outcome = me.outcome or "error"
        finally:
            if not past_kiosk:
                f.kiosk_done()
                self._left_kiosk(p)
            if not airside:
                f.pre_done()
            f.gate_done()

    def _left_kiosk(self, p: PassengerPlan) -> None:
        if p.bank in self.wave_banks:
            self.wave_at_kiosk -= 1
            if self.wave_at_kiosk <= 0 and self._wave_release is None:
                self._wave_release = asyncio.create_task(self._release_wave())

    async def _release_wave(self) -> None:
        try:
            if self.before_wave is not None:
                async with self.rec.paused():
                    await self.before_wave()
        except Exception as exc:  # the day goes on without it; the report says so
            self.errors.append(f"before the final wave: {type(exc).__name__}: {exc}")
        finally:
            self.check_in_closed.set()

    async def _stranger(self, index: int) -> None:
        s = self.plan.strangers[index]
        f = self.flights[s.flight]
        try:
            await self._identify(self.e_channels, "e_channel", "stranger", -1 - index, s.flight)
            if s.at_gate:
                await f.boarding.wait()
                await self._identify(self.gates[f.gate], "gate", "stranger", -1 - index, s.flight)
                # Then with a pass found on the floor: a booked passenger's of this flight (1:1 misuse).
                holders = [i for i in f.plan.passengers if self.people[i].token_id is not None]
                if holders:
                    victim = self.rng.choice(holders)
                    await self._identify(self.gates[f.gate], "gate", "pass_impostor", -1 - index, s.flight,
                                         boarding_pass=self.boarding_pass(victim),
                                         victim=self.people[victim].token_id)
        except Exception as exc:
            self.errors.append(f"stranger {index}: {type(exc).__name__}: {exc}")
        finally:
            if s.at_gate:
                f.gate_done()

    async def _walk(self) -> None:
        if self.o.dwell_s > 0:
            await asyncio.sleep(self.rng.expovariate(1.0 / self.o.dwell_s))

    # ---- touchpoints ---------------------------------------------------------------------------

    def _next_probe(self, index: int) -> tuple[Path, bool]:
        """The passenger's next photo, and whether their photos are used up (a retake: alone)."""
        p, me = self.plan.passengers[index], self.people[index]
        photo = p.probes[me.probe_turn % len(p.probes)]
        used_up = me.probe_turn >= len(p.probes)
        me.probe_turn += 1
        return photo, used_up

    async def _touch(self, lanes: Lanes, touchpoint: str, index: int, flight: int, **kw: Any) -> bool:
        """A passenger at a touchpoint: a capture, and up to ``retries`` more if it can help."""
        for attempt in range(1 + self.o.retries):
            obs = await self._identify(lanes, touchpoint, "journey" if attempt == 0 else "retry", index, flight,
                                       **kw)
            if obs.outcome == "proceed":
                return True
            if obs.reason not in RETRYABLE_REASONS:
                return False
        return False

    async def _identify(self, lanes: Lanes, touchpoint: str, purpose: str, who: int, flight: int, *,
                        boarding_pass: str | None = None, bags: int | None = None,
                        victim: uuid.UUID | None = None) -> Obs:
        """One capture at a touchpoint (with a boarding pass: the 1:1 fallback). ``victim``: the
        token whose pass a stranger presents; a proceed on it is a wrong-person accept."""
        alone = False
        if who >= 0:
            photo, alone = self._next_probe(who)
            alone = alone and self.o.alone_crop > 0
            label, own = f"p{who}", self.people[who].token_id
        else:
            photo, label, own = self.plan.strangers[-1 - who].photo, f"s{-1 - who}", victim
        if alone:
            image = await asyncio.to_thread(alone_frame, photo, self.o.alone_crop)
            self.alone_frames += 1
        else:
            image = await asyncio.to_thread(photo.read_bytes)
        await self.rec.wait_open()  # a pause is not queueing at the touchpoint
        queued = self.rec.now()
        async with lanes.use() as client:
            await self.rec.wait_open()  # nor may a request leave during one
            sent = self.rec.now()
            with self.rec.in_flight("identify"):
                try:
                    extra = {"bags": bags} if bags is not None else {}
                    d = await client.identify(image, boarding_pass=boarding_pass, **extra)
                    mine = (d.token_id == own) if d.proceed and (who >= 0 or victim is None) else None
                    if who < 0 and victim is not None and d.proceed:
                        mine = False  # a stranger let through on someone's pass: never theirs
                    obs = Obs(touchpoint, purpose, label, flight, queued, sent, self.rec.now(), 200, d.decision,
                              d.reason, mine, d.method)
                except ApiError as exc:
                    obs = Obs(touchpoint, purpose, label, flight, queued, sent, self.rec.now(), exc.status,
                              exc.code, exc.problem.detail[:80])
                except TouchpointError as exc:
                    obs = Obs(touchpoint, purpose, label, flight, queued, sent, self.rec.now(), 0, "no_answer",
                              str(exc)[:80])
        self.rec.obs.append(obs)
        if who >= 0:
            self._last[who] = obs
        return obs

    def _enrolment(self, p: PassengerPlan, capture: Path | None = None) -> EnrolmentRequest:
        flight_id = self.flights[p.flight].id
        assert flight_id is not None
        return EnrolmentRequest(
            document=TravelDocument(**p.document()),  # type: ignore[arg-type]
            booking=Booking(flight_id=flight_id, booking_reference=p.booking_reference, seat=p.seat,
                            lounge_eligible=p.lounge),
            captures=[(capture or p.enrol_photo).read_bytes()],
            consent=Consent.accepted(TERMS_TEXT, "sim-v1"))

    async def _enrol(self, p: PassengerPlan, purpose: str = "enrol") -> uuid.UUID | None:
        """Enrol with the first photo; if the kiosk asks for a retake, use another photo when the
        person has enough left to be seen again at the touchpoints."""
        captures = [p.enrol_photo] + ([p.probes[0]] if purpose == "enrol" and len(p.probes) >= 2 else [])
        for turn, capture in enumerate(captures):
            request = await asyncio.to_thread(self._enrolment, p, capture)
            await self.rec.wait_open()
            queued = self.rec.now()
            async with self.kiosks.use() as kiosk:
                await self.rec.wait_open()
                sent = self.rec.now()
                with self.rec.in_flight("enrol"):
                    try:
                        result = await kiosk.enrol(request)
                        status = 201 if result.created else 200
                        own = None
                        if purpose == "kiosk_repeat":
                            own = result.token_id == self.people[p.index].token_id and not result.created
                        obs = Obs("kiosk", purpose if turn == 0 else "retake", f"p{p.index}", p.flight, queued, sent,
                                  self.rec.now(), status, "created" if result.created else "existing",
                                  own_token=own)
                    except ApiError as exc:
                        result = None
                        obs = Obs("kiosk", purpose if turn == 0 else "retake", f"p{p.index}", p.flight, queued, sent,
                                  self.rec.now(), exc.status, exc.code, ",".join(exc.problem.reasons)[:80])
                    except TouchpointError as exc:
                        result = None
                        obs = Obs("kiosk", purpose, f"p{p.index}", p.flight, queued, sent, self.rec.now(), 0,
                                  "no_answer", str(exc)[:80])
            self.rec.obs.append(obs)
            if result is not None:
                if turn == 1:
                    # The retake enrolled: the remaining photos are the touchpoint captures now.
                    p.enrol_photo, p.probes = capture, p.probes[1:]
                return result.token_id
            if obs.outcome != "capture_rejected":
                return None
        return None

    async def _opt_out(self, p: PassengerPlan) -> None:
        flight_id = self.flights[p.flight].id
        assert flight_id is not None
        async with self.kiosks.use() as kiosk:
            try:
                result = await self.features.opt_out_passenger(kiosk.transport, p.document(), p.booking_reference,
                                                               flight_id)
            except (ApiError, TouchpointError) as exc:
                result = {"error": str(exc)}
        self.opt_out_results.append(result)

    async def _watchlist(self, p: PassengerPlan) -> None:
        assert self.authority is not None and p.watchlist_photo is not None
        photo = await asyncio.to_thread(p.watchlist_photo.read_bytes)
        try:
            subject = await self.features.add_watchlist_subject(self.authority, f"SIM/{p.index}", photo)
            self.watch_subjects[subject] = p.index
        except (ApiError, TouchpointError) as exc:
            self.errors.append(f"watchlist subject {p.index}: {exc}")

    async def _quietly(self, coro: Any) -> Any:
        try:
            return await coro
        except (ApiError, TouchpointError) as exc:
            self.errors.append(str(exc))
            return None

    def retries(self) -> dict[str, int]:
        """Retries the transports made (429, 503, connect, timeout), summed over every device."""
        out: dict[str, int] = {}
        transports = [c.transport for c in self.clients] + ([self.authority] if self.authority else [])
        for t in transports:
            for cause, n in t.retries.items():
                out[cause] = out.get(cause, 0) + n
        return out
