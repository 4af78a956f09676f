"""Envelope encryption: sealing, wrapping, rotation, crypto-shredding and master key loading."""

from __future__ import annotations

import base64
import os
import stat
import threading

import msgspec
import pytest

from flighttoken.crypto import (
    OVERHEAD,
    WRAPPED_SIZE,
    DataKeyCache,
    DecryptionError,
    MasterKey,
    UnknownKekError,
    WrappedKey,
    generate_master_key,
    load_or_create_key_file,
    new_data_key,
    open_sealed,
    seal,
)

TEMPLATE = bytes(range(256)) * 8  # 2048 bytes, like 512 float32
AAD = b"token:7f0c:model:w600k_mbf"
FLIGHT_A = b"flight:0b7e6f4e-9d1a-4c55-9a55-2f1e7d1f0a01"
FLIGHT_B = b"flight:5a3c1d2e-1111-4c55-9a55-2f1e7d1f0a02"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _ring(*ids: str) -> MasterKey:
    return MasterKey.parse(",".join(f"{i}:{_b64(os.urandom(32))}" for i in ids))


def _flip(blob: bytes, index: int) -> bytes:
    b = bytearray(blob)
    b[index] ^= 0x01
    return bytes(b)


# --- sealing ------------------------------------------------------------------------------------


def test_seal_roundtrip_format_and_fresh_nonce():
    dek = new_data_key()
    blob = seal(dek, TEMPLATE, AAD)
    assert len(dek) == 32
    assert len(blob) == len(TEMPLATE) + OVERHEAD == 2077
    assert blob[0] == 1
    assert TEMPLATE[:64] not in blob
    assert open_sealed(dek, blob, AAD) == TEMPLATE
    assert open_sealed(dek, memoryview(blob), AAD) == TEMPLATE
    assert seal(dek, TEMPLATE, AAD)[1:13] != blob[1:13]  # random nonce per seal


@pytest.mark.parametrize(
    ("blob_change", "aad"),
    [
        (lambda b: _flip(b, 0), AAD),  # version byte
        (lambda b: _flip(b, 5), AAD),  # nonce
        (lambda b: _flip(b, 100), AAD),  # ciphertext
        (lambda b: _flip(b, len(b) - 1), AAD),  # tag
        (lambda b: b[:-1], AAD),  # truncated tag
        (lambda b: b[: OVERHEAD - 1], AAD),  # shorter than any valid blob
        (lambda b: b, b"token:7f0c:model:other"),  # moved to another row/model
    ],
    ids=["version", "nonce", "ciphertext", "tag", "truncated", "too-short", "other-aad"],
)
def test_tampering_is_detected(blob_change, aad):
    dek = new_data_key()
    blob = seal(dek, TEMPLATE, AAD)
    with pytest.raises(DecryptionError):
        open_sealed(dek, blob_change(blob), aad)


def test_wrong_data_key_is_detected():
    blob = seal(new_data_key(), TEMPLATE, AAD)
    with pytest.raises(DecryptionError):
        open_sealed(new_data_key(), blob, AAD)


def test_bad_key_size_and_empty_aad_are_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        seal(b"\x00" * 16, TEMPLATE, AAD)
    with pytest.raises(ValueError, match="aad"):
        seal(new_data_key(), TEMPLATE, b"")


# --- wrapping -----------------------------------------------------------------------------------


def test_wrap_unwrap_roundtrip_and_storage_shape():
    master = _ring("kek-2026-11", "kek-2026-05")
    dek = new_data_key()
    wrapped = master.wrap(dek, FLIGHT_A)
    assert wrapped.kek_id == "kek-2026-11"
    assert len(wrapped.wrapped) == WRAPPED_SIZE == 61
    assert dek not in wrapped.wrapped
    assert master.unwrap(wrapped, FLIGHT_A) == dek
    # survives a msgspec round trip (what a cache or queue would do)
    again = msgspec.msgpack.decode(msgspec.msgpack.encode(wrapped), type=WrappedKey)
    assert master.unwrap(again, FLIGHT_A) == dek


def test_wrapped_dek_cannot_move_to_another_flight():
    master = _ring("kek-a")
    wrapped = master.wrap(new_data_key(), FLIGHT_A)
    with pytest.raises(DecryptionError):
        master.unwrap(wrapped, FLIGHT_B)


def test_kek_id_label_is_authenticated():
    same = _b64(os.urandom(32))
    master = MasterKey.parse(f"kek-a:{same},kek-b:{same}")  # only the label differs
    wrapped = master.wrap(new_data_key(), FLIGHT_A)
    with pytest.raises(DecryptionError):
        master.unwrap(WrappedKey("kek-b", wrapped.wrapped), FLIGHT_A)
    with pytest.raises(DecryptionError):
        master.unwrap(WrappedKey("kek-a", _flip(wrapped.wrapped, 20)), FLIGHT_A)


def test_unknown_kek_id_gives_a_clear_error():
    wrapped = _ring("kek-2026-05").wrap(new_data_key(), FLIGHT_A)
    master = _ring("kek-2026-11")
    with pytest.raises(UnknownKekError, match=r"'kek-2026-05'.*not in the master keyring.*kek-2026-11"):
        master.unwrap(wrapped, FLIGHT_A)


def test_rotation_rewraps_dek_and_old_kek_can_be_removed():
    old_entry = f"kek-2026-05:{_b64(os.urandom(32))}"
    new_entry = f"kek-2026-11:{_b64(os.urandom(32))}"
    before = MasterKey.parse(old_entry)
    dek = new_data_key()
    wrapped = before.wrap(dek, FLIGHT_A)
    template_blob = seal(dek, TEMPLATE, AAD)  # sealed before the rotation, never rewritten

    during = MasterKey.parse(f"{new_entry},{old_entry}")  # new KEK current, old still readable
    assert during.current_id == "kek-2026-11"
    assert during.needs_rewrap(wrapped)
    rewrapped = during.rewrap(wrapped, FLIGHT_A)
    assert rewrapped.kek_id == "kek-2026-11"
    assert rewrapped.wrapped != wrapped.wrapped
    assert not during.needs_rewrap(rewrapped)

    after = MasterKey.parse(new_entry)  # old KEK dropped from the ring
    assert open_sealed(after.unwrap(rewrapped, FLIGHT_A), template_blob, AAD) == TEMPLATE
    with pytest.raises(UnknownKekError):
        after.unwrap(wrapped, FLIGHT_A)  # a stale, un-rewrapped copy is now unreadable


def test_destroyed_dek_makes_templates_unreadable():
    ring_text = ",".join(f"k{i}:{_b64(os.urandom(32))}" for i in range(2))
    master = MasterKey.parse(ring_text)
    kek_bytes = [base64.b64decode(e.split(":")[1]) for e in ring_text.split(",")]

    db = {FLIGHT_A: master.wrap(new_data_key(), FLIGHT_A), FLIGHT_B: master.wrap(new_data_key(), FLIGHT_B)}
    cache = DataKeyCache(master)
    blob_a = seal(cache.unwrap(FLIGHT_A, db[FLIGHT_A]), TEMPLATE, AAD)
    blob_b = seal(cache.unwrap(FLIGHT_B, db[FLIGHT_B]), TEMPLATE, AAD)

    del db[FLIGHT_A]  # purge: the wrapped DEK goes first ...
    assert cache.forget(FLIGHT_A)  # ... then the copy in memory
    assert cache.get(FLIGHT_A) is None
    assert not cache.forget(FLIGHT_A)
    # The backup copy of blob_a opens under no KEK of the ring, nor under any other data key.
    for key in [*kek_bytes, new_data_key()]:
        with pytest.raises(DecryptionError):
            open_sealed(key, blob_a, AAD)
    # Other flights are unaffected.
    assert open_sealed(master.unwrap(db[FLIGHT_B], FLIGHT_B), blob_b, AAD) == TEMPLATE


# --- data key cache -----------------------------------------------------------------------------


def test_cache_serves_without_unwrapping_and_evicts_oldest():
    master = _ring("kek-a")
    dek = new_data_key()
    cache = DataKeyCache(master, max_entries=2)
    assert cache.unwrap(FLIGHT_A, master.wrap(dek, FLIGHT_A)) == dek
    assert cache.get(FLIGHT_A) == dek
    cache.put(FLIGHT_B, new_data_key())
    cache.put(b"watchlist:1", new_data_key())
    assert len(cache) == 2
    assert cache.get(FLIGHT_A) is None
    assert cache.get(FLIGHT_B) is not None
    cache.clear()
    assert len(cache) == 0


def test_cache_does_not_store_a_key_that_fails_to_unwrap():
    master = _ring("kek-a")
    cache = DataKeyCache(master)
    with pytest.raises(DecryptionError):
        cache.unwrap(FLIGHT_B, master.wrap(new_data_key(), FLIGHT_A))
    assert cache.get(FLIGHT_B) is None


# --- master key parsing -------------------------------------------------------------------------


def test_parse_accepts_standard_urlsafe_padded_and_unpadded():
    raw = bytes([0xFB, 0xFF] * 16)  # encodes with '+', '/' (standard) or '-', '_' (urlsafe)
    forms = [
        _b64(raw),
        base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        f"  {_b64(raw)}\n",
    ]
    assert "+" in forms[0] and "-" in forms[1]
    ids = {MasterKey.parse(f).current_id for f in forms}
    assert len(ids) == 1 and ids.pop().startswith("kek-")  # bare key: stable id derived from it
    assert MasterKey.parse(f"named:{forms[2]}").current_id == "named"


def test_keyring_first_entry_is_current_and_repr_hides_keys():
    a, b = _b64(os.urandom(32)), _b64(os.urandom(32))
    master = MasterKey.parse(f"kek-2026-11:{a}, kek-2026-05:{b}")
    assert master.current_id == "kek-2026-11"
    assert master.key_ids == ("kek-2026-11", "kek-2026-05")
    assert a not in repr(master) and b not in repr(master)
    assert "kek-2026-11" in repr(master)


SECRET16 = _b64(b"S" * 16)
SECRET32 = _b64(b"K" * 32)
SECRET_HEX = (b"K" * 32).hex()


@pytest.mark.parametrize(
    ("text", "message", "secret"),
    [
        (SECRET16, "decodes to 16 bytes", SECRET16),
        (SECRET_HEX, "decodes to 48 bytes", SECRET_HEX),  # `openssl rand -hex 32` by mistake
        ("@@not*base64@@", "not valid base64", "@@not*base64@@"),
        ("", "empty", None),
        (f"kek-a:{SECRET32},", "entry 2: empty", SECRET32),
        (f"kek-a:{SECRET32},kek-a:{_b64(b'L' * 32)}", "repeats the key id", SECRET32),
        (f"{SECRET32}:kek-a", "key id must be", SECRET32),  # id and key swapped
        (f"kek-a:{SECRET32},kek-b:{SECRET16}", "entry 2: decodes to 16 bytes", SECRET16),
    ],
    ids=["short", "hex", "bad-base64", "empty", "stray-comma", "duplicate-id", "swapped", "ring-entry"],
)
def test_parse_errors_name_the_problem_without_echoing_the_key(text, message, secret):
    with pytest.raises(ValueError, match=message) as info:
        MasterKey.parse(text)
    if secret:
        assert secret not in str(info.value)
        assert secret.rstrip("=")[:12] not in str(info.value)


def test_from_sources(tmp_path):
    entry = generate_master_key("kek-file")
    key_file = tmp_path / "master.key"
    key_file.write_text(entry + "\n")
    assert MasterKey.from_sources(None, str(key_file)).current_id == "kek-file"
    assert MasterKey.from_sources(entry, "").current_id == "kek-file"  # "" counts as unset
    with pytest.raises(ValueError, match="not both"):
        MasterKey.from_sources(entry, str(key_file))
    with pytest.raises(ValueError, match="no master key configured"):
        MasterKey.from_sources("", None)
    with pytest.raises(ValueError, match=r"master key file .*missing\.key: cannot read"):
        MasterKey.from_sources(None, str(tmp_path / "missing.key"))
    key_file.write_text(SECRET16)
    with pytest.raises(ValueError, match=r"master key file .*master\.key: decodes to 16 bytes") as info:
        MasterKey.from_sources(None, str(key_file))
    assert SECRET16 not in str(info.value)


def test_generate_master_key_is_a_fresh_valid_keyring_entry():
    a, b = generate_master_key(), generate_master_key()
    assert a != b
    ring = MasterKey.parse(f"{a},{b}")
    assert ring.current_id == a.split(":")[0] and ring.current_id.startswith("kek-")
    with pytest.raises(ValueError, match="key id"):
        generate_master_key("bad id")


# --- development key file -----------------------------------------------------------------------


def test_key_file_is_created_0600_and_reused(tmp_path):
    path = tmp_path / "data" / "master.key"
    old_umask = os.umask(0o022)
    try:
        first = load_or_create_key_file(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first
    assert MasterKey.from_sources(None, str(path)).current_id == MasterKey.parse(first).current_id
    assert load_or_create_key_file(path) == first  # second start: same key
    assert sorted(p.name for p in path.parent.iterdir()) == ["master.key"]  # no temp files left


def test_key_file_never_replaces_an_existing_key(tmp_path):
    path = tmp_path / "master.key"
    existing = generate_master_key("kek-existing")
    path.write_text(existing + "\n")
    assert load_or_create_key_file(path) == existing
    assert path.read_text().strip() == existing


def test_key_file_concurrent_creation_agrees_on_one_key(tmp_path):
    path = tmp_path / "master.key"
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(load_or_create_key_file(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert path.read_text().strip() == results[0]


def test_key_file_with_bad_content_is_reported_not_replaced(tmp_path):
    path = tmp_path / "master.key"
    path.write_text("")
    with pytest.raises(ValueError, match=r"master key file .*master\.key: .*empty"):
        load_or_create_key_file(path)
    assert path.read_text() == ""


def test_a_mac_is_keyed_by_kek_and_purpose_and_checkable_after_rotation() -> None:
    entry_a = generate_master_key("kek-a")
    ring = MasterKey.parse(entry_a)
    kek_id, digest = ring.mac(b"idempotency-body", b"body")
    assert kek_id == "kek-a" and len(digest) == 32 and ring.mac(b"idempotency-body", b"body") == (kek_id, digest)
    assert ring.mac(b"other-purpose", b"body")[1] != digest
    assert ring.mac(b"idempotency-body", b"bodY")[1] != digest
    assert _ring("kek-a").mac(b"idempotency-body", b"body")[1] != digest  # another key, another MAC
    rotated = MasterKey.parse(generate_master_key("kek-b") + "," + entry_a)
    assert rotated.mac(b"idempotency-body", b"body")[0] == "kek-b"
    assert rotated.mac(b"idempotency-body", b"body", "kek-a") == (kek_id, digest)
    with pytest.raises(UnknownKekError):
        ring.mac(b"idempotency-body", b"body", "kek-gone")
