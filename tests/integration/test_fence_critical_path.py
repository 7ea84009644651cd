"""The fence holds the VMs for the point in time and nothing else: consistency-group creation, the commit of a
two-phase snapshot, comments and read-backs run before the quiesce or after the release; a failed commit removes
the snapshots and fails the run with every VM running. VMs on libvirt's test driver, the ONTAP simulator with
chosen job times per call kind (its job model: 202 at once, the job runs for its kind's latency)."""

from __future__ import annotations

import pytest
from helpers.testdriver_fixtures import backup_params

from ansible_collections.kvmsnap.core.plugins.module_utils import _backup_run, _fence_errors
from ansible_collections.kvmsnap.core.plugins.module_utils._ontap_client import connect

libvirt = pytest.importorskip("libvirt")
RUNNING = 1
POINT = 0.3  # the array's time for the point in time (snapshot job, cg-start)
SLOW = 1.2  # what must stay out of the fence: CG creation, commit


@pytest.fixture
def sim(sim_clean):
    return sim_clean


def slow_array(sim):
    return sim.latency({"snapshot_create": POINT, "cg_snapshot": POINT, "cg_start": POINT, "cg_create": SLOW,
                        "cg_commit": SLOW}, scale=1)


def client(sim, transport="rest"):
    return connect(dict(sim.conn(transport), timeout=30, retries=1, cert_file=None, key_file=None), "test")


def states(conn, names):
    return [conn.lookupByName(n).state()[0] for n in names]


@pytest.mark.parametrize("transport,method", [("rest", "cg_temporary"), ("zapi", "cg_start_commit")])
def test_only_the_point_in_time_is_inside_the_fence(testdriver_conn, backup_vms, sim, tmp_path, transport, method):
    names = backup_vms(4)  # disks on vol_ds1 and vol_ds2: one snapshot over two volumes
    p = backup_params(sim, tmp_path, names, "kvmsnap-cp", **sim.conn(transport))
    p.update(timeout=30, retries=1, port=sim.port, cert_file=None, key_file=None)
    with slow_array(sim):
        res = _backup_run.run_backup(p)
    assert res["method"] == method and res["trust"] == "good", res
    pause = res["max_pause_ms"]
    # held for the start of the snapshot, released before the CG creation (REST) and the commit (both)
    assert POINT * 1000 <= pause < (POINT + 0.6) * 1000, res["vms"]
    assert all(v["release_result"] == "resumed" for v in res["vms"])
    assert sorted(s["volume"] for s in res["snapshots"]) == ["vol_ds1", "vol_ds2"]
    assert all(s["uuid"] and s["create_time"] for s in res["snapshots"])  # read back after the release
    assert client(sim).list_temp_cgs("svm1") == []  # the temporary CG is gone again


@pytest.mark.parametrize("transport,fault", [
    ("rest", {"action": "error", "method": "PATCH", "path": "/api/application/consistency-groups/*/snapshots/*",
              "status": 400, "code": "53411940", "message": "commit refused by the test"}),
    ("zapi", {"action": "error", "api": "cg-commit", "errno": "13701", "message": "commit refused by the test"}),
])
def test_a_failed_commit_removes_the_snapshots_and_fails_the_run(testdriver_conn, backup_vms, sim, tmp_path,
                                                                 transport, fault):
    names = backup_vms(2)
    sim.admin("POST", "/_sim/faults", dict(fault, count=1))
    p = backup_params(sim, tmp_path, names, "kvmsnap-cf", **sim.conn(transport))
    p.update(timeout=30, retries=1, port=sim.port, cert_file=None, key_file=None)
    with pytest.raises(_fence_errors.FenceError) as info:
        _backup_run.run_backup(p)
    msg = str(info.value)
    assert "commit failed" in msg and "commit refused by the test" in msg and "every VM was released" in msg, msg
    assert set(states(testdriver_conn, names)) == {RUNNING}
    c = client(sim)
    for vol in ("vol_ds1", "vol_ds2"):
        assert c.get_snapshot("svm1", vol, p["name"]) is None
    assert info.value.result["snapshots"] == [] and info.value.result["trust"] is None
    assert c.list_temp_cgs("svm1") == []
