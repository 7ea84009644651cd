"""How the overlay fence paces its VMs: a bounded pool of workers (``_overlay_run.pooled``) and the wait for the
run's watchdog to finish starting (``_host_turns.settle``), on real threads and real processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils._fence_conn import SharedConnection
from ansible_collections.kvmsnap.core.plugins.module_utils._host_turns import settle
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_run import pooled


def test_pooled_keeps_the_order_and_at_most_n_at_a_time():
    lock = threading.Lock()
    running, peak = [0], [0]

    def fn(item: int) -> dict:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return {"item": item}
    for workers in (1, 3):
        peak[0] = 0
        assert [r["item"] for r in pooled(list(range(10)), fn, workers)] == list(range(10))
        assert peak[0] == workers


def test_pooled_binds_each_worker_to_its_own_connection_slot():
    sc = SharedConnection(None, slots=3)
    seen: dict[str, int] = {}

    def fn(item: int) -> dict:
        seen[threading.current_thread().name] = sc._tls.slot
        time.sleep(0.01)
        return {}
    pooled(list(range(9)), fn, 3, sc)
    assert sorted(seen.values()) == [0, 1, 2]


def test_pooled_reports_a_raising_item_and_goes_on():
    def fn(item: int) -> dict:
        if item == 1:
            raise RuntimeError("boom")
        return {"item": item}
    out = pooled([0, 1, 2], fn, 1)
    assert out[0] == {"item": 0} and out[2] == {"item": 2}
    assert out[1]["error"] == "boom" and "t_done" in out[1]


@pytest.fixture
def process():
    procs = []

    def start(code: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", code])
        procs.append(proc)
        return proc
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_settle_returns_once_the_process_sleeps(process):
    proc = process("import time; time.sleep(30)")
    time.sleep(0.3)  # its start-up is over
    assert settle(proc.pid, limit=2.0) < 0.5


def test_settle_waits_for_a_busy_process_at_most_its_limit(process):
    proc = process("while True: pass")
    time.sleep(0.1)
    waited = settle(proc.pid, limit=0.3)
    assert 0.3 <= waited < 1.0


def test_settle_without_a_process_does_not_wait(process):
    assert settle(None) == 0.0
    proc = process("pass")
    proc.wait()
    assert settle(proc.pid, limit=2.0) < 0.1  # reaped: no /proc entry
