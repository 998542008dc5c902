"""A private PostgreSQL for Airflow's metadata database, through ``tools/postgres.sh``: loopback
only, its data in a directory the caller owns (a temp dir), stopped by the caller."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any

from kpo_async.testing.procs import StackError

REPO = Path(__file__).resolve().parents[2]
POSTGRES_SH = REPO / "tools" / "postgres.sh"


def start_postgres(data_dir: Path) -> str:
    """initdb + start with the data in `data_dir`; the SQLAlchemy URL of its ``airflow`` database.
    Should this process die before `stop_postgres`, the script's watchdog stops the server."""
    if not POSTGRES_SH.exists():
        raise StackError(f"PostgreSQL needs {POSTGRES_SH} (a source checkout); use database='sqlite'")
    done = subprocess.run(
        [str(POSTGRES_SH), "start", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "KPO_ASYNC_PG_OWNER": str(os.getpid())},
    )
    if done.returncode != 0:
        # A half-started server (e.g. pg_ctl timed out on a loaded machine) must not outlive us.
        stop_postgres(data_dir)
        raise StackError(f"tools/postgres.sh start failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def stop_postgres(data_dir: Path) -> None:
    """Fast shutdown; nothing to do when it never started."""
    if data_dir.exists():
        subprocess.run([str(POSTGRES_SH), "stop", str(data_dir)], check=False, timeout=120)


def query_postgres(sql_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read-only SQL with ``?`` placeholders."""
    import psycopg2

    with contextlib.closing(psycopg2.connect(sql_url.replace("postgresql+psycopg2", "postgresql"))) as db:
        with db.cursor() as cursor:
            cursor.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall()
