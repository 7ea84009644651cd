"""The watchdog script itself (no QEMU): started as the modules start it, against journals on disk.

The watchdog opens its own libvirt connection; with test:///default that is a fresh in-process driver whose
'test' domain runs, so a release finds it 'already running' — enough to check the journal/lock handling."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import zipfile

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal, _lock, _watchdog

pytest.importorskip("libvirt")
TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the test driver's default domain


@pytest.fixture
def state_dir(tmp_path):
    return _journal.ensure_state_dir(str(tmp_path / "state"))


def dead_owner():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return {"pid": proc.pid, "start": 1, "role": "module"}


def make_run(state_dir, deadline_s, owners=None, release_on_owner_exit=False, state="quiesced"):
    run_id = _journal.new_run_id("wd")
    j = _journal.new_journal(run_id, "vm_backup", "test:///default", "suspend", deadline_s,
                             [{"uuid": TEST_UUID, "name": "test", "prior_state": "running"}],
                             release_on_owner_exit=release_on_owner_exit)
    j["vms"][0]["action"] = "suspended"
    j["state"] = state
    if owners is not None:
        j["owners"] = owners
    path = _journal.write(state_dir, j)
    _lock.acquire(state_dir, [{"uuid": TEST_UUID, "name": "test"}], run_id, j["deadline"])
    return run_id, path


def run_watchdog(state_dir, path, timeout=15):
    proc = subprocess.Popen([sys.executable, _watchdog.install(state_dir), path])
    return proc.wait(timeout)


def test_install_is_0600_and_idempotent(state_dir):
    path = _watchdog.install(state_dir)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    mtime = os.stat(path).st_mtime_ns
    assert _watchdog.install(state_dir) == path and os.stat(path).st_mtime_ns == mtime
    names = zipfile.ZipFile(path).namelist()
    assert "__main__.py" in names
    assert "ansible_collections/kvmsnap/core/plugins/module_utils/_watchdog.py" in names


def test_stale_copy_is_replaced(state_dir):
    """An installed watchdog of another version (another content) is rewritten by the next install."""
    path = _watchdog.install(state_dir)
    with open(path, "wb") as fh:
        fh.write(b"an older watchdog")
    assert _watchdog.install(state_dir) == path
    with open(path, "rb") as fh:
        assert fh.read() == _watchdog.build_bundle()


def test_runs_without_ansible(state_dir):
    """The installed watchdog needs no Ansible on the target: the release works with every ansible module blocked."""
    run_id, path = make_run(state_dir, 1.0)
    blocked = ("import runpy, sys; sys.modules['ansible'] = None; sys.argv = sys.argv[1:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", blocked, _watchdog.install(state_dir), path], timeout=15,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    j = _journal.read(state_dir, run_id)
    assert j["state"] == "released" and j["vms"][0]["released_how"] == "watchdog"
    assert _lock.holders(state_dir) == []


def test_releases_at_deadline_and_cleans_up(state_dir):
    run_id, path = make_run(state_dir, 1.0)
    t0 = time.monotonic()
    assert run_watchdog(state_dir, path) == 0
    assert 0.5 <= time.monotonic() - t0 < 5
    j = _journal.read(state_dir, run_id)
    assert j["state"] == "released" and j["released_by"] == "watchdog (deadline)"
    assert j["vms"][0]["released"] and j["vms"][0]["release_result"] == "already running"
    assert _lock.holders(state_dir) == []
    assert "releasing run %s: deadline" % run_id in open(os.path.join(state_dir, "watchdog.log")).read()


def test_releases_at_once_when_owner_dies(state_dir):
    run_id, path = make_run(state_dir, 600, owners=[dead_owner()], release_on_owner_exit=True)
    t0 = time.monotonic()
    assert run_watchdog(state_dir, path) == 0
    assert time.monotonic() - t0 < 5  # not the 600 s deadline
    assert _journal.read(state_dir, run_id)["released_by"] == "watchdog (owner process gone)"


def test_dead_owner_of_finished_quiesce_waits_for_deadline(state_dir):
    # vm_quiesce: the module exits after quiescing on purpose; only the deadline releases
    run_id, path = make_run(state_dir, 600, owners=[dead_owner()], release_on_owner_exit=False)
    proc = subprocess.Popen([sys.executable, _watchdog.install(state_dir), path])
    try:
        time.sleep(1.0)
        assert proc.poll() is None
        # ... and it exits as soon as the journal says released
        _journal.update(state_dir, run_id, lambda j: _journal.mark_final(j, "released", "test"))
        assert proc.wait(3) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_exits_when_journal_missing(state_dir):
    assert run_watchdog(state_dir, os.path.join(state_dir, "runs", "gone.json")) == 0
