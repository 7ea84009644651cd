"""Per-VM run locks: O_EXCL, holder named, stale locks detected and taken over (F18, docs/dev/faults.md#f18)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal, _lock

A = {"uuid": "aaaaaaaa-0000-0000-0000-000000000001", "name": "vm-a"}
B = {"uuid": "bbbbbbbb-0000-0000-0000-000000000002", "name": "vm-b"}


@pytest.fixture
def state_dir(tmp_path):
    return _journal.ensure_state_dir(str(tmp_path / "state"))


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_acquire_release(state_dir):
    taken, takeovers = _lock.acquire(state_dir, [A, B], "run-1", time.time() + 60)
    assert sorted(taken) == [A["uuid"], B["uuid"]] and takeovers == []
    path = _lock.lock_path(state_dir, A["uuid"])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    rec = _lock.read_lock(path)
    assert rec["run_id"] == "run-1" and rec["pid"] == os.getpid() and rec["vm"] == "vm-a"
    assert _lock.release(state_dir, taken, "other-run") == []  # never another run's lock
    assert sorted(_lock.release(state_dir, taken, "run-1")) == sorted(taken)
    assert _lock.holders(state_dir) == []


def test_second_run_fails_fast_naming_holder(state_dir):
    _lock.acquire(state_dir, [A], "run-1", time.time() + 60)
    t0 = time.monotonic()
    with pytest.raises(_lock.LockBusy) as info:
        _lock.acquire(state_dir, [B, A], "run-2", time.time() + 60)
    assert time.monotonic() - t0 < 1.0
    msg = str(info.value)
    assert "run-1" in msg and "pid %d" % os.getpid() in msg and "started" in msg and "vm-a" in msg
    assert info.value.holder["run_id"] == "run-1"
    # all or nothing: run-2 did not keep B
    assert _lock.read_lock(_lock.lock_path(state_dir, B["uuid"])) is None


def test_stale_lock_dead_pid_taken_over(state_dir):
    path = _lock.lock_path(state_dir, A["uuid"])
    with open(path, "w") as fh:
        json.dump({"run_id": "run-dead", "pid": _dead_pid(), "start": 1, "started": time.time(),
                   "deadline": time.time() + 600, "host": "h"}, fh)
    taken, takeovers = _lock.acquire(state_dir, [A], "run-3", time.time() + 60)
    assert taken == [A["uuid"]]
    assert takeovers[0]["holder"]["run_id"] == "run-dead" and "gone" in takeovers[0]["reason"]
    assert _lock.read_lock(path)["run_id"] == "run-3"


def test_stale_lock_past_deadline_taken_over(state_dir):
    _lock.acquire(state_dir, [A], "run-old", time.time() - 100, now=time.time() - 200)
    taken, takeovers = _lock.acquire(state_dir, [A], "run-new", time.time() + 60)
    assert takeovers and "deadline" in takeovers[0]["reason"]


def test_lock_staleness_follows_journal(state_dir):
    # a vm_quiesce run: the module pid is gone, but the journal names a live watchdog → live
    j = _journal.new_journal("run-q", "vm_quiesce", "u", "suspend", 60, [A])
    j["owners"] = [{"pid": _dead_pid(), "start": 1, "role": "module"}, _journal.owner(role="watchdog")]
    rec = {"run_id": "run-q", "pid": j["owners"][0]["pid"], "start": 1, "deadline": time.time() + 60}
    assert _lock.lock_staleness(rec, j) is None
    assert "released" in _lock.lock_staleness(rec, _journal.mark_final(dict(j), "released", "t"))
    assert _lock.lock_staleness({}, None) is not None


def test_corrupt_lock_is_stale(state_dir):
    path = _lock.lock_path(state_dir, A["uuid"])
    with open(path, "w") as fh:
        fh.write("garbage")
    _taken, takeovers = _lock.acquire(state_dir, [A], "run-4", time.time() + 60)
    assert "corrupt" in takeovers[0]["reason"]


def test_lock_path_rejects_traversal(state_dir):
    for bad in ("../x", "", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            _lock.lock_path(state_dir, bad)


def test_lock_of_a_released_run_still_committing_its_overlays_is_live():
    rec = {"run_id": "r1", "pid": 1, "start": 1, "deadline": 2000.0}
    pending = [{"uuid": "u1", "overlays": [{"target": "vda", "state": "created", "removed": False}]}]
    j = {"module": "vm_backup", "state": "released", "deadline": 2000.0, "owners": [_journal.owner()], "vms": pending}
    assert _lock.lock_staleness(rec, j, 1000.0) is None      # its module commits: nobody may fence the VM meanwhile
    j_done = dict(j, vms=[{"uuid": "u1", "overlays": [{"target": "vda", "state": "committed", "removed": True}]}])
    assert _lock.lock_staleness(rec, j_done, 1000.0) == "its run is released"
    assert _lock.lock_staleness(rec, dict(j, owners=[]), 1000.0) == "its run is released"  # died: the next run recovers
