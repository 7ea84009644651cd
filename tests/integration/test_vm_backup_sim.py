"""vm_backup against the ONTAP simulator, VMs on libvirt's in-process test driver whose disks are files in the
simulator's volume directories (mapped via datastores). Faults are injected through the simulator (/_sim/faults)."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from helpers.testdriver_fixtures import backup_params

from ansible_collections.kvmsnap.core.plugins.module_utils import _backup_run, _fence, _fence_errors, _journal, _lock
from ansible_collections.kvmsnap.core.plugins.module_utils._defaults import LIMITS

libvirt = pytest.importorskip("libvirt")
URI = "test:///default"
RUNNING, PAUSED = 1, 3


@pytest.fixture
def sim(sim_clean):
    return sim_clean


@pytest.fixture
def conn(testdriver_conn):
    return testdriver_conn


def params(sim, tmp_path, names, **kw):
    return backup_params(sim, tmp_path, names, "kvmsnap-test", **kw)


def snaps_on(sim, vol, name):
    return (sim.data / "volumes" / "svm1" / vol / ".snapshot" / name).is_dir()


def states(conn, names):
    return [conn.lookupByName(n).state()[0] for n in names]


def assert_clean(state_dir):
    assert _lock.holders(state_dir) == []
    assert all(_journal.is_final(j) for j in _journal.list_journals(state_dir))


def test_backup_snapshots_every_volume_and_releases(conn, backup_vms, sim, tmp_path):
    names = backup_vms(4)
    p = params(sim, tmp_path, names, comment="nightly")
    res = _backup_run.run_backup(p)
    assert res["changed"] and res["method"] in ("cg", "cg_temporary", "multicreate")
    assert sorted(s["volume"] for s in res["snapshots"]) == ["vol_ds1", "vol_ds2"]
    assert {s["state"] for s in res["snapshots"]} == {"valid"}  # read back after the release (P4, docs/dev/faults.md#p4)
    assert snaps_on(sim, "vol_ds1", p["name"]) and snaps_on(sim, "vol_ds2", p["name"])
    # the disk files are in the snapshot (as on an NFS export)
    assert (sim.data / "volumes/svm1/vol_ds1/.snapshot" / p["name"] / (names[0] + ".qcow2")).is_file()
    assert set(states(conn, names)) == {RUNNING}
    for vm in res["vms"]:
        assert vm["action"] == "suspended" and vm["consistency"] == "suspended"
        assert vm["release_result"] == "resumed" and vm["pause_ms"] >= res["snapshot_ms"] * 0.5
    assert res["consistency"] == "suspended"
    assert res["comment"].startswith("kvmsnap:v1 policy=daily run=%s" % res["run_id"]) and "| nightly" in res["comment"]
    assert_clean(p["state_dir"])


def test_snapshot_failure_releases_and_fails(conn, backup_vms, sim, tmp_path):
    names = backup_vms(3)
    sim.admin("POST", "/_sim/faults", {"action": "error", "method": "POST", "path": "/api/*snapshots",
                                       "count": None, "status": 500, "message": "disk on fire"})
    p = params(sim, tmp_path, names)
    with pytest.raises(_fence_errors.FenceError) as info:
        _backup_run.run_backup(p)
    msg = str(info.value)
    assert "snapshot %s" % p["name"] in msg and "failed" in msg and "every VM was released" in msg
    assert "svm1:vol_ds1" in msg
    assert set(states(conn, names)) == {RUNNING}
    assert not snaps_on(sim, "vol_ds1", p["name"]) and not snaps_on(sim, "vol_ds2", p["name"])
    assert info.value.result["snapshots"] == []
    assert {v["release_result"] for v in info.value.result["vms"]} == {"resumed"}
    assert_clean(p["state_dir"])


def test_hanging_snapshot_released_at_deadline(conn, backup_vms, sim, tmp_path, monkeypatch):
    monkeypatch.setattr(_backup_run, "LATE_WAIT", 1.0)
    names = backup_vms(2)
    sim.admin("POST", "/_sim/faults", {"action": "hang", "method": "POST", "path": "/api/*snapshots",
                                       "count": None, "seconds": 6})
    p = params(sim, tmp_path, names, deadline=2)
    t0 = time.monotonic()
    with pytest.raises(_fence_errors.FenceError) as info:
        _backup_run.run_backup(p)
    assert time.monotonic() - t0 < 2 + 1.0 + 3  # deadline + late wait + slack
    assert "did not complete within the deadline of 2s" in str(info.value)
    assert set(states(conn, names)) == {RUNNING}
    for vm in info.value.result["vms"]:
        assert vm["pause_ms"] <= 2000 + 500
        assert vm["consistency"] == "crash"  # never claimed: the snapshot was not inside the window
    assert_clean(p["state_dir"])
    sim.admin("DELETE", "/_sim/faults")
    time.sleep(5)  # let the hung request finish before the next test uses the simulator


def test_preflight_failures_touch_nothing(conn, backup_vms, sim, tmp_path):
    stray = tmp_path / "local-disk.img"
    stray.write_bytes(b"\0")
    names = backup_vms(2, extra_disk=stray)
    # a disk outside every datastore
    with pytest.raises(_fence_errors.FenceError) as info:
        _backup_run.run_backup(params(sim, tmp_path, names))
    assert str(stray) in str(info.value) and "nothing was quiesced" in str(info.value)
    assert set(states(conn, names)) == {RUNNING}
    ok = names[1:]
    # an unknown volume
    p = params(sim, tmp_path, ok, datastores=None, volumes=["svm1:vol_nope"])
    with pytest.raises(_fence_errors.FenceError, match="vol_nope"):
        _backup_run.run_backup(p)
    # an invalid snapshot name
    with pytest.raises(_fence_errors.FenceError, match="reserved prefix"):
        _backup_run.run_backup(params(sim, tmp_path, ok, name="hourly.x"))
    # F11 (docs/dev/faults.md#f11): rerunning a complete backup is a no-op that quiesces nobody
    p = params(sim, tmp_path, ok)
    first = _backup_run.run_backup(p)
    assert first["changed"]
    again = _backup_run.run_backup(p)
    assert again["changed"] is False and "already exists" in again["msg"], again
    assert sorted("%s:%s" % (x["svm"], x["volume"]) for x in again["snapshots"]) == first["volumes"]
    assert {x["name"] for x in again["snapshots"]} == {p["name"]}
    assert {v["action"] for v in again["vms"]} == {"none"}
    # a snapshot of that name that is not ours (or not on every volume): never overwritten, refused
    from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect
    foreign = "kvmsnap-test_foreign_%s" % uuid.uuid4().hex[:6]
    client_params = dict(sim.conn(), timeout=30, retries=1, cert_file=None, key_file=None)
    svm, vol = first["volumes"][0].split(":")
    connect(client_params, "test").create_snapshot_set([(svm, vol)], foreign)
    with pytest.raises(_fence_errors.FenceError, match="already exists on %s" % first["volumes"][0]) as info:
        _backup_run.run_backup(params(sim, tmp_path, ok, name=foreign))
    assert "never overwritten" in str(info.value) and "Nothing was quiesced" in str(info.value)
    # unknown VMs
    with pytest.raises(_fence_errors.FenceError, match="ghost"):
        _backup_run.run_backup(params(sim, tmp_path, ok + ["ghost"]))
    assert set(states(conn, names)) == {RUNNING}


def test_another_runs_unconfirmed_snapshot_is_no_done_backup(conn, backup_vms, sim, tmp_path):
    """F11 (docs/dev/faults.md#f11): a pending snapshot that a dead run left on every volume under the name is no
    backup: vm_backup refuses the name (nothing quiesced) instead of reporting the backup as already taken; that
    run's own retry (same run id) stays a no-op, as in the ontap_snapshot module and the backup role."""
    from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect
    from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import build_comment
    names = backup_vms(2)
    p = params(sim, tmp_path, names)
    vols = [tuple(v.split(":")) for v in _backup_run.run_backup(p, check_mode=True)["volumes"]]
    client = connect(dict(sim.conn(), timeout=30, retries=1, cert_file=None, key_file=None), "test")
    client.create_snapshot_set(vols, p["name"], comment=build_comment("daily", "dead-run", state="pending", until=1))
    with pytest.raises(_fence_errors.FenceError, match="not a confirmed backup") as info:
        _backup_run.run_backup(p)
    assert "dead-run" in str(info.value) and "Nothing was quiesced" in str(info.value)
    assert set(states(conn, names)) == {RUNNING}
    again = _backup_run.run_backup(dict(p, run_id="dead-run"))
    assert again["changed"] is False and "already exists" in again["msg"], again
    assert {v["action"] for v in again["vms"]} == {"none"}


def test_readonly_login_is_refused_before_any_vm_is_quiesced(conn, backup_vms, sim, tmp_path):
    names = backup_vms(1)
    p = params(sim, tmp_path, names, username="backup_ro", password="netapp123")
    with pytest.raises(_fence_errors.FenceError) as info:
        _backup_run.run_backup(p)
    msg = str(info.value)
    assert "user backup_ro (role readonly" in msg and "/api/storage/volumes/*/snapshots" in msg, msg
    assert "nothing was quiesced" in msg
    assert set(states(conn, names)) == {RUNNING}
    assert not snaps_on(sim, "vol_ds1", p["name"]) and not snaps_on(sim, "vol_ds2", p["name"])
    assert _journal.list_journals(p["state_dir"]) == []


def test_check_mode_reports_without_touching(conn, backup_vms, sim, tmp_path):
    names = backup_vms(2)
    p = params(sim, tmp_path, names)
    res = _backup_run.run_backup(p, check_mode=True)
    assert res["changed"] and res["volumes"] == ["svm1:vol_ds1", "svm1:vol_ds2"]
    assert {v["action"] for v in res["vms"]} == {"suspended"} and res["snapshots"] == []
    assert not snaps_on(sim, "vol_ds1", p["name"])
    assert not os.path.exists(p["state_dir"])


def test_vm_mapping_snapcreator_form(conn, backup_vms, sim, tmp_path):
    names = backup_vms(2)
    # vm:controller:path, as vm_info and Snap Creator: the SVM is the one holding the volume
    mapping = "%s:%s:/vol/vol_ds1/lun0;%s:%s:/vol/vol_ds2/lun1;" % (names[0], sim.host, names[1], sim.host)
    p = params(sim, tmp_path, names, datastores=None, vm_mapping=mapping)
    res = _backup_run.run_backup(p)
    assert res["volumes"] == ["svm1:vol_ds1", "svm1:vol_ds2"]
    assert snaps_on(sim, "vol_ds1", p["name"]) and snaps_on(sim, "vol_ds2", p["name"])
    # the vm:svm:path form of earlier releases: refused before anything is touched, naming the entry and the form
    old = "%s:svm1:/vol/vol_ds1/lun0" % names[0]
    p = params(sim, tmp_path, names, datastores=None, vm_mapping=old)
    with pytest.raises(_fence_errors.FenceError, match="controller field is 'svm1'.*vm:controller:path") as err:
        _backup_run.run_backup(p)
    assert "%s:%s:/vol/vol_ds1/lun0" % (names[0], sim.host) in str(err.value)
    assert not snaps_on(sim, "vol_ds1", p["name"])
    with pytest.raises(_fence_errors.FenceError, match="volume vol_nope does not exist"):
        _backup_run.run_backup(params(sim, tmp_path, names[:1], datastores=None,
                                      vm_mapping="%s:%s:/vol/vol_nope/lun0" % (names[0], sim.host)))
    with pytest.raises(_fence_errors.FenceError, match="entry 2 is empty"):
        _backup_run.run_backup(params(sim, tmp_path, names, datastores=None, vm_mapping="a:b:/vol/c/d;;e:f:/vol/g/h"))
    with pytest.raises(_fence_errors.FenceError, match="entry 1"):
        _backup_run.run_backup(params(sim, tmp_path, names, datastores=None, vm_mapping="VM1:ctrl"))


def test_module_in_subprocess(module_runner, sim, tmp_path):
    """The real module (own test-driver instance: domain 'test'), explicit volumes; secrets never echoed."""
    args = {"uri": URI, "vms": ["test"], "mode": "suspend", "state_dir": str(tmp_path / "m"),
            "volumes": ["svm1:vol_ds1"], "name": "kvmsnap-mod_%s" % uuid.uuid4().hex[:8]}
    args.update(sim.conn())
    res = module_runner("vm_backup", args, check_mode=True)
    assert not res.failed, res
    assert res["changed"] and res["snapshots"] == [] and not snaps_on(sim, "vol_ds1", args["name"])
    res = module_runner("vm_backup", args)
    assert not res.failed, res
    assert res["snapshots"][0]["volume"] == "vol_ds1" and res["method"] == "single"
    assert res["vms"][0]["pause_ms"] > 0 and res["vms"][0]["consistency"] == "suspended"
    assert "netapp123" not in json.dumps(res)
    bad = module_runner("vm_backup", dict(args, deadline=0))
    assert bad.failed and "deadline" in bad["msg"]


def test_module_takes_every_deadline_the_role_takes(module_runner, sim, tmp_path):
    """The backup role accepts kvmsnap_quiesce_deadline up to 86400 and passes it to vm_backup as deadline: the module
    takes it too (it stopped at 3600), and names the one range of the option when a value lies outside it."""
    args = {"uri": URI, "vms": ["test"], "mode": "suspend", "state_dir": str(tmp_path / "m"),
            "volumes": ["svm1:vol_ds1"], "name": "kvmsnap-mod_%s" % uuid.uuid4().hex[:8], "deadline": 86400}
    args.update(sim.conn())
    res = module_runner("vm_backup", args, check_mode=True)
    assert not res.failed, res
    low, high = LIMITS["deadline"]
    bad = module_runner("vm_backup", dict(args, deadline=high + 1), check_mode=True)
    assert bad.failed and bad["msg"] == "deadline: %d is out of range; expected %d-%d." % (high + 1, low, high)


def test_quiesce_failure_takes_no_snapshot(conn, backup_vms, sim, tmp_path, monkeypatch):
    names = backup_vms(4)
    victim = names[1]

    def break_one(_f, _todo):  # real fault: one VM is destroyed right before the quiesce
        conn.lookupByName(victim).destroy()
    quiesce = _fence.Fence.quiesce

    def quiesce_after_fault(fence, vms, *args, **kwargs):
        break_one(fence, vms)
        return quiesce(fence, vms, *args, **kwargs)
    monkeypatch.setattr(_fence.Fence, "quiesce", quiesce_after_fault)
    p = params(sim, tmp_path, names)
    with pytest.raises(_fence_errors.FenceError) as info:
        _backup_run.run_backup(p)
    assert "no snapshot was taken" in str(info.value) and victim in str(info.value)
    assert not snaps_on(sim, "vol_ds1", p["name"]) and not snaps_on(sim, "vol_ds2", p["name"])
    assert [s for n, s in zip(names, states(conn, names)) if n != victim] == [RUNNING] * 3
    # the temporary CG made before the quiesce is removed again
    from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect
    assert connect(dict(sim.conn(), timeout=30, retries=1, cert_file=None, key_file=None)).list_temp_cgs("svm1") == []
    assert_clean(p["state_dir"])


def test_same_datastores_list_on_vm_info_and_vm_backup(module_runner, sim, tmp_path):
    """One datastores schema: the roles' kvmsnap_datastores list (with controller) works on both modules."""
    # the module's own test-driver instance: domain 'test' with its disk /guest/diskimage1
    datastores = [{"path": "/guest", "controller": sim.host, "svm": "svm1", "volume": "vol_ds1"},
                  {"path": "/elsewhere", "controller": "cluster2", "svm": "svm2", "volume": "vol_x",
                   "path_in_volume": "/images"}]
    info = module_runner("vm_info", {"uri": URI, "vms": ["test"], "datastores": datastores})
    assert not info.failed, info
    disk = info["vms"][0]["disks"][0]
    assert (disk["controller"], disk["svm"], disk["volume"], disk["mapped_by"]) == (sim.host, "svm1", "vol_ds1",
                                                                                    "datastores")
    args = {"uri": URI, "vms": ["test"], "mode": "suspend", "state_dir": str(tmp_path / "m"),
            "datastores": datastores, "name": "kvmsnap-ds_%s" % uuid.uuid4().hex[:8]}
    args.update(sim.conn())
    res = module_runner("vm_backup", args, check_mode=True)
    assert not res.failed, res
    assert res["volumes"] == ["svm1:vol_ds1"] and res["changed"]


def test_disk_on_a_datastore_of_another_controller_is_refused(conn, backup_vms, sim, tmp_path):
    names = backup_vms(2)
    vols = sim.data / "volumes" / "svm1"
    ds = [{"path": str(vols / "vol_ds1"), "controller": sim.host, "svm": "svm1", "volume": "vol_ds1"},
          {"path": str(vols / "vol_ds2"), "controller": "cluster2", "svm": "svm1", "volume": "vol_ds2"}]
    with pytest.raises(_fence_errors.FenceError) as info:
        _backup_run.run_backup(params(sim, tmp_path, names, datastores=ds))
    msg = str(info.value)
    assert "VM %s: volume svm1:vol_ds2 is on controller cluster2" % names[1] in msg and "nothing was quiesced" in msg
    assert set(states(conn, names)) == {RUNNING}
