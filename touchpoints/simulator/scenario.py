"""The plan of an airport day, built from the LFW photos before anything is sent (pure, seeded).

Passengers are LFW people with at least two photos: one enrols at the kiosk, the others are the
camera frames at e-channels, lounges and gates, so every match is photo-to-different-photo.
Non-enrolled people come from identities with a single photo, so they are never in any gallery.

LFW has 1,184 people with two or more photos. A day with more passengers than that runs in *banks*
(groups of flights departing together): adjacent banks use disjoint halves of the people, and bank
b+2 may only start checking in once bank b has departed and been purged. Re-enrolling a face whose
previous token was purged also tests the purge: a leftover template would make the kiosk refuse
the new passenger (``face_already_enrolled``) or the e-channel find two candidates.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

AIRLINES = ("CX", "KA", "UO", "HX", "CI", "SQ", "JL", "BR")
DESTINATIONS = ("LAX", "NRT", "LHR", "SIN", "SYD", "YVR", "BKK", "ICN", "TPE", "MNL", "FRA", "DXB")
FIRST_DEPARTURE_MIN = 45
# Departures spread over three hours: two or three departure windows of the default 2 h, all inside
# the 4 h clearance horizon so e-channels serve every flight from the start.
DEPARTURE_SPAN_MIN = 180


@dataclass(frozen=True)
class Options:
    flights: int = 4
    passengers: int = 300
    seed: int = 8
    arrival_rate: float = 8.0
    """Passengers arriving at the kiosks per second (Poisson)."""
    banks: int = 0
    """0: as few as the LFW people allow."""
    strangers: int = -1
    """People never enrolled who try e-channels and gates; -1: 5 % of passengers, at least 20."""
    lounge_share: float = 0.3
    wrong_gate_share: float = 0.02
    double_board_share: float = 0.01
    lounge_first_share: float = 0.01
    kiosk_repeat_share: float = 0.02
    opt_outs: int = 3
    watchlist: int = 2
    delays: int = 2
    gate_changes: int = 1
    stale_gate_passengers: int = 2
    """Per gate change: passengers who go to the old gate first."""
    bag_share: float = 0.4
    """Passengers who check bags in at a self bag drop (one or two bags)."""
    late_enrol_share: float = 0.05
    """Passengers who skip the kiosk and enrol late at the e-Security Gate (chip photo + boarding pass)."""
    dcs_failure_share: float = 0.2
    """Share of webhook deliveries the simulated airline DCS answers with a 5xx."""
    dcs_drain_s: float = 300.0
    """After the day: how long to wait for the service's outbox to deliver every event."""
    ops_timezone: str = "UTC"
    """The service's FLIGHTTOKEN_OPS_TIMEZONE: a boarding pass's Julian date is the flight's local day."""
    kiosks: int = 6
    bag_drops: int = 4
    e_security_gates: int = 6
    e_channels: int = 6
    lounge_readers: int = 2
    gate_readers: int = 2
    """Readers per gate."""
    dwell_s: float = 1.0
    """Mean walking/dwell time between touchpoints (exponential)."""
    retries: int = 1
    """Further captures a touchpoint takes after a refer for a capture or matching reason."""
    alone_crop: float = 0.64
    """A capture taken once a passenger's LFW photos are used up is the photo's centre (this share of
    each side): the passenger stepped up alone, the people behind out of frame. LFW has one photo for
    many people, and a news photo with a bystander refused as tailgating would be that passenger's
    every capture, which no real retake is. 0: repeat the photo as it is."""
    purge_probes: int = 5
    """Boarded passengers per departed flight shown to an e-channel again: none may be recognised."""
    final_wave: int = 0
    """N > 0: the passengers of the last N banks wait after check-in until all of them have checked
    in, then go airside together, as when check-in closes: a rush of identifies with no enrolment
    beside it, long enough to measure the identify throughput the service sustains (each bank
    adds some 20 seconds of it on 2 cores)."""


@dataclass
class FlightPlan:
    index: int
    airline: str
    number: str
    destination: str
    departure_offset_min: int
    gate: str
    bank: int
    passengers: list[int] = field(default_factory=list)
    strangers: list[int] = field(default_factory=list)
    delay_min: int = 0
    new_gate: str | None = None

    @property
    def code(self) -> str:
        return f"{self.airline}{self.number}"


@dataclass
class PassengerPlan:
    index: int
    identity: str
    flight: int
    bank: int
    enrol_photo: Path
    probes: list[Path]
    """Other photos of the same person: the captures at each touchpoint, used in turn."""
    document_number: str
    surname: str
    given_names: str
    booking_reference: str
    seat: str
    lounge: bool
    roles: set[str] = field(default_factory=set)
    """wrong_gate, double_board, lounge_first, kiosk_repeat, opt_out, watchlist, stale_gate, late_enrol."""
    watchlist_photo: Path | None = None
    chip_photo: Path | None = None
    """late_enrol: the document chip's photo (DG2), another photo of the same person."""
    bags: int = 0
    reuse: int = 0
    """How many earlier banks this face travelled in (under other documents)."""

    def document(self) -> dict[str, object]:
        return {"type": "P", "number": self.document_number, "issuing_state": "HKG", "surname": self.surname,
                "given_names": self.given_names, "nationality": "HKG", "date_of_birth": date(1980, 1, 1),
                "expiry": date(2035, 1, 1)}


@dataclass
class StrangerPlan:
    index: int
    identity: str
    photo: Path
    flight: int
    """Arrives with this flight's bank; tries its gate when ``at_gate``."""
    at_gate: bool


@dataclass
class Plan:
    options: Options
    flights: list[FlightPlan]
    passengers: list[PassengerPlan]
    strangers: list[StrangerPlan]
    banks: int
    arrivals: list[tuple[str, int]]
    """("p", passenger) / ("s", stranger) in arrival order, bank by bank."""
    gates: list[str]
    """Every gate a flight may use (spares for gate changes included): each gets readers."""
    pool_sizes: dict[str, int]


class ScenarioError(ValueError):
    """The options ask for a day these photos cannot support; the message says what to change."""


def load_identities(faces_dir: str | Path) -> list[tuple[str, list[Path]]]:
    root = Path(faces_dir) / "lfw-train"
    if not root.is_dir():
        raise ScenarioError(f"LFW photos not found at {root}: pass --faces-dir or set FLIGHTTOKEN_FACES_DIR")
    out = []
    for folder in sorted(root.iterdir()):
        photos = sorted(folder.glob("*.jpg"))
        if photos:
            out.append((folder.name, photos))
    return out


def _names(identity: str) -> tuple[str, str]:
    parts = [p for p in identity.replace("-", " ").split("_") if p]
    surname = parts[-1].upper() if parts else "TRAVELLER"
    return surname[:40], " ".join(parts[:-1]).upper()[:60]


def _bank_sizes(per_flight: list[int], banks: int) -> tuple[list[int], list[int]]:
    """Flight → bank (contiguous runs in departure order), and passengers per bank."""
    n = len(per_flight)
    flight_bank = [i * banks // n for i in range(n)]
    sizes = [0] * banks
    for i, count in enumerate(per_flight):
        sizes[flight_bank[i]] += count
    return flight_bank, sizes


def build_plan(identities: list[tuple[str, list[Path]]], options: Options) -> Plan:
    o = options
    if o.flights < 1 or o.passengers < o.flights:
        raise ScenarioError("need at least one flight and at least one passenger per flight")
    rng = random.Random(o.seed)
    mated = [(name, photos) for name, photos in identities if len(photos) >= 2]
    singles = [(name, photos) for name, photos in identities if len(photos) == 1]
    rng.shuffle(mated)
    rng.shuffle(singles)
    if len(mated) < 4:
        raise ScenarioError("fewer than 4 people with two photos: not a usable LFW folder")

    per_flight = [o.passengers // o.flights + (1 if i < o.passengers % o.flights else 0) for i in range(o.flights)]
    banks = o.banks or (1 if o.passengers <= len(mated) else math.ceil(o.passengers / (len(mated) // 2)))
    while True:
        if banks > o.flights:
            raise ScenarioError(f"{o.passengers} passengers need more than {o.flights} flights: LFW has "
                                f"{len(mated)} people with two photos, and a bank of flights may use at most "
                                f"half of them; add flights or lower --passengers")
        flight_bank, sizes = _bank_sizes(per_flight, banks)
        pool = len(mated) if banks == 1 else len(mated) // 2
        if max(sizes) <= pool:
            break
        banks += 1
    halves = [mated] if banks == 1 else [mated[: len(mated) // 2], mated[len(mated) // 2:]]

    # Gates: adjacent banks board at disjoint gate sets; bank b+2 reuses bank b's gates after it left.
    per_bank_flights = [flight_bank.count(b) for b in range(banks)]
    width = max(per_bank_flights)
    gate_sets = [[f"N{k + 1}" for k in range(width)], [f"S{k + 1}" for k in range(width)]]
    spares = [f"W{k + 1}" for k in range(max(o.gate_changes, 0))]

    flights: list[FlightPlan] = []
    span = DEPARTURE_SPAN_MIN / max(o.flights - 1, 1)
    slot_in_bank = [0] * banks
    for i in range(o.flights):
        b = flight_bank[i]
        gate = gate_sets[b % 2][slot_in_bank[b]]
        slot_in_bank[b] += 1
        flights.append(FlightPlan(index=i, airline=AIRLINES[i % len(AIRLINES)], number=str(100 + i),
                                  destination=DESTINATIONS[i % len(DESTINATIONS)],
                                  departure_offset_min=FIRST_DEPARTURE_MIN + round(i * span / 5) * 5,
                                  gate=gate, bank=b))

    passengers: list[PassengerPlan] = []
    # Bags from their own stream: the rest of the plan (who plays which role) stays what this seed gave.
    bag_rng = random.Random(o.seed * 7919 + 1)
    next_in_bank = [0] * banks
    for f in flights:
        for _ in range(per_flight[f.index]):
            b = f.bank
            half = halves[b % len(halves)]
            name, photos = half[next_in_bank[b]]
            next_in_bank[b] += 1
            reuse = b // 2 if banks > 1 else 0
            k = len(passengers)
            start = reuse % len(photos)
            rotated = photos[start:] + photos[:start]
            surname, given = _names(name)
            passengers.append(PassengerPlan(
                index=k, identity=name, flight=f.index, bank=b, enrol_photo=rotated[0], probes=rotated[1:],
                document_number=f"S{o.seed % 1000:03d}{k:06d}", surname=surname, given_names=given,
                booking_reference=f"B{k:06d}"[-7:], seat=f"{1 + (k % 300) // 6}{'ABCDEF'[k % 6]}",
                lounge=rng.random() < o.lounge_share, reuse=reuse,
                bags=bag_rng.choice((1, 1, 2)) if bag_rng.random() < o.bag_share else 0))
            f.passengers.append(k)

    _assign_roles(passengers, flights, o, rng)

    n_strangers = o.strangers if o.strangers >= 0 else max(20, o.passengers // 20)
    if n_strangers > len(singles):
        raise ScenarioError(f"at most {len(singles)} non-enrolled people are available")
    strangers = []
    for s, (name, photos) in enumerate(singles[:n_strangers]):
        f = flights[rng.randrange(len(flights))]
        strangers.append(StrangerPlan(index=s, identity=name, photo=photos[0], flight=f.index,
                                      at_gate=rng.random() < 0.5))
        f.strangers.append(s)

    # A delay must keep the departure inside the e-channels' clearance horizon (4 h by default).
    latest = FIRST_DEPARTURE_MIN + DEPARTURE_SPAN_MIN
    delayable = [f for f in flights if latest - f.departure_offset_min >= 30]
    for f in rng.sample(delayable, min(max(o.delays, 0), len(delayable))):
        f.delay_min = min(rng.choice((30, 45, 60, 90)), latest - f.departure_offset_min)
    for f, spare in zip(rng.sample(flights, min(len(spares), len(flights))), spares, strict=False):
        f.new_gate = spare
        candidates = [p for p in f.passengers if not passengers[p].roles]
        for p in rng.sample(candidates, min(o.stale_gate_passengers, len(candidates))):
            passengers[p].roles.add("stale_gate")

    arrivals: list[tuple[str, int]] = []
    for b in range(banks):
        group = [("p", p.index) for p in passengers if p.bank == b]
        group += [("s", s.index) for s in strangers if flights[s.flight].bank == b]
        rng.shuffle(group)
        arrivals += group
    gates = sorted({f.gate for f in flights} | set(spares), key=lambda g: (g[0], int(g[1:])))
    return Plan(options=o, flights=flights, passengers=passengers, strangers=strangers, banks=banks,
                arrivals=arrivals, gates=gates,
                pool_sizes={"mated_identities": len(mated), "single_photo_identities": len(singles)})


def _assign_roles(passengers: list[PassengerPlan], flights: list[FlightPlan], o: Options,
                  rng: random.Random) -> None:
    """Give a few passengers something unusual to do; each passenger at most one role."""
    free = list(range(len(passengers)))
    rng.shuffle(free)

    def take(n: int, role: str, ok=lambda p: True) -> None:
        chosen = [i for i in free if ok(passengers[i])][:n]
        for i in chosen:
            passengers[i].roles.add(role)
            free.remove(i)

    n = len(passengers)
    # Watchlist subjects need a third photo (enrol, e-channel, watchlist) and are never re-used.
    take(o.watchlist, "watchlist", lambda p: len(p.probes) >= 2 and p.bank == max(q.bank for q in passengers))
    for i, p in enumerate(passengers):
        if "watchlist" in p.roles:
            passengers[i].watchlist_photo = p.probes[-1]
            passengers[i].probes = p.probes[:-1]
    take(o.opt_outs, "opt_out")
    # Late enrolment needs a third photo: the live capture, the chip photo, a touchpoint capture.
    take(round(n * o.late_enrol_share), "late_enrol", lambda p: len(p.probes) >= 2)
    for p in passengers:
        if "late_enrol" in p.roles:
            # No bags (no check-in) and no lounge: a boarding pass does not say who may use it.
            p.chip_photo, p.probes, p.bags, p.lounge = p.probes[-1], p.probes[:-1], 0, False
    take(round(n * o.wrong_gate_share), "wrong_gate")
    take(round(n * o.double_board_share), "double_board")
    take(round(n * o.lounge_first_share), "lounge_first", lambda p: p.lounge)
    take(round(n * o.kiosk_repeat_share), "kiosk_repeat")
    if len(flights) < 2:
        for p in passengers:
            p.roles.discard("wrong_gate")
