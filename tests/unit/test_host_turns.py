"""Turns of overlay switches on one host across processes (``_host_turns``): the switch lock, the wait for other
runs' preparation, and the wait for the process that switched just before; real processes and real file locks."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _host_turns
from ansible_collections.kvmsnap.core.plugins.module_utils._host_turns import Preparing, host_switch_lock, quiet_cpu

HOLDER = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
    "fcntl.flock(fd, getattr(fcntl, sys.argv[2]))\n"
    "print('held', flush=True)\n"
    "time.sleep(float(sys.argv[3]))\n")


@pytest.fixture()
def holder(tmp_path):
    """holder(lock file name, 'LOCK_EX'|'LOCK_SH', seconds): another process holding that lock of the state dir."""
    procs = []

    def start(name: str, how: str, seconds: float) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / name), how, str(seconds)],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_switches_of_two_processes_on_one_host_take_turns(tmp_path, holder):
    holder(_host_turns.SWITCH_LOCK, "LOCK_EX", 0.6)
    t0 = time.monotonic()
    with host_switch_lock(str(tmp_path), wait=0.1) as held:
        assert not held and time.monotonic() - t0 >= 0.1  # gave up waiting: the switch goes ahead
    with host_switch_lock(str(tmp_path), wait=10) as held:
        assert held and time.monotonic() - t0 >= 0.5  # waited for the other process's switch to end


def test_a_switch_waits_for_another_run_preparing_bounded(tmp_path, holder):
    holder(_host_turns.PREPARE_LOCK, "LOCK_SH", 0.6)
    t0 = time.monotonic()
    with host_switch_lock(str(tmp_path), prepare_wait=0.1) as held:
        waited = time.monotonic() - t0
        assert held and 0.1 <= waited < 0.5  # the preparation goes on: the switch went ahead after the bound
    with host_switch_lock(str(tmp_path), prepare_wait=10) as held:
        assert held and time.monotonic() - t0 >= 0.5  # the other run finished preparing first
        # during the turn no preparation can start: another process's shared lock is refused
        fd = os.open(str(tmp_path / _host_turns.PREPARE_LOCK), os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_preparations_share_and_wait_for_a_switch_in_progress(tmp_path, holder):
    other = Preparing()
    assert other.begin(str(tmp_path), wait=0.1)  # preparations share the lock
    mine = Preparing()
    assert mine.begin(str(tmp_path), wait=0.1) and mine.active
    mine.end()
    mine.end()  # idempotent
    other.end()
    assert not mine.active
    holder(_host_turns.PREPARE_LOCK, "LOCK_EX", 0.6)  # another run's switch holds its turn
    t0 = time.monotonic()
    assert not mine.begin(str(tmp_path), wait=0.1) and not mine.active  # bounded: the run goes ahead
    assert mine.begin(str(tmp_path), wait=10) and time.monotonic() - t0 >= 0.5


def _name_last(tmp_path, pid: int, when: float) -> None:
    (tmp_path / _host_turns.SWITCH_LOCK).write_text("%d %.3f\n" % (pid, when))


def test_the_turn_waits_for_the_process_that_switched_just_before(tmp_path):
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.monotonic()\n"
                             "while time.monotonic() - t < 5: pass\n"])  # busy for 5 s: never settles
    try:
        _name_last(tmp_path, busy.pid, time.time())
        t0 = time.monotonic()
        with host_switch_lock(str(tmp_path)) as held:
            assert held and time.monotonic() - t0 >= _host_turns.PREVIOUS_SETTLE * 0.9  # bounded wait
        assert (tmp_path / _host_turns.SWITCH_LOCK).read_text().split()[0] == str(os.getpid())  # names itself now
        # a record of long ago (another run's) or of this process: no wait
        for pid, when in ((busy.pid, time.time() - 60), (os.getpid(), time.time())):
            _name_last(tmp_path, pid, when)
            t0 = time.monotonic()
            with host_switch_lock(str(tmp_path)):
                assert time.monotonic() - t0 < 0.1
    finally:
        busy.kill()
        busy.wait()


def test_the_turn_does_not_wait_for_a_process_that_is_gone(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _name_last(tmp_path, gone.pid, time.time())
    t0 = time.monotonic()
    with host_switch_lock(str(tmp_path)) as held:
        # settle returns at once; what is left is the quiet-CPU wait, bounded
        assert held and time.monotonic() - t0 < _host_turns.PREVIOUS_SETTLE + 0.1


def test_quiet_cpu_is_bounded_while_another_task_runs():
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.monotonic()\n"
                             "while time.monotonic() - t < 5: pass\n"])
    try:
        time.sleep(0.2)
        assert 0.2 <= quiet_cpu(0.25) < 0.5  # the spinning process is always runnable
    finally:
        busy.kill()
        busy.wait()
