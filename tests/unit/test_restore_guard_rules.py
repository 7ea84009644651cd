"""The cross-host restore guard (plugins/plugin_utils/_restore_guard.py; docs/dev/faults.md#restore-other-users)."""

from __future__ import annotations

from ansible_collections.kvmsnap.core.plugins.plugin_utils._restore_guard import (
    other_users,
    volume_running,
    volume_vms,
    volume_warnings,
)

U = "11111111-1111-4111-8111-111111111111"
XML = "<domain><name>web1</name><uuid>%s</uuid><os><nvram>/ds/web1_VARS.fd</nvram></os></domain>" % U
DISK = {"source": "/ds/web1.img", "controller": "c1", "svm": "svm1", "volume": "vol1", "datastore": "/ds",
        "path": "/web1.img"}
PLAN = {"hosts": {"kvmA": [{"name": "web1", "uuid": U, "xml": XML, "disks": [DISK]}]},
        "vms": [{"host": "kvmA", "name": "web1", "uuid": U}],
        "volumes": [{"key": "c1:svm1:vol1", "files": ["/web1.img"], "luns": []}]}


def _vm(name, uuid, state="running", disks=(), nvram=None):
    return {"name": name, "uuid": uuid, "state": state, "nvram": nvram, "disks": list(disks)}


def test_the_vm_itself_on_its_own_host_is_no_user():
    assert other_users(PLAN, {"kvmA": [_vm("web1", U, disks=[DISK])]}) == []


def test_the_same_libvirt_under_two_inventory_names_is_no_user():
    found = {"kvmA": [_vm("web1", U, disks=[DISK])], "kvmB": [_vm("web1", U, disks=[DISK])]}
    assert other_users(PLAN, found, {"kvmA": "h1", "kvmB": "h1"}) == []
    assert "also defined on kvmB" in other_users(PLAN, found, {"kvmA": "h1", "kvmB": "h2"})[0]


def test_another_vm_by_path_by_volume_location_or_nvram_on_any_host():
    by_path = _vm("moved", "2" * 32, disks=[{"source": "/ds/web1.img"}])
    by_loc = _vm("other-mount", "3" * 32, state="shutoff",
                 disks=[{"source": "/mnt/x/web1.img", "controller": "c1", "svm": "svm1", "volume": "vol1",
                         "path": "/web1.img"}])
    by_nvram = _vm("nv", "4" * 32, nvram="/ds/web1_VARS.fd")
    reasons = other_users(PLAN, {"kvmA": [], "kvmB": [by_path, by_loc, by_nvram]})
    assert len(reasons) == 3
    assert "disk /ds/web1.img of VM web1 (restored on kvmA) is used by VM moved on kvmB (running)" in reasons[0]
    assert "VM other-mount on kvmB (shutoff)" in reasons[1]
    assert "NVRAM /ds/web1_VARS.fd of VM web1" in reasons[2]


def test_volume_vms_by_mapping_and_by_path_below_a_datastore_of_the_volume():
    db_disk = {"source": "/ds/sub/db.img", "controller": "c1", "svm": "svm1", "volume": "vol1", "path": "/sub/db.img"}
    found = {"kvmA": [_vm("web1", U, state="shutoff", disks=[DISK]), _vm("db", "5" * 32, disks=[db_disk])],
             "kvmB": [_vm("elsewhere", "6" * 32, state="shutoff", disks=[{"source": "/ds/other/e.img"}]),
                      _vm("unrelated", "7" * 32, disks=[{"source": "/local/u.img"}])]}
    stores = [{"path": "/ds", "controller": "c1", "svm": "svm1", "volume": "vol1"}]
    on = volume_vms(PLAN, found, stores)
    assert [(v["host"], v["name"], v["restored"]) for v in on] == [
        ("kvmA", "web1", True), ("kvmA", "db", False), ("kvmB", "elsewhere", False)]
    assert [v["mapped"] for v in on] == [True, True, False]  # 'elsewhere' is on the volume by its path only
    assert volume_running(on) == ["db on kvmA (running, volume c1:svm1:vol1)"]
    warn = volume_warnings(PLAN, [{"name": "kvmsnap-daily_2"}, {"name": "kvmsnap-prerestore_1"}], on)
    assert "no safety copy survives a volume restore" in warn[0] and "FlexClone" in warn[0]
    assert warn[1] == ("volume restore deletes 2 newer snapshot(s) of c1:svm1:vol1: kvmsnap-daily_2, "
                       "kvmsnap-prerestore_1")
    assert warn[2].endswith("db on kvmA, elsewhere on kvmB")
