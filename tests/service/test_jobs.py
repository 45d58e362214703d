"""The background jobs lease (service/jobs.py): one process of several on a PostgreSQL database holds it;
when that process dies (kill -9) another takes it over; on SQLite (one process) it is always held."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from service.db import make_engine
from service.jobs import JobLease

HOLDER = textwrap.dedent(
    """
    import sys, time
    from service.db import make_engine
    from service.jobs import JobLease

    lease = JobLease(make_engine(sys.argv[1]))
    print("held" if lease.refresh() else "not held", flush=True)
    time.sleep(600)
    """
)


def test_sqlite_means_one_process_and_the_lease_is_always_held(tmp_path):
    lease = JobLease(make_engine(f"sqlite:///{tmp_path / 'x.db'}"))
    assert lease.held and lease.refresh()
    lease.release()


def test_one_process_holds_the_lease_and_another_takes_over_when_it_is_killed(postgres_url):
    root = Path(__file__).resolve().parents[2]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, postgres_url],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        text=True,
    )
    engine = make_engine(postgres_url)
    lease = JobLease(engine)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not lease.refresh() and not lease.held  # the other process has it
        assert not lease.refresh()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        deadline = time.monotonic() + 10  # PostgreSQL ends the dead process's session: the lock is free
        while not lease.refresh():
            assert time.monotonic() < deadline, "the lease was not taken over"
            time.sleep(0.1)
        assert lease.held and lease.refresh()  # kept on the next check
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        lease.release()
        engine.dispose()


def test_a_holder_whose_session_is_gone_stops_holding_and_a_graceful_release_frees_it(postgres_url):
    engine = make_engine(postgres_url)
    first, second = JobLease(engine), JobLease(engine)
    try:
        assert first.refresh() and not second.refresh()
        admin = create_engine(postgres_url)
        with admin.connect() as conn:  # the holder's connection dies (network, server restart)
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
                )
            )
        admin.dispose()
        assert not first.refresh() and not first.held  # noticed at its next check: no jobs run
        assert second.refresh()
        second.release()  # shut-down: freed at once
        assert first.refresh()
    finally:
        first.release()
        second.release()
        engine.dispose()


@pytest.mark.parametrize("held", [True, False])
def test_only_the_holder_purges(held, tmp_path, embedder):
    """purge_periodically runs the purge only while this process holds the lease."""
    import asyncio

    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.retention import purge_periodically
    from tests.service.service_fixtures import make_settings, run_async

    settings = make_settings(tmp_path, replica_poll_s=0.01)  # retention 0: no purge task of its own
    with TestClient(create_app(settings, embedder=embedder)) as client:
        ctx = client.app.state.ctx
        ctx.jobs.held = held  # as refresh() would leave it

        async def run_briefly():
            task = asyncio.create_task(purge_periodically(ctx, 0.01))
            await asyncio.sleep(0.2)
            task.cancel()

        before = ctx.metrics.job_runs.labels("retention")._value.get()
        run_async(run_briefly)
        runs = ctx.metrics.job_runs.labels("retention")._value.get() - before
    assert (runs > 0) == held, runs
