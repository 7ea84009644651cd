"""A late snapshot is never a good backup (docs/dev/faults.md#late-snapshot, fence side), and a run releases only what it quiesced
(docs/dev/faults.md#release-own).

vm_backup against the ONTAP simulator with VMs on libvirt's in-process test driver (disks in the simulator's
volume directories), and on the lab libvirtd for the kill -9 case: the snapshot is created pending, confirmed good
only when it completed inside every VM's window, marked late by its own run when it arrives after the deadline,
and otherwise left pending for the next run's recovery, which also removes a dead run's temporary CG.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid

import pytest
from helpers.guest_fixtures import SYSTEM_URI
from helpers.testdriver_fixtures import backup_params
from helpers.vm_utils import resume_all, states, wait_for
from test_vm_backup_system import start_module, stop_module

from ansible_collections.kvmsnap.core.plugins.module_utils import _backup_run, _fence_errors, _fence_quiesce, _journal, _lock
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect
from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import is_good, parse_comment

libvirt = pytest.importorskip("libvirt")
URI = "test:///default"
RUNNING, PAUSED = 1, 3


@pytest.fixture
def sim(sim_clean):
    return sim_clean


@pytest.fixture
def conn(testdriver_conn):
    return testdriver_conn


@pytest.fixture
def test_vms(backup_vms):
    return backup_vms


def params(sim, tmp_path, names, **kw):
    return backup_params(sim, tmp_path, names, "kvmsnap-trust", **kw)


def client(sim):
    return connect(dict(sim.conn(), timeout=30, retries=1, cert_file=None, key_file=None), "test")


def comments(sim, name, vols=("vol_ds1", "vol_ds2")):
    c = client(sim)
    out = {}
    for vol in vols:
        snap = c.get_snapshot("svm1", vol, name)
        out[vol] = snap
    return out


def test_good_snapshot_is_confirmed_with_the_achieved_consistency_and_the_given_run_id(
        conn, test_vms, sim, tmp_path):
    names = test_vms(2)
    p = params(sim, tmp_path, names, run_id="20261130T100000Z-abcdef01")
    res = _backup_run.run_backup(p)
    assert res["trust"] == "good" and res["run_id"] == "20261130T100000Z-abcdef01"
    for snap in comments(sim, p["name"]).values():
        meta = parse_comment(snap["comment"])
        assert meta["state"] == "good" and meta["consistency"] == "suspended", snap["comment"]
        assert meta["run"] == "20261130T100000Z-abcdef01" and meta["until"] is None
        assert is_good(snap)
    # confirm: false (the role confirms after verification): the snapshot stays pending with its until
    p2 = params(sim, tmp_path, names, confirm=False, confirm_grace=60)
    t0 = time.time()
    res = _backup_run.run_backup(p2)
    assert res["trust"] == "pending"
    for snap in comments(sim, p2["name"]).values():
        meta = parse_comment(snap["comment"])
        assert meta["state"] == "pending" and not is_good(snap)
        # until = fence start + deadline + grace
        assert t0 + p2["deadline"] + 60 - 2 <= meta["until"] <= time.time() + p2["deadline"] + 60 + 2


def test_snapshot_arriving_after_the_deadline_is_marked_late_by_its_run(conn, test_vms, sim, tmp_path):
    names = test_vms(2)
    sim.admin("POST", "/_sim/faults", {"action": "hang", "method": "POST", "path": "/api/*snapshots",
                                       "count": 1, "seconds": 4})
    p = params(sim, tmp_path, names, deadline=2)
    with pytest.raises(_fence_errors.FenceError) as info:
        _backup_run.run_backup(p)
    res = info.value.result
    assert res["trust"] == "late", res
    assert "marked late" in str(info.value)
    assert set(states_of(conn, names)) == {RUNNING}
    for snap in comments(sim, p["name"]).values():
        meta = parse_comment(snap["comment"])
        assert meta["state"] == "late" and meta["consistency"] == "crash" and not is_good(snap)


def states_of(conn, names):
    return [conn.lookupByName(n).state()[0] for n in names]


def test_hanging_snapshot_stays_pending_and_the_next_run_marks_it_late(conn, test_vms, sim, tmp_path, monkeypatch):
    monkeypatch.setattr(_backup_run, "LATE_WAIT", 1.0)
    names = test_vms(2)
    sim.admin("POST", "/_sim/faults", {"action": "hang", "method": "POST", "path": "/api/*snapshots",
                                       "count": 1, "seconds": 6})
    p = params(sim, tmp_path, names, deadline=2, confirm_grace=3)
    t0 = time.monotonic()
    with pytest.raises(_fence_errors.FenceError) as info:
        _backup_run.run_backup(p)
    assert time.monotonic() - t0 < 2 + 1 + 3
    assert info.value.result["trust"] == "pending_late"
    assert set(states_of(conn, names)) == {RUNNING}  # released at the deadline
    # the controller finishes the snapshot later: it exists, pending, never a good backup
    assert wait_for(lambda: all(comments(sim, p["name"]).values()), 15)
    for snap in comments(sim, p["name"]).values():
        meta = parse_comment(snap["comment"])
        assert meta["state"] == "pending" and not is_good(snap), snap["comment"]
        until = meta["until"]
    # the next run (after `until`) marks it late before its own fence
    time.sleep(max(0.0, until - time.time()) + 1.2)
    nxt = _backup_run.run_backup(params(sim, tmp_path, names))
    marked = {(m["volume"], m["name"]) for m in nxt["recovered_snapshots"]["marked_late"]}
    assert {("vol_ds1", p["name"]), ("vol_ds2", p["name"])} <= marked
    for snap in comments(sim, p["name"]).values():
        meta = parse_comment(snap["comment"])
        assert meta["state"] == "late" and meta["consistency"] == "crash"
    assert nxt["trust"] == "good"


# ---- kill -9 of vm_backup in the middle of the snapshot (the lab libvirtd, minimal guests) ---------------------

@pytest.mark.needs_libvirtd
def test_kill9_mid_snapshot_leaves_pending_and_temp_cg_the_next_run_cleans_up(sim, minimal_guests, tmp_path):
    doms = minimal_guests(2)
    sd = str(tmp_path / "state")
    name = "kvmsnap-k9_%s" % uuid.uuid4().hex[:8]
    args = {"uri": SYSTEM_URI, "vms": [d.name() for d in doms], "mode": "suspend", "fence": "direct", "deadline": 4,
            "confirm_grace": 1, "state_dir": sd, "volumes": ["svm1:vol_ds1", "svm1:vol_ds2"], "name": name}
    args.update(sim.conn())
    sim.admin("POST", "/_sim/faults", {"action": "hang", "method": "POST", "path": "/api/*snapshots",
                                       "count": 1, "seconds": 5})
    proc, path = start_module(args)
    try:
        assert wait_for(lambda: set(states(doms)) == {PAUSED}, 30), "vm_backup did not quiesce"
        c = client(sim)
        assert wait_for(lambda: c.list_temp_cgs("svm1"), 10), "no temporary CG while the snapshot hangs"
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
        assert wait_for(lambda: set(states(doms)) == {RUNNING}, 5), states(doms)  # the watchdog
        # the controller completes the snapshot: pending, never good; the dead run's temp CG stays behind
        assert wait_for(lambda: all(comments(sim, name).values()), 15)
        snaps = comments(sim, name)
        for snap in snaps.values():
            assert parse_comment(snap["comment"])["state"] == "pending" and not is_good(snap)
        until = parse_comment(snaps["vol_ds1"]["comment"])["until"]
        left = [cg["name"] for cg in c.list_temp_cgs("svm1")]
        assert left, "the killed run left no temporary CG"
        time.sleep(max(0.0, until - time.time()) + 1.2)
        nxt = _backup_run.run_backup(dict(args, name="kvmsnap-k9b_%s" % uuid.uuid4().hex[:8], deadline=30,
                                     confirm_grace=300, timeout=30, retries=1, cert_file=None, key_file=None,
                                     agent_timeout=5, allow_crash_consistent=False, datastores=None,
                                     vm_mapping=None, comment=None, snapmirror_label=None, policy="daily",
                                     port=sim.port))
        assert nxt["trust"] == "good", nxt
        assert {m["name"] for m in nxt["recovered_snapshots"]["marked_late"]} == {name}
        assert set(left) <= set(nxt["recovered_snapshots"]["removed_cgs"])
        assert not c.list_temp_cgs("svm1")
        for snap in comments(sim, name).values():
            meta = parse_comment(snap["comment"])
            assert meta["state"] == "late" and meta["consistency"] == "crash"
    finally:
        stop_module(proc, path)
        resume_all(doms)


# ---- a run releases only what it quiesced; the lock comes first -----------------------------------------------

def test_release_with_run_id_never_touches_another_runs_quiesce(conn, test_vms, sim, tmp_path):
    names = test_vms(2)
    sd = str(tmp_path / "state")
    base = dict(uri=URI, state_dir=sd, deadline=60, mode="suspend", agent_timeout=5, retries=1)
    won = _fence_quiesce.run_locked(dict(base, vms=names, run_id="run-A"))
    assert won["changed"] and {v["name"] for v in won["vms"]} == set(names)
    # the losing run refuses at its lock step, naming the holder; nothing is quiesced
    with pytest.raises(_fence_errors.FenceError) as info:
        _fence_quiesce.run_locked(dict(base, vms=names, run_id="run-B"))
    assert "run run-A" in str(info.value) and "Nothing was written or quiesced by run run-B" in str(info.value)
    assert info.value.result["holder"]["run_id"] == "run-A"
    _fence_quiesce.run_quiesced(dict(base, vms=names, run_id="run-A"))  # reuses run A's locks
    assert set(states_of(conn, names)) == {PAUSED}
    # the loser's always: release (its own run id): nothing of run A's is released
    lost = _fence_quiesce.run_released(dict(base, vms=names, run_id="run-B"))
    assert set(states_of(conn, names)) == {PAUSED}
    assert {v["released_by"] for v in lost["vms"]} == {"none"} and lost["changed"] is False
    assert {h["run_id"] for h in _lock.holders(sd)} == {"run-A"}
    # the winner's release: released by its own release, with the time; its locks go
    t0 = time.time()
    res = _fence_quiesce.run_released(dict(base, vms=names, run_id="run-A"))
    assert set(states_of(conn, names)) == {RUNNING}
    for vm in res["vms"]:
        assert vm["released_by"] == "release" and vm["release_result"] == "resumed"
        assert t0 - 1 <= vm["released_at"] <= time.time() + 1
    assert _lock.holders(sd) == []


def test_release_reports_a_release_by_someone_else(conn, test_vms, sim, tmp_path):
    """A VM the run's journal shows released by another party is reported as such, never as 'not quiesced'."""
    names = test_vms(1)
    sd = str(tmp_path / "state")
    base = dict(uri=URI, state_dir=sd, deadline=60, mode="suspend", agent_timeout=5, retries=1)
    _fence_quiesce.run_quiesced(dict(base, vms=names, run_id="run-W"))

    def watchdog_released(j):  # what the watchdog writes (its own process cannot see the test driver's VMs)
        for vm in j["vms"]:
            vm.update(released=True, release_result="resumed", released_how="watchdog",
                      released_by="watchdog (deadline)", released_at=time.time())
        _journal.mark_final(j, "released", "watchdog (deadline)")
    conn.lookupByName(names[0]).resume()
    journal = next(j for j in _journal.list_journals(sd) if _journal.run_of(j) == "run-W")
    _journal.update(sd, journal["run_id"], watchdog_released)
    res = _fence_quiesce.run_released(dict(base, vms=names, run_id="run-W"))
    vm = res["vms"][0]
    assert vm["released_by"] == "watchdog" and vm["released_at"] and "not quiesced" not in str(vm["release_result"])


def test_held_lock_expires_and_is_taken_over(conn, test_vms, sim, tmp_path):
    names = test_vms(1)
    sd = str(tmp_path / "state")
    base = dict(uri=URI, state_dir=sd, mode="suspend", agent_timeout=5, retries=1)
    _fence_quiesce.run_locked(dict(base, vms=names, run_id="run-old", deadline=1))
    time.sleep(1 + _journal.DEADLINE_GRACE + 0.3)
    res = _fence_quiesce.run_locked(dict(base, vms=names, run_id="run-new", deadline=60))
    assert [t["holder"]["run_id"] for t in res["lock_takeovers"]] == ["run-old"]


def test_concurrent_vm_backups_one_wins_the_other_touches_nothing(conn, test_vms, sim, tmp_path):
    """Two vm_backup runs on one host at once (threads; the test driver lives in this process)."""
    names = test_vms(2)
    sim.admin("POST", "/_sim/faults", {"action": "hang", "method": "POST", "path": "/api/*snapshots",
                                       "count": 1, "seconds": 2})
    out = {}

    def run(key):
        try:
            out[key] = _backup_run.run_backup(params(sim, tmp_path, names, run_id="run-%s" % key))
        except _fence_errors.FenceError as err:
            out[key] = err
    first = threading.Thread(target=run, args=("A",))
    first.start()
    assert wait_for(lambda: set(states_of(conn, names)) == {PAUSED}, 10)
    run("B")  # while A holds the VMs inside its (slow) snapshot
    first.join(30)
    assert isinstance(out["B"], _fence_errors.FenceError) and "run-A" in str(out["B"]), out["B"]
    assert out["B"].result["snapshots"] == [] and out["B"].result["vms"] == []
    assert out["A"]["trust"] == "good" and out["A"]["consistency"] == "suspended"
    assert set(states_of(conn, names)) == {RUNNING}


def test_manifest_write_error_names_the_state_dir_path(module_runner, tmp_path):
    """A state_dir that cannot take the local catalog (here: catalog is a file) is named in the error."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "catalog").write_text("not a directory")
    uuid_ = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the test driver's domain 'test'
    res = module_runner("backup_manifest", {"uri": URI, "snapshot": "kvmsnap-daily_x", "state_dir": str(state_dir),
                                            "vms": [{"name": "test", "uuid": uuid_, "disks": []}],
                                            "run_id": "r1", "host": "kvm1"})
    assert res.failed, res
    assert "state_dir %s" % state_dir in res["msg"] and str(state_dir / "catalog" / "kvmsnap-daily_x") in res["msg"]
    assert "VM test" in res["msg"] and "kvm1" in res["msg"]


def test_unwritable_journal_names_the_state_dir_path(conn, test_vms, sim, tmp_path):
    """A journal that cannot be written (here its path is taken by a directory) is named with the state_dir;
    nothing is quiesced and the run's locks are dropped again."""
    names = test_vms(1)
    sd = tmp_path / "state"
    _fence_quiesce.run_locked(dict(uri=URI, state_dir=str(sd), deadline=60, vms=names, run_id="run-J"))
    vm_uuid = conn.lookupByName(names[0]).UUIDString()
    blocker = sd / "runs" / (_journal.fence_id("run-J", [vm_uuid]) + ".json")
    blocker.mkdir()
    with pytest.raises(_fence_errors.FenceError) as info:
        _fence_quiesce.run_quiesced(dict(uri=URI, state_dir=str(sd), deadline=60, mode="suspend", vms=names, run_id="run-J"))
    msg = str(info.value)
    assert str(blocker) in msg and "state_dir %s" % sd in msg and "nothing was quiesced" in msg, msg
    assert states_of(conn, names) == [RUNNING]
    assert _lock.holders(str(sd)) == []
