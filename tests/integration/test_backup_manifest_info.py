"""backup_manifest writes, backup_manifest_info reads: the libvirt connection of both follows LIBVIRT_DEFAULT_URI
when the task gives no uri (as every vm_* module does), and the info actions live only in the _info module.

libvirt's in-process test driver (test:///default, domain 'test'); no lab daemon needed.
"""

from __future__ import annotations

import pytest

pytest.importorskip("libvirt")

URI = "test:///default"
UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the test driver's domain 'test'


def test_manifests_written_and_read_back_through_libvirt_default_uri(module_runner, tmp_path):
    env = {"LIBVIRT_DEFAULT_URI": URI}
    state_dir = str(tmp_path / "state")
    snap = "kvmsnap-daily_20260101T000000Z"
    written = module_runner("backup_manifest", {"snapshot": snap, "state_dir": state_dir, "run_id": "r1",
                                                "host": "kvm1", "vms": [{"name": "test", "uuid": UUID, "disks": []}]},
                            env=env)
    assert not written.failed, written
    assert written["changed"] and any(p.startswith(state_dir) for p in written["written"]), written
    read = module_runner("backup_manifest_info", {"snapshot": snap, "state_dir": state_dir, "host": "kvm1"},
                         check_mode=True, env=env)
    assert not read.failed, read
    assert read["changed"] is False
    found = [m["vm"]["uuid"] for m in read["manifests"]] + [m["uuid"] for m in read["invalid"]]
    assert found == [UUID], read
    volumes = module_runner("backup_manifest_info", {"gather": "catalog_volumes", "state_dir": state_dir},
                            check_mode=True)
    assert not volumes.failed and volumes["volumes"] == [] and volumes["ignored"] == [], volumes


def test_info_states_are_gone_from_the_action_modules(module_runner, tmp_path):
    for state in ("read", "volumes"):
        res = module_runner("backup_manifest", {"state": state, "snapshot": "s", "state_dir": str(tmp_path)})
        assert res.failed and "state" in res["msg"] and "verified" in res["msg"], res
    # the former default state=status: a task without state must not start transfers now
    res = module_runner("ontap_snapmirror", {"hostname": "127.0.0.1", "password": "x", "volumes": ["svm1:v"]})
    assert res.failed and "state" in res["msg"], res
    res = module_runner("ontap_snapmirror", {"hostname": "127.0.0.1", "password": "x", "volumes": ["svm1:v"],
                                             "state": "status"})
    assert res.failed and "updated" in res["msg"], res
