"""The fence journal: format, atomic 0600 files, staleness, state dir safety."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _journal

VM = {"uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f", "name": "vm1", "prior_state": "running"}


@pytest.fixture
def state_dir(tmp_path):
    return _journal.ensure_state_dir(str(tmp_path / "state"))


def test_state_dir_modes(state_dir):
    for sub in ("", "runs", "locks"):
        mode = stat.S_IMODE(os.stat(os.path.join(state_dir, sub)).st_mode)
        assert mode == 0o700


def test_state_dir_tightens_loose_mode(tmp_path):
    d = tmp_path / "loose"
    d.mkdir(mode=0o777)
    os.chmod(d, 0o777)
    _journal.ensure_state_dir(str(d))
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700


def test_state_dir_refuses_symlink_and_relative(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(_journal.JournalError, match="symlink"):
        _journal.ensure_state_dir(str(link))
    with pytest.raises(_journal.JournalError, match="absolute"):
        _journal.ensure_state_dir("relative/dir")


def test_write_read_roundtrip_and_mode(state_dir):
    j = _journal.new_journal(_journal.new_run_id("quiesce"), "vm_quiesce", "qemu:///system", "suspend", 60, [VM])
    path = _journal.write(state_dir, j)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    back = _journal.read(state_dir, j["run_id"])
    assert back == j
    assert back["vms"][0] == {"uuid": VM["uuid"], "name": "vm1", "action": "none", "prior_state": "running",
                              "consistency": None, "released": False, "release_error": None}
    assert back["deadline"] - back["started"] == 60
    assert back["owners"][0]["pid"] == os.getpid()
    assert not [n for n in os.listdir(os.path.dirname(path)) if ".tmp-" in n]


def test_update_is_read_modify_write(state_dir):
    j = _journal.new_journal("run-a", "vm_quiesce", "test:///default", "freeze", 30, [VM])
    _journal.write(state_dir, j)

    def mark(journal):
        journal["vms"][0]["action"] = "frozen"
        journal["state"] = "quiesced"
    out = _journal.update(state_dir, "run-a", mark)
    assert out["vms"][0]["action"] == "frozen"
    assert _journal.read(state_dir, "run-a")["state"] == "quiesced"
    assert [v["uuid"] for v in _journal.pending_vms(out)] == [VM["uuid"]]


@pytest.mark.parametrize("mutate, match", [
    (lambda j: j.update(version=2), "version"),
    (lambda j: j.update(run_id="../x"), "run_id"),
    (lambda j: j.update(state="paused"), "state"),
    (lambda j: j["vms"][0].update(action="resumed"), "action"),
    (lambda j: j.update(deadline="soon"), "deadline"),
    (lambda j: j.update(vms={}), "vms"),
])
def test_validate_rejects(mutate, match):
    j = _journal.new_journal("run-b", "vm_quiesce", "test:///default", "suspend", 30, [VM])
    mutate(j)
    with pytest.raises(_journal.JournalError, match=match):
        _journal.validate(j)


def test_corrupt_journal_listed_as_error(state_dir):
    with open(os.path.join(state_dir, "runs", "bad.json"), "w") as fh:
        fh.write("{not json")
    out = _journal.list_journals(state_dir)
    assert len(out) == 1 and "error" in out[0]


def test_run_id_safe_for_paths():
    rid = _journal.new_run_id("backup")
    assert _journal.valid_run_id(rid) and rid.startswith("backup-")
    for bad in ("", "a/b", "../x", "a b", None, "x" * 200):
        assert not _journal.valid_run_id(bad)
    with pytest.raises(_journal.JournalError):
        _journal.journal_path("/tmp", "../../etc/passwd")


def test_owner_alive_and_pid_reuse():
    me = _journal.owner()
    assert _journal.owner_alive(me)
    assert not _journal.owner_alive(dict(me, start=me["start"] + 1))  # same pid, other process
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not _journal.owner_alive({"pid": proc.pid, "start": None})
    assert not _journal.owner_alive({"pid": "x"})


def test_staleness_rules():
    now = time.time()
    live = _journal.new_journal("run-c", "vm_quiesce", "u", "suspend", 60, [VM], now=now)
    assert _journal.staleness(live, now + 1) is None
    assert "deadline" in _journal.staleness(live, now + 60 + _journal.DEADLINE_GRACE + 1)
    dead = dict(live, owners=[{"pid": 2 ** 22 + 7, "start": 1, "role": "module"}])
    assert "gone" in _journal.staleness(dead, now + 1)
    final = _journal.mark_final(dict(live), "released", "test")
    assert _journal.staleness(final, now + 10 ** 6) is None
    with pytest.raises(_journal.JournalError):
        _journal.mark_final(dict(live), "quiesced", "x")


def test_prune_finished(state_dir):
    j = _journal.new_journal("run-old", "vm_quiesce", "u", "suspend", 1, [VM], now=1000.0)
    _journal.mark_final(j, "released", "t", now=1001.0)
    _journal.write(state_dir, j)
    live = _journal.new_journal("run-live", "vm_quiesce", "u", "suspend", 1, [VM], now=1000.0)
    _journal.write(state_dir, live)
    assert _journal.prune_finished(state_dir, now=1001.0 + _journal.KEEP_FINISHED_SECONDS + 1) == ["run-old"]
    assert [j["run_id"] for j in _journal.list_journals(state_dir)] == ["run-live"]


def test_journal_is_json_file(state_dir):
    j = _journal.new_journal("run-d", "vm_backup", "qemu:///system", "auto", 5, [VM], release_on_owner_exit=True)
    path = _journal.write(state_dir, j)
    with open(path) as fh:
        data = json.load(fh)
    assert data["release_on_owner_exit"] is True and data["mode"] == "auto" and data["module"] == "vm_backup"


def test_a_run_owns_its_overlays_while_its_module_lives_or_a_vm_quiesce_run_is_inside_its_deadline():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = [{"pid": dead.pid, "start": 1, "role": "module"}]
    alive = [_journal.owner()]
    now = 1000.0
    j = {"module": "vm_backup", "state": "released", "deadline": 2000.0, "owners": alive}
    assert _journal.run_owns_overlays(j, now)              # vm_backup: its module commits after the release
    assert not _journal.run_owns_overlays(dict(j, owners=gone), now)
    q = {"module": "vm_quiesce", "state": "quiesced", "deadline": 2000.0, "owners": gone}
    assert _journal.run_owns_overlays(q, now)              # between its tasks: no process, the run lives on
    assert not _journal.run_owns_overlays(q, 2000.5)       # past its deadline: the watchdog commits
    assert not _journal.run_owns_overlays(dict(q, state="released"), now)  # released, no commit running
    assert _journal.run_owns_overlays(dict(q, state="released", owners=gone + alive), now)  # its release commits
