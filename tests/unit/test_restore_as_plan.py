"""Restore as new VMs, controller side: the role variables, the plan (copies, restore paths, guard view) and the
report entries."""

from __future__ import annotations

import pytest

from ansible_collections.kvmsnap.core.plugins.plugin_utils._restore_as_plan import (
    as_new_cleanup,
    as_new_outcome,
    as_new_plan,
)
from ansible_collections.kvmsnap.core.plugins.plugin_utils._restore_guard import other_users
from ansible_collections.kvmsnap.core.plugins.plugin_utils._settings import SettingsError, resolve

CTRL = {"c1": {"ontap_hostname": "10.0.0.1", "ontap_username": "u", "has_password": True}}
DS = [{"path": "/ds1", "controller": "c1", "svm": "svm1", "volume": "vol1"}]
U1 = "6695eb01-f6a4-8304-79aa-97f2502e193f"
U2 = "0b8c4f5e-2a57-4d0e-9d1c-6f3a3c2f1a10"
XML = "<domain><name>%s</name><uuid>%s</uuid><os><type>hvm</type>%s</os><devices/></domain>"


def settings(**kw):
    return resolve(dict({"kvmsnap_datastores": DS, "kvmsnap_restore_vms": ["web1"]}, **kw), {}, "restore", CTRL)


def test_settings_defaults_and_forms():
    s = settings()
    assert s["restore_as"] is None and s["restore_start"] is False
    s = settings(kvmsnap_restore_as="web1-test", kvmsnap_restore_start="yes")
    assert s["restore_as"] == "web1-test" and s["restore_start"] is True
    assert settings(kvmsnap_restore_as="-copy", kvmsnap_restore_vms="all")["restore_as"] == "-copy"


@pytest.mark.parametrize("kw, match", [
    ({"kvmsnap_restore_as": "web 1"}, "kvmsnap_restore_as: the new name 'web 1' is not a valid VM name"),
    ({"kvmsnap_restore_as": "-"}, "kvmsnap_restore_as: suffix '-' is not valid"),
    ({"kvmsnap_restore_as": 5}, "kvmsnap_restore_as: 5 is not valid"),
    ({"kvmsnap_restore_as": "x", "kvmsnap_restore_vms": "all"}, "one name, but kvmsnap_restore_vms selects all VMs"),
    ({"kvmsnap_restore_as": "x", "kvmsnap_restore_vms": "a,b"}, "selects 2 VMs"),
    ({"kvmsnap_restore_as": "-c", "kvmsnap_restore_mode": "volume"}, "only with kvmsnap_restore_mode=files"),
    ({"kvmsnap_restore_start": "maybe"}, "kvmsnap_restore_start"),
])
def test_settings_refusals_name_the_variable(kw, match):
    with pytest.raises(SettingsError, match=match):
        settings(**kw)


def plan(nvram=None, lun=None):
    disks = [{"controller": "c1", "svm": "svm1", "volume": "vol1", "datastore": "/ds1", "source": "/ds1/vm/web1.qcow2",
              "path_in_volume": "/vm/web1.qcow2"},
             {"controller": "c1", "svm": "svm1", "volume": "vol1", "datastore": "/ds1", "source": "/ds1/vm/data.raw",
              "path_in_volume": "/vm/data.raw"}]
    if lun:
        disks.append({"controller": "c1", "svm": "svm1", "volume": "vol1", "lun": lun, "source": "/dev/mapper/x"})
    nv = "<nvram>%s</nvram>" % nvram if nvram else ""
    entry = {"name": "web1", "uuid": U1, "current_state": "running", "start": "always", "xml": XML % ("web1", U1, nv),
             "nvram": "/ds1/.snapshot/s/.kvmsnap/%s/nvram" % U1 if nvram else None, "allowed_paths": ["/ds1"],
             "disks": disks}
    return {"hosts": {"kvm1": [entry]}, "errors": [], "notes": [],
            "volumes": [{"key": "c1:svm1:vol1", "controller": "c1", "svm": "svm1", "volume": "vol1",
                         "files": ["/vm/web1.qcow2", "/vm/data.raw"], "luns": [], "vms": ["web1"]}],
            "vms": [{"host": "kvm1", "name": "web1", "uuid": U1}], "controllers": {"c1": ["svm1:vol1"]}}


def running(name, uuid, *paths):
    return {"name": name, "uuid": uuid, "state": "running", "disks": [{"source": p} for p in paths]}


def test_plan_copies_paths_and_guard_view():
    found = {"kvm1": [running("web1", U1, "/ds1/vm/web1.qcow2", "/ds1/vm/data.raw")]}
    out = as_new_plan(plan(nvram="/var/lib/libvirt/qemu/nvram/web1_VARS.fd"), "-test", False, found)
    assert out["errors"] == []
    vm = out["hosts"]["kvm1"][0]
    assert vm["name"] == "web1" and vm["uuid"] == U1  # the backed-up identity, for the snapshot checks
    spec = vm["as_new"]
    assert spec["name"] == "web1-test" and spec["uuid"] != U1 and vm["start"] == "never"
    assert spec["disk_paths"] == {"/ds1/vm/web1.qcow2": "/ds1/vm/web1-test.qcow2",
                                  "/ds1/vm/data.raw": "/ds1/vm/web1-test_data.raw"}
    assert spec["nvram_path"] == "/var/lib/libvirt/qemu/nvram/web1-test_VARS.fd"
    vol = out["volumes"][0]
    assert vol["files"] == [] and vol["restore_paths"] == {"/vm/web1.qcow2": "/vm/web1-test.qcow2",
                                                           "/vm/data.raw": "/vm/web1-test_data.raw"}
    assert out["vms"][0]["new_name"] == "web1-test"
    # the running original uses the old files, not the new ones: the cross-host guard passes the copy...
    assert other_users(out["guard"], found) == []
    # ... but not a plan that would restore in place over the running VM's files under another UUID
    assert other_users(dict(out["guard"], hosts={"kvm1": [dict(out["guard"]["hosts"]["kvm1"][0],
                                                               disks=plan()["hosts"]["kvm1"][0]["disks"])]}), found)
    started = as_new_plan(plan(), "-test", True, found)
    assert started["hosts"]["kvm1"][0]["start"] == "always"


def test_plan_refusals():
    found = {"kvm2": [running("web1-test", U2, "/ds1/elsewhere.img")]}
    out = as_new_plan(plan(), "-test", False, found)
    assert out["errors"] == ["kvmsnap_restore_as: a VM named web1-test already exists on kvm2; choose another name "
                             "or suffix"]
    out = as_new_plan(plan(lun="/vol/vol1/lun0"), "-t", False, {})
    assert "VM web1 has disks on LUNs (/vol/vol1/lun0)" in out["errors"][0]
    out = as_new_plan(plan(), "a/b", False, {})
    assert out["errors"] == ["kvmsnap_restore_as: the new name 'a/b' is not a valid VM name; allowed: 1-64 "
                             "characters from letters, digits and . _ + - (not starting with . or -)."]
    # a file at the new path used by another VM (a disk named like the copy's)
    found = {"kvm1": [running("other", U2, "/ds1/vm/web1-test.qcow2")]}
    out = as_new_plan(plan(), "-test", False, found)
    assert out["errors"] == []
    assert other_users(out["guard"], found) == [
        "disk /ds1/vm/web1-test.qcow2 of VM web1-test (restored on kvm1) is used by VM other on kvm1 (running); a "
        "restore would roll back that VM's data"]


def test_outcome_names_the_copy():
    p = as_new_plan(plan(), "-test", True, {})
    spec = p["hosts"]["kvm1"][0]["as_new"]
    p["snapshot"] = "snap1"
    disks = {"results": [{"vol": p["volumes"][0], "changed": True, "restored": [
        {"type": "file", "path": "/vm/web1.qcow2", "restore_path": "/vm/web1-test.qcow2", "method": "zapi"},
        {"type": "file", "path": "/vm/data.raw", "restore_path": "/vm/web1-test_data.raw", "method": "zapi"}]}]}
    start = {"results": [{"vm": p["hosts"]["kvm1"][0], "state": "running", "agent": "ok", "actions": ["define", "start"],
                          "new": {"name": "web1-test", "uuid": spec["uuid"], "started": True, "macs": [], "nvram": None,
                                  "disks": [{"path": "/ds1/vm/web1-test.qcow2"}, {"path": "/ds1/vm/web1-test_data.raw"}]}}]}
    out = as_new_outcome(p, {"kvm1": {"start": start}}, disks)
    vm = out["vms"][0]
    assert vm["ok"] and vm["name"] == "web1-test" and vm["uuid"] == spec["uuid"] and vm["state_after"] == "running"
    assert vm["details"]["source"] == {"name": "web1", "uuid": U1} and vm["details"]["started"] is True
    assert vm["details"]["disks"] == ["/ds1/vm/web1-test.qcow2", "/ds1/vm/web1-test_data.raw"]
    assert out["volumes"][0]["ok"] and out["volumes"][0]["files"][0]["restore_path"] == "/vm/web1-test.qcow2"
    # the disks failed on the controller: the copy is not made, and says why
    out = as_new_outcome(p, {"kvm1": {"error": "kvm1: boom"}}, {"results": [{"vol": p["volumes"][0], "failed": True,
                                                                            "msg": "restore_paths: nope"}]})
    assert not out["vms"][0]["ok"] and out["vms"][0]["error"] == "kvm1: boom"
    assert out["volumes"][0]["error"] == "restore_paths: nope"


def test_cleanup_removes_only_what_this_run_restored_for_copies_not_defined():
    p = as_new_plan(plan(), "-test", True, {})
    vm = p["hosts"]["kvm1"][0]
    vol = p["volumes"][0]
    # the controller restored the first file, then refused the second (a file in the way): only the first goes
    disks = {"results": [{"vol": vol, "failed": True, "restored": [
        {"type": "file", "path": "/vm/web1.qcow2", "restore_path": "/vm/web1-test.qcow2"}],
        "failed_items": [{"type": "file", "path": "/vm/data.raw", "restore_path": "/vm/web1-test_data.raw"}]}]}
    assert as_new_cleanup(p, "kvm1", disks, {}) == ["/ds1/vm/web1-test.qcow2"]
    # a refusal before any restore: nothing is this run's
    assert as_new_cleanup(p, "kvm1", {"results": [{"vol": vol, "failed": True, "restored": []}]}, {}) == []
    # a copy that was defined keeps its files; another host has nothing to remove
    start = {"results": [{"vm": vm, "failed": True, "actions": ["define", "start"],
                          "new": {"uuid": vm["as_new"]["uuid"]}}]}
    assert as_new_cleanup(p, "kvm1", disks, start) == []
    assert as_new_cleanup(p, "kvm2", disks, {}) == []
