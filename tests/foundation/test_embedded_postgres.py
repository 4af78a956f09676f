"""The newcomer's database: pgserver's PostgreSQL in a data dir, stopped on exit, reused on restart."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import psutil
import pytest

from flighttoken.db.embedded import EmbeddedDatabaseError, EmbeddedPostgres

pytestmark = [pytest.mark.embedded, pytest.mark.integration]


def postgres_running(pgdata: Path) -> bool:
    for proc in psutil.process_iter(attrs=("name", "cmdline")):
        if proc.info["name"] == "postgres" and str(pgdata) in " ".join(proc.info["cmdline"] or []):
            return True
    return False


async def test_stop_and_start_again_keeps_the_data(tmp_path: Path) -> None:
    db = EmbeddedPostgres(tmp_path / "data")
    dsn = db.start()
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
    await conn.close()
    db.stop()
    assert not postgres_running(db.pgdata)

    again = EmbeddedPostgres(tmp_path / "data")
    conn = await asyncpg.connect(again.start())
    try:
        assert await conn.fetchval("SELECT v FROM kept") == "still here"
    finally:
        await conn.close()
        again.stop()
    assert not postgres_running(again.pgdata)


async def test_a_process_killed_with_minus_9_is_recovered_from(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from flighttoken.db.embedded import EmbeddedPostgres
            EmbeddedPostgres({str(tmp_path / "data")!r}).start()
            print("up", flush=True)
            time.sleep(600)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        out = holder.stdout
        assert out is not None
        assert "up" in iter(lambda: out.readline().strip(), ""), "holder never came up"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    db = EmbeddedPostgres(tmp_path / "data")
    assert postgres_running(db.pgdata), "the killed holder leaves the server running"

    conn = await asyncpg.connect(db.start())
    assert await conn.fetchval("SELECT 1") == 1
    await conn.close()
    db.stop()
    assert not postgres_running(db.pgdata), "the stale handle must not keep the server alive"


def test_an_unwritable_data_dir_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(EmbeddedDatabaseError, match="FLIGHTTOKEN_DATA_DIR") as err:
        EmbeddedPostgres(blocker / "data").start()
    assert "\n" not in str(err.value)
