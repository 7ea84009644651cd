"""The restore report's per-VM facts: whether the VM existed before the restore, and how it was shut down."""

from __future__ import annotations

from ansible_collections.kvmsnap.core.plugins.module_utils._report import build_report
from ansible_collections.kvmsnap.core.plugins.plugin_utils._plan import restore_outcome

DISK = {"controller": "c1", "svm": "svm1", "volume": "vol_ds1"}


def plan():
    return {"hosts": {"kvm1": [
        {"name": "web1", "uuid": "u-1", "current_state": "running", "start": "always", "disks": [DISK]},
        # deleted before the restore; a resumed run keeps this state from the restore journal
        {"name": "web2", "uuid": "u-2", "current_state": "absent", "start": "always", "disks": [DISK]}]},
        "volumes": [{"key": "c1:svm1:vol_ds1", "controller": "c1", "svm": "svm1", "volume": "vol_ds1"}]}


def test_existed_is_the_state_before_the_restore_and_shutdown_is_reported():
    stop = {"results": [
        {"vm": {"uuid": "u-1"}, "existed": True, "shutdown": {"how": "forced", "seconds": 120.3, "timeout": 120}},
        {"vm": {"uuid": "u-2"}, "existed": False}]}
    # the define step of a resumed run sees web2 as defined (the interrupted first attempt defined it)
    start = {"results": [{"vm": {"uuid": "u-1"}, "existed": True, "state": "running", "agent": "ok"},
                         {"vm": {"uuid": "u-2"}, "existed": True, "state": "running", "agent": "ok"}]}
    disks = {"results": [{"vol": {"key": "c1:svm1:vol_ds1"}, "restored": [{"path": "/a", "method": "sfsr"}]}]}
    out = restore_outcome(plan(), {"kvm1": {"stop": stop, "start": start}}, disks, {}, "snap1")
    vms = {v["name"]: v for v in out["vms"]}
    assert vms["web1"]["details"]["existed"] is True and vms["web2"]["details"]["existed"] is False
    assert vms["web1"]["details"]["shutdown"] == {"how": "forced", "seconds": 120.3, "timeout": 120}
    assert vms["web2"]["details"]["shutdown"] is None
    assert out["shutdown"] == [{"host": "kvm1", "vm": "web1", "uuid": "u-1", "how": "forced", "seconds": 120.3,
                                "timeout": 120}]
    report = build_report("restore", "r1", out["vms"], out["volumes"], snapshot="snap1",
                          extra={"shutdown": out["shutdown"]})
    assert "  shut down VM web1 on kvm1 before the restore: forced after 120.3s (timeout 120s)" in report["summary"]
