"""The monitoring check (kvmsnap.core.check_backups): a VM's newest good backup and its age."""

from __future__ import annotations

from ansible_collections.kvmsnap.core.plugins.filter.roles import backup_check

HOUR = 3600
NOW = 1_800_000_000


def rec(name, age_h, state="good", policy="daily", run=None):
    return {"name": name, "policy": policy, "run": run or "run-" + name, "ours": True, "state": state,
            "create_time": NOW - age_h * HOUR, "create_time_iso": "T-%dh" % age_h, "complete": True}


def man(vm, snap, run=None):
    return {"name": vm, "uuid": "uuid-" + vm, "snapshot": snap, "run_id": run or "run-" + snap}


VMS = [{"host": "kvm1", "name": "web1", "uuid": "uuid-web1"}, {"host": "kvm1", "name": "db1", "uuid": "uuid-db1"},
       {"host": "kvm2", "name": "new1", "uuid": "uuid-new1"}]
# oldest first, as the catalog filter gives them
RECORDS = [rec("s-old", 50), rec("s-db", 30), rec("s-pre", 2, policy="prerestore"), rec("s-late", 1, state="late"),
           rec("s-new", 3)]
PROTECTED = [{"protected": {"s-old": [man("web1", "s-old"), man("db1", "s-old")], "s-db": [man("db1", "s-db")],
                            "s-late": [man("web1", "s-late"), man("db1", "s-late")],
                            # s-new carries db1's older manifest (left in .kvmsnap/ by run s-db): no backup of db1
                            "s-new": [man("web1", "s-new"), man("db1", "s-db")],
                            "s-pre": [man("db1", "s-pre")]}},
             {"protected": {}}]


def test_each_vm_gets_its_newest_good_backup_and_age():
    res = backup_check(RECORDS, PROTECTED, VMS, 26, now=NOW)
    by = {v["name"]: v for v in res["vms"]}
    assert by["web1"]["ok"] and by["web1"]["snapshot"] == "s-new" and by["web1"]["age_seconds"] == 3 * HOUR
    # late and prerestore snapshots are no backups; a stale manifest is none either: db1's newest is s-db, 30 h old
    assert by["db1"]["snapshot"] == "s-db" and not by["db1"]["ok"]
    assert by["new1"]["snapshot"] is None and not by["new1"]["ok"]
    assert res["ok"] is False
    assert res["passed"] == ["VM web1 on kvm1: newest good backup s-new (policy daily, created T-3h) is 3h 00m old."]
    assert res["failed"] == [
        "VM db1 on kvm1: newest good backup s-db (policy daily, created T-30h) is 1d 6h old, older than "
        "kvmsnap_check_max_age_hours=26; check the backup schedule and the last backup runs.",
        "VM new1 on kvm2: no good backup found on its volumes; run kvmsnap.core.backup for it (and check that "
        "kvmsnap_vms and the schedule include it)."]
    assert res["summary"] == "3 VM(s) checked: 1 with a good backup younger than 26 h, 2 failing."


def test_passes_when_every_vm_is_recent_and_max_age_zero_fails_all():
    res = backup_check(RECORDS, PROTECTED, VMS[:1], 26, now=NOW)
    assert res["ok"] is True and res["failed"] == []
    res = backup_check(RECORDS, PROTECTED, VMS[:1], 0, now=NOW)
    assert res["ok"] is False and "older than kvmsnap_check_max_age_hours=0" in res["failed"][0]


def test_a_host_not_discovered_fails_the_check():
    res = backup_check(RECORDS, PROTECTED, VMS[:1], 26, failed_hosts=["kvm9"], now=NOW)
    assert res["ok"] is False and res["failed"] == [
        "KVM host kvm9: discovery failed, its VMs were not checked; fix access to it and run the check again."]


def test_check_settings_name_the_variable():
    import pytest

    from ansible_collections.kvmsnap.core.plugins.plugin_utils._settings import SettingsError, resolve
    ctrl = {"c1": {"ontap_hostname": "c1", "ontap_username": "u", "has_password": True}}
    s = resolve({}, {}, "check", ctrl)
    assert s["check_max_age_hours"] == 26 and s["check_report"] is None
    assert resolve({"kvmsnap_check_report": "/tmp/x.json"}, {}, "check", ctrl)["check_report"] == "/tmp/x.json"
    with pytest.raises(SettingsError, match="kvmsnap_check_max_age_hours: -1 is out of range; allowed: an integer "
                                            "from 0 to 8760"):
        resolve({"kvmsnap_check_max_age_hours": -1}, {}, "check", ctrl)
    with pytest.raises(SettingsError, match="kvmsnap_check_report: 'x.json' is not absolute"):
        resolve({"kvmsnap_check_report": "x.json"}, {}, "check", ctrl)
    with pytest.raises(SettingsError, match="no ONTAP controller"):
        resolve({}, {}, "check", {})
