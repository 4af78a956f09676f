"""The webhook signature an airline verifies: HMAC-SHA256 over "<t>.<body>" with the secret as shown."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from flighttoken.crypto import DecryptionError, MasterKey, generate_master_key
from flighttoken.dcs import signing
from flighttoken.dcs.deliverer import backoff_s
from flighttoken.settings import load_settings

SECRET = "whsec_" + "A" * 43
BODY = b'{"id":"e1","type":"passenger.boarded","data":{"seat":"42A"}}'


def test_the_signature_is_stripes_scheme_and_verifies() -> None:
    header = signing.sign(SECRET, BODY, timestamp=1_800_000_000)
    expected = hmac.new(SECRET.encode(), b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1800000000,v1={expected}"
    assert signing.verify(SECRET, BODY, header, now=1_800_000_010)


def test_a_changed_body_an_old_timestamp_or_another_secret_fail() -> None:
    header = signing.sign(SECRET, BODY, timestamp=1_800_000_000)
    assert not signing.verify(SECRET, BODY.replace(b"42A", b"42B"), header, now=1_800_000_000)
    assert not signing.verify(SECRET, BODY, header, now=1_800_000_000 + 301)  # a replay
    assert not signing.verify("whsec_" + "B" * 43, BODY, header, now=1_800_000_000)
    assert not signing.verify(SECRET, BODY, "v1=" + header.split("v1=")[1], now=1_800_000_000)  # no t


def test_the_stored_secret_opens_only_for_its_airline() -> None:
    master = MasterKey.parse(generate_master_key())
    secret, wrapped = signing.new_secret(master, "CX")
    assert secret.startswith("whsec_") and len(secret) == 6 + 43
    assert secret.encode() not in wrapped.wrapped and signing.unwrap_secret(master, "CX", wrapped) == secret
    with pytest.raises(DecryptionError):  # bound to its airline: a row copied to another does not open
        signing.unwrap_secret(master, "KA", wrapped)


def test_backoff_doubles_within_its_cap_and_is_jittered() -> None:
    s = load_settings({}, dcs_backoff_base_s=1.0, dcs_backoff_cap_s=8.0).dcs
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        waits = [backoff_s(s, attempts) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert max(waits) - min(waits) > ceiling / 10  # not one fixed value: instances spread out
