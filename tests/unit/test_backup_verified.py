"""The backup report after the check in the snapshot: a VM whose data is missing is not protected."""

from __future__ import annotations

from ansible_collections.kvmsnap.core.plugins.module_utils._report import build_report
from ansible_collections.kvmsnap.core.plugins.plugin_utils._plan import apply_verification


def _vms():
    return [{"host": "kvm1", "name": "web1", "uuid": "u1", "ok": True, "volumes": ["c1:svm1:vol1"]},
            {"host": "kvm1", "name": "db1", "uuid": "u2", "ok": True, "volumes": ["c1:svm1:vol1"]},
            {"host": "kvm2", "name": "app1", "uuid": "u3", "ok": False, "error": "fence failed", "volumes": []}]


def test_missing_data_turns_an_ok_vm_into_not_protected():
    checks = {"kvm1": {"vms": [
        {"name": "web1", "uuid": "u1", "protected": True, "missing": [], "reasons": []},
        {"name": "db1", "uuid": "u2", "protected": False, "missing": ["/ds1/.snapshot/s/db1.img"],
         "reasons": ["disk vda (/ds1/db1.img): not in the snapshot"]}]},
        "kvm2": {"vms": [{"name": "app1", "uuid": "u3", "protected": False, "missing": ["/x"], "reasons": ["r"]}]}}
    out = {v["name"]: v for v in apply_verification(_vms(), checks)}
    assert out["web1"]["ok"] is True and out["web1"]["details"] == {"verified": True}
    assert out["db1"]["ok"] is False
    assert out["db1"]["error"] == ("not in the snapshot (verified after it): /ds1/.snapshot/s/db1.img "
                                   "(disk vda (/ds1/db1.img): not in the snapshot)")
    assert out["db1"]["details"]["missing"] == ["/ds1/.snapshot/s/db1.img"]
    assert out["app1"]["error"] == "fence failed"  # the first error stays
    volumes = [{"controller": "c1", "svm": "svm1", "volume": "vol1", "ok": True}]
    report = build_report("backup", "r1", list(out.values()), volumes, snapshot="s")
    assert report["status"] == "failed" and report["done"] == ["web1"]
    assert sorted(report["not_done"]) == ["app1", "db1"]


def test_a_protected_vm_that_was_not_checked_is_not_called_good():
    out = apply_verification(_vms()[:1], {"kvm1": {}})
    assert out[0]["ok"] is False and "not verified in the snapshot" in out[0]["error"]


def test_a_disk_vm_info_refused_is_not_attributed_to_the_datastore_it_seems_to_lie_in():
    from ansible_collections.kvmsnap.core.plugins.plugin_utils._plan import normalize

    reason = "VM web1 disk vda: datastore /ds1 is a symlink to /elsewhere, which is not the root of volume svm1:vol1"
    result = {"vms": [{"name": "web1", "uuid": "u1", "state": "running", "disks": [
        {"target": "vda", "source": "/ds1/web1.img", "device": "disk", "type": "file", "volume": None,
         "reason": reason}]}],
        "unprotectable": [{"vm": "web1", "uuid": "u1", "disk": "vda", "reason": reason, "severity": "error"}]}
    settings = {"datastores": [{"path": "/ds1", "controller": "c1", "svm": "svm1", "volume": "vol1"}]}
    vm = normalize("kvm1", result, settings, {"c1": {}})[0]
    assert vm["protectable"] is False and vm["disks"][0]["volume"] is None
    assert vm["reasons"] == ["disk vda (/ds1/web1.img): %s" % reason]
