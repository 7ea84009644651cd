"""Controller-side logic of the roles: settings pre-flight, discovery normalisation, volume sets, outcomes."""

from __future__ import annotations

import pytest

from ansible_collections.kvmsnap.core.plugins.plugin_utils._plan import (
    backup_plan,
    fence_outcome,
    normalize,
    restore_plan,
    table,
    volume_restore_conflicts,
)
from ansible_collections.kvmsnap.core.plugins.plugin_utils._settings import SettingsError, resolve

CTRL = {"c1": {"ontap_hostname": "10.0.0.1", "ontap_username": "u", "has_password": True},
        "c2": {"ontap_hostname": "c2.example.com", "ontap_username": "u", "ontap_transport": "zapi"}}
DS = [{"path": "/ds1", "controller": "c1", "svm": "svm1", "volume": "vol1"},
      {"path": "/ds2", "controller": "c2", "svm": "svm1", "volume": "vol2"}]


def settings(**kw):
    raw = {"kvmsnap_datastores": DS}
    raw.update(kw)
    return resolve(raw, {}, kw.pop("_op", "backup"), CTRL)


def vm(name, *paths, uuid=None, state="running", cdrom=None):
    disks = [{"path": p, "target": "vd%s" % chr(97 + i), "device": "disk", "type": "file"} for i, p in enumerate(paths)]
    if cdrom:
        disks.append({"path": cdrom, "target": "hdc", "device": "cdrom", "skipped": True})
    return {"name": name, "uuid": uuid or "00000000-0000-0000-0000-%012x" % sum(map(ord, name)),
            "state": state, "disks": disks}


# ---------------------------------------------------------------- settings
def test_settings_defaults_and_normalisation():
    s = settings(kvmsnap_retention="daily:7,weekly:4", kvmsnap_restore_vms="a, b,")
    assert s["retention"] == {"daily": 7, "weekly": 4} and s["keep"] == 7
    assert s["restore_vms"] == ["a", "b"]
    assert s["restore_snapshot"] == {"kind": "latest", "value": "latest", "allow_crash": False}
    assert set(s["controllers"]) == {"c1", "c2"}
    assert "password" not in repr(s["controllers"])


@pytest.mark.parametrize("kw, match", [
    ({"kvmsnap_libvirt_uri": "qemu+tcp://h/system"}, "unauthenticated qemu\\+tcp"),
    ({"kvmsnap_datastores": [{"path": "/x", "controller": "nope", "svm": "s", "volume": "v"}]},
     "controller 'nope' is not a host of the inventory group ontap_controllers"),
    ({"kvmsnap_datastores": [{"path": "rel", "controller": "c1", "svm": "s", "volume": "v"}]}, "not absolute"),
    ({"kvmsnap_datastores": [{"path": "/x", "controller": "c1", "svm": "s"}]}, "entry 1: missing volume"),
    ({"kvmsnap_datastores": [{"path": "/x", "controller": "c1", "svm": "s", "volume": "v", "lun": 1}]},
     "unknown key"),
    ({"kvmsnap_quiesce_mode": "pause"}, "kvmsnap_quiesce_mode: 'pause' is not valid; allowed: suspend"),
    ({"kvmsnap_retention": "daily:0"}, "out of range"),
    ({"kvmsnap_retention": {"daily": True}}, "boolean"),
    ({"kvmsnap_policy": "da ily"}, "kvmsnap_policy"),
    ({"kvmsnap_snapshot_prefix": "hourly."}, "reserved prefix"),
    ({"kvmsnap_snapmirror_update": "maybe"}, "kvmsnap_snapmirror_update: 'maybe' is not a boolean"),
    ({"kvmsnap_retries": 11}, "kvmsnap_retries: 11 is out of range"),
    ({"kvmsnap_timeout": True}, "not an integer"),
    ({"kvmsnap_restore_snapshot": "[?policy=="}, "neither a snapshot name nor a valid JMESPath"),
    ({"kvmsnap_restore_mode": "inplace"}, "kvmsnap_restore_mode"),
    ({"kvmsnap_vms": ["a", "a"]}, "repeats VM 'a'"),
])
def test_settings_errors_name_the_variable(kw, match):
    with pytest.raises(SettingsError, match=match):
        settings(**kw)


def test_restore_needs_a_selection_and_a_valid_query_is_kept():
    with pytest.raises(SettingsError, match="kvmsnap_restore_vms: no VM selected"):
        resolve({"kvmsnap_datastores": DS}, {}, "restore", CTRL)
    s = resolve({"kvmsnap_datastores": DS, "kvmsnap_restore_vms": "all",
                 "kvmsnap_restore_snapshot": "[?policy=='weekly'] | [-1]"}, {}, "restore", CTRL)
    assert s["restore_vms"] == "all" and s["restore_snapshot"]["kind"] == "query"


def test_controller_host_vars_are_checked():
    bad = dict(CTRL, c1={"ontap_hostname": "https://c1/api", "ontap_username": "u"})
    with pytest.raises(SettingsError, match="inventory host c1 .* ontap_hostname 'https://c1/api' is not valid"):
        resolve({"kvmsnap_datastores": DS}, {}, "backup", bad)
    bad = dict(CTRL, c2={"ontap_hostname": "c2", "ontap_username": "u", "ontap_transport": "soap"})
    with pytest.raises(SettingsError, match="ontap_transport 'soap'"):
        resolve({"kvmsnap_datastores": DS}, {}, "backup", bad)
    with pytest.raises(SettingsError, match="ontap_username"):
        resolve({"kvmsnap_datastores": DS}, {}, "backup", dict(CTRL, c2={"ontap_hostname": "c2"}))
    with pytest.raises(SettingsError, match="no ONTAP controller"):
        resolve({}, {}, "backup", {})


def test_snapcreator_file_fills_defaults_only():
    defaults = {"kvmsnap_retention": "daily:7,weekly:4", "kvmsnap_snapshot_prefix": "kvmsnap"}
    raw = {"kvmsnap_datastores": DS, "kvmsnap_retention": "daily:7,weekly:4", "kvmsnap_snapshot_prefix": "mine"}
    s = resolve(raw, defaults, "backup", CTRL, "SNAME=sc\nNTAP_SNAPSHOT_RETENTIONS=daily:2\nNTAP_USERS=x:y/z\n",
                "/etc/sc.conf")
    assert s["retention"] == {"daily": 2} and s["snapshot_prefix"] == "mine"
    assert any("NTAP_USERS (line 3) ignored" in w for w in s["warnings"])
    assert any("kvmsnap_snapshot_prefix is set explicitly" in w for w in s["warnings"])
    with pytest.raises(SettingsError, match="kvmsnap_snapcreator_config /etc/sc.conf: line 1: SC_AGENT_TIMEOUT"):
        resolve(raw, defaults, "backup", CTRL, "SC_AGENT_TIMEOUT=0\n", "/etc/sc.conf")


# ---------------------------------------------------------------- discovery → plan
def test_normalize_maps_disks_and_names_what_cannot_be_protected():
    s = settings()
    result = {"vms": [vm("web", "/ds1/web.img"), vm("iso", "/ds1/iso.img", cdrom="/isos/x.iso"),
                      vm("local", "/var/lib/libvirt/images/l.img"),
                      {"name": "nfs", "uuid": "11111111-1111-1111-1111-111111111111", "state": "running",
                       "disks": [{"path": "/mnt/nfs/n.img", "target": "vda", "device": "disk", "controller": "c2",
                                  "svm": "svm9", "volume": "v9", "path_in_volume": "/n.img",
                                  "datastore": "/mnt/nfs", "mapped_by": "nfs"}]}],
              "unprotectable": [{"vm": "local", "uuid": None, "disk": "vda", "severity": "error",
                                 "reason": "VM local disk vda: on /dev/sda1, not on an NFS datastore"}]}
    vms = {v["name"]: v for v in normalize("kvm1", result, s, CTRL)}
    assert vms["web"]["protectable"] and vms["web"]["disks"][0]["path"] == "/web.img"
    assert vms["web"]["disks"][0]["volume"] == "vol1" and vms["web"]["disks"][0]["controller"] == "c1"
    assert not vms["iso"]["protectable"] and "ISO images are not backed up" in vms["iso"]["reasons"][0]
    assert not vms["local"]["protectable"] and "no mapped ONTAP volume" in vms["local"]["reasons"][0]
    assert vms["nfs"]["protectable"] and vms["nfs"]["disks"][0]["path"] == "/n.img"
    lines = table(list(vms.values()))
    assert lines[0].startswith("HOST") and any("NO: cdrom hdc" in line for line in lines)


def test_named_vm_not_found_is_reported():
    s = settings(kvmsnap_vms=["ghost"])
    out = normalize("kvm1", {"vms": []}, s, CTRL)
    assert out[0]["name"] == "ghost" and "not found on kvm1" in out[0]["reasons"][0]


def test_plan_single_shared_and_two_controllers():
    s = settings()
    per_host = {
        "h1": normalize("h1", {"vms": [vm("a", "/ds1/a.img")]}, s, CTRL),
        "h2": normalize("h2", {"vms": [vm("b", "/ds1/b.img")]}, s, CTRL),      # shares vol1 with h1
        "h3": normalize("h3", {"vms": [vm("c", "/ds2/c.img")]}, s, CTRL),      # alone on c2
    }
    plan = backup_plan(per_host, s)
    assert plan["hosts"]["h1"]["mode"] == "shared" and plan["hosts"]["h2"]["mode"] == "shared"
    assert plan["hosts"]["h1"]["peers"] == ["h1", "h2"]
    assert plan["hosts"]["h3"]["mode"] == "single" and plan["hosts"]["h3"]["controllers"] == ["c2"]
    assert plan["controllers"]["c1"]["shared"] == ["svm1:vol1"] and plan["controllers"]["c2"]["single"] == ["svm1:vol2"]
    assert plan["shared_hosts"] == ["h1", "h2"]
    # one host on two controllers cannot use vm_backup (one connection): shared path
    plan2 = backup_plan({"h1": normalize("h1", {"vms": [vm("a", "/ds1/a.img", "/ds2/a2.img")]}, s, CTRL)}, s)
    assert plan2["hosts"]["h1"]["mode"] == "shared"


def test_shared_lun_makes_both_vms_unprotectable():
    s = settings()
    lun = {"path": "/dev/mapper/3600a", "target": "vda", "device": "disk", "type": "block", "controller": "c1",
           "svm": "svm1", "volume": "vol_san", "lun": {"path": "/vol/vol_san/lun1"}}
    per_host = {"h1": normalize("h1", {"vms": [{"name": "x", "uuid": "u1", "disks": [lun]},
                                               {"name": "y", "uuid": "u2", "disks": [dict(lun)]}]}, s, CTRL)}
    plan = backup_plan(per_host, s)
    assert plan["protect"] == []
    assert all("shared by VMs x, y" in r["reasons"][-1] for r in plan["unprotectable"])


def test_fence_outcome_partial_failure_names_what_was_protected():
    s = settings()
    per_host = {"h1": normalize("h1", {"vms": [vm("a", "/ds1/a.img"), vm("b", "/ds2/b.img")]}, s, CTRL)}
    plan = backup_plan(per_host, s)
    assert plan["hosts"]["h1"]["mode"] == "shared"
    a, b = plan["vms"]
    results = {"h1": {
        "quiesce": {"vms": [{"uuid": a["uuid"], "consistency": "suspended", "action": "suspended", "quiesce_ms": 5},
                            {"uuid": b["uuid"], "consistency": "suspended", "action": "suspended", "quiesce_ms": 7}]},
        "release": {"vms": [{"uuid": a["uuid"], "release_result": "resumed", "released_by": "release",
                             "released_at": 100.4},
                            {"uuid": b["uuid"], "release_result": "resumed", "released_by": "release",
                             "released_at": 100.4}]},
        "snap": {"results": [{"item": "c1", "snapshots": [{"svm": "svm1", "volume": "vol1"}], "method": "single"},
                             {"item": "c2", "failed": True, "msg": "c2: create snapshot failed"}]},
        "error": "h1: One or more items failed", "t_quiesce": 100.0, "t_snapshot": 100.2, "t_released": 100.5}}
    out = fence_outcome(plan, results)
    vms = {v["name"]: v for v in out["vms"]}
    assert out["done"] == {"c1": ["svm1:vol1"]}
    assert vms["a"]["ok"] is True  # its volume got the snapshot while it was quiesced
    assert vms["b"]["ok"] is False and "c2: create snapshot failed" in vms["b"]["error"]
    assert all(v["released"] for v in vms.values())
    assert vms["a"]["pause_ms"] == pytest.approx(500.0)
    vols = {v["volume"]: v for v in out["volumes"]}
    assert vols["vol1"]["ok"] and not vols["vol2"]["ok"]


def test_restore_plan_and_volume_conflicts():
    man = {"vm": {"name": "a", "uuid": "u1", "state": "running"}, "host": "h1", "domain_xml_text": "<domain/>",
           "nvram_file": None, "datastores": ["/ds1"],
           "disks": [{"controller": "c1", "svm": "svm1", "volume": "vol1", "path": "/a.img", "datastore": "/ds1"}]}
    per_host = {"h1": {"manifests": [man], "invalid": [], "current": {}}}
    snap = {"name": "s1", "volumes": ["c1:svm1:vol1"]}
    plan = restore_plan(per_host, ["a"], snap)
    assert plan["errors"] == []
    assert plan["hosts"]["h1"][0]["current_state"] == "absent" and plan["hosts"]["h1"][0]["start"] == "always"
    assert plan["volumes"][0]["files"] == ["/a.img"]
    assert "no valid manifest" in restore_plan(per_host, ["a", "zz"], snap)["errors"][0]
    assert "does not exist on volume c1:svm1:vol1" in restore_plan(per_host, "all", {"name": "s2", "volumes": []})[
        "errors"][0]
    discovered = [{"name": "other", "disks": [{"controller": "c1", "svm": "svm1", "volume": "vol1"}]}]
    reasons = volume_restore_conflicts(plan, {"c1:svm1:vol1": ["/a.img", "/notes.txt"]}, discovered)
    assert "also holds disks of other" in reasons[0] and "/notes.txt" in reasons[1]


# ---------------------------------------------------------------- catalog and snapshot selection (filters)
def _catalog():
    from ansible_collections.kvmsnap.core.plugins.filter.roles import catalog

    def snap(name, t, policy="daily", vol="vol1", state="valid", trust="good", consistency="suspended"):
        meta = ({"policy": policy, "run": "r", "host": "h", "state": trust,
                 "consistency": consistency if trust == "good" else "crash" if trust == "late" else None}
                if policy else None)
        return {"name": name, "svm": "svm1", "volume": vol, "create_time": t, "state": state, "kvmsnap": meta}
    results = [{"item": "c1", "snapshots": [snap("kvmsnap-daily_1", 1), snap("kvmsnap-weekly_2", 2, "weekly"),
                                            snap("kvmsnap-daily_3", 3), snap("hourly.0", 4, None),
                                            snap("kvmsnap-prerestore_5", 5, "prerestore", consistency="crash"),
                                            snap("kvmsnap-daily_1", 1, vol="vol2"), snap("kvmsnap-daily_3", 3, vol="vol2"),
                                            snap("kvmsnap-daily_6", 6, vol="vol2", state="invalid"),
                                            snap("kvmsnap-daily_6", 6),
                                            # late (after the deadline) and pending (never confirmed), both complete
                                            # and newer than the newest good backup: never `latest`
                                            snap("kvmsnap-daily_7", 7, trust="late"),
                                            snap("kvmsnap-daily_7", 7, vol="vol2", trust="late"),
                                            snap("kvmsnap-daily_8", 8, trust="pending"),
                                            snap("kvmsnap-daily_8", 8, vol="vol2", trust="pending"),
                                            # good on one volume, late on the other: the set is late
                                            snap("kvmsnap-daily_9", 9), snap("kvmsnap-daily_9", 9, vol="vol2", trust="late"),
                                            # written before trust states: no state
                                            snap("kvmsnap-daily_10", 10, trust=None),
                                            snap("kvmsnap-daily_10", 10, vol="vol2", trust=None)]}]
    return catalog(results, ["c1:svm1:vol1", "c1:svm1:vol2"])


def test_catalog_and_latest_skip_foreign_partial_invalid_and_safety_snapshots():
    from ansible_collections.kvmsnap.core.plugins.filter.roles import newer_snapshots, select_snapshot
    records = _catalog()
    by = {r["name"]: r for r in records}
    assert by["kvmsnap-daily_1"]["complete"] and not by["kvmsnap-weekly_2"]["complete"]
    assert by["kvmsnap-weekly_2"]["missing"] == ["c1:svm1:vol2"] and not by["hourly.0"]["ours"]
    assert select_snapshot(records, {"kind": "latest", "value": "latest"})["name"] == "kvmsnap-daily_3"
    assert select_snapshot(records, {"kind": "name", "value": "kvmsnap-weekly_2"})["policy"] == "weekly"
    assert select_snapshot(records, {"kind": "query", "value": "[?policy=='weekly'] | [-1]"})["name"] == \
        "kvmsnap-weekly_2"
    assert select_snapshot(records, {"kind": "query", "value": "[?create_time < `3`].name"})["name"] == \
        "kvmsnap-weekly_2"
    newer = newer_snapshots(records, by["kvmsnap-daily_3"], ["c1:svm1:vol1"])
    assert [n["name"] for n in newer][:2] == ["hourly.0", "kvmsnap-prerestore_5"]


def test_catalog_records_carry_trust_state_and_consistency():
    by = {r["name"]: r for r in _catalog()}
    assert {n: (by[n]["state"], by[n]["consistency"]) for n in by} == {
        "kvmsnap-daily_1": ("good", "suspended"), "kvmsnap-weekly_2": ("good", "suspended"),
        "kvmsnap-daily_3": ("good", "suspended"), "hourly.0": (None, None),
        "kvmsnap-prerestore_5": ("good", "crash"),
        "kvmsnap-daily_6": ("late", "suspended"),  # ONTAP says invalid on vol2: never good
        "kvmsnap-daily_7": ("late", "crash"), "kvmsnap-daily_8": ("pending", None),
        "kvmsnap-daily_9": ("late", "crash"), "kvmsnap-daily_10": (None, None)}
    assert by["kvmsnap-daily_6"]["ontap_state"] == "invalid"


def test_late_pending_and_old_format_only_by_name_with_the_override():
    """A late snapshot is never picked by `latest` (nor by a query); by name it needs
    kvmsnap_restore_allow_crash."""
    from ansible.errors import AnsibleFilterError

    from ansible_collections.kvmsnap.core.plugins.filter.roles import select_snapshot
    records = _catalog()
    for name, what in (("kvmsnap-daily_7", "is late"), ("kvmsnap-daily_8", "is pending"),
                       ("kvmsnap-daily_10", "without a trust state"), ("hourly.0", "not a snapshot of this collection")):
        with pytest.raises(AnsibleFilterError) as err:
            select_snapshot(records, {"kind": "name", "value": name})
        assert name in str(err.value) and what in str(err.value) and "kvmsnap_restore_allow_crash" in str(err.value)
        assert select_snapshot(records, {"kind": "name", "value": name, "allow_crash": True})["name"] == name
    # a query sees every record with its state, but its result must be good, override or not
    with pytest.raises(AnsibleFilterError, match="kvmsnap-daily_10, which is without a trust state"):
        select_snapshot(records, {"kind": "query", "value": "[?policy=='daily'] | [-1]", "allow_crash": True})
    assert select_snapshot(records, {"kind": "query", "value": "[?policy=='daily' && state=='good'] | [-1]"})[
        "name"] == "kvmsnap-daily_3"
    assert select_snapshot(records, {"kind": "latest", "value": "latest", "allow_crash": True})["name"] == \
        "kvmsnap-daily_3"


def test_verify_run_names_its_own_variable_and_has_no_override():
    """A verify picks with kvmsnap_verify_snapshot and boots good backups only: no message of its pre-flight may send
    the user to a restore variable, and each says what to set instead."""
    from ansible.errors import AnsibleFilterError

    from ansible_collections.kvmsnap.core.plugins.filter.roles import select_snapshot
    records = _catalog()

    def refused(recs, spec):
        with pytest.raises(AnsibleFilterError) as err:
            select_snapshot(recs, spec, None, None, "verify")
        text = str(err.value)
        assert text.startswith("kvmsnap verify pre-flight: kvmsnap_verify_snapshot"), text
        assert "kvmsnap_restore" not in text and "restore it" not in text, text
        return text

    for name, what in (("kvmsnap-daily_7", "is late"), ("kvmsnap-daily_8", "is pending"),
                       ("kvmsnap-daily_10", "without a trust state"), ("hourly.0", "not a snapshot of this collection")):
        for allow in (False, True):  # a verify spec never carries the override; if it did, it would not count
            text = refused(records, {"kind": "name", "value": name, "allow_crash": allow})
            assert name in text and what in text, text
            assert "a verify boots good backups only" in text and "set kvmsnap_verify_snapshot to latest" in text
            assert "newest good backup: kvmsnap-daily_3" in text, text
    text = refused(records, {"kind": "query", "value": "[?policy=='daily'] | [-1]"})
    assert "add [?state=='good'] to the query" in text and "a verify boots good backups only" in text
    text = refused(records, {"kind": "query", "value": "[?policy=='monthly']"})
    assert "Pick one with kvmsnap_verify_snapshot" in text
    text = refused([r for r in records if r["name"] in ("kvmsnap-daily_7", "kvmsnap-daily_8")],
                   {"kind": "latest", "value": "latest"})
    assert "not confirmed backups (newest: kvmsnap-daily_8, pending)" in text and "kvmsnap.core.backup" in text
    text = refused(records, {"kind": "latest_verified", "value": "latest_verified"})
    assert "Verify a good backup first with kvmsnap_verify_snapshot=latest" in text
    with pytest.raises(AnsibleFilterError, match="operation 'backup'; allowed: restore, verify"):
        select_snapshot(records, {"kind": "latest", "value": "latest"}, None, None, "backup")
    # the restore keeps its own wording and override
    with pytest.raises(AnsibleFilterError, match="^kvmsnap restore pre-flight: kvmsnap_restore_snapshot: snapshot "
                                                 "kvmsnap-daily_8 is pending.*set kvmsnap_restore_allow_crash: true"):
        select_snapshot(records, {"kind": "name", "value": "kvmsnap-daily_8"})


def test_select_snapshot_nothing_selected_lists_what_exists():
    from ansible.errors import AnsibleFilterError

    from ansible_collections.kvmsnap.core.plugins.filter.roles import select_snapshot
    from ansible_collections.kvmsnap.core.plugins.plugin_utils._catalog import existing
    records = _catalog()
    for spec in ({"kind": "query", "value": "[?policy=='monthly']"}, {"kind": "name", "value": "nope"}):
        with pytest.raises(AnsibleFilterError) as err:
            select_snapshot(records, spec)
        text = str(err.value)
        # newest first, with policy and state; the safety snapshot and foreign ones are not offered
        assert "newest first: kvmsnap-daily_10 (policy daily, state none" in text, text
        assert text.index("kvmsnap-daily_8 (policy daily, state pending") < text.index(
            "kvmsnap-daily_3 (policy daily, state good") < text.index("kvmsnap-weekly_2 (policy weekly, state good")
        assert "prerestore" not in text and "hourly.0" not in text
        assert "Pick one with kvmsnap_restore_snapshot" in text and "as JSON with -e" in text
    # bounded: the listing names at most ten snapshots and counts the rest
    many = [{"name": "kvmsnap-daily_%02d" % i, "policy": "daily", "state": "good", "create_time": i, "ours": True,
             "create_time_iso": "2026-01-%02dT00:00:00Z" % i} for i in range(1, 16)]
    text = existing(many)
    assert text.count("(policy daily") == 10 and "kvmsnap-daily_15" in text and "kvmsnap-daily_05" not in text
    assert text.endswith("5 older not shown")


def test_select_snapshot_errors():
    from ansible.errors import AnsibleFilterError

    from ansible_collections.kvmsnap.core.plugins.filter.roles import select_snapshot
    records = _catalog()
    with pytest.raises(AnsibleFilterError, match="snapshot 'nope' exists on none of the volumes"):
        select_snapshot(records, {"kind": "name", "value": "nope"})
    with pytest.raises(AnsibleFilterError, match="selected no snapshot"):
        select_snapshot(records, {"kind": "query", "value": "[?policy=='monthly']"})
    with pytest.raises(AnsibleFilterError, match="no good backup of this collection exists on every needed volume"):
        select_snapshot([r for r in records if r["name"] in ("hourly.0", "kvmsnap-weekly_2")],
                        {"kind": "latest", "value": "latest"})
    with pytest.raises(AnsibleFilterError, match="2 snapshot.s. of this collection are not confirmed backups "
                                                 "\\(newest: kvmsnap-daily_8, pending\\)"):
        select_snapshot([r for r in records if r["name"] in ("kvmsnap-daily_7", "kvmsnap-daily_8")],
                        {"kind": "latest", "value": "latest"})


def test_restore_allow_crash_setting():
    s = settings(kvmsnap_restore_snapshot="kvmsnap-daily_7", kvmsnap_restore_allow_crash=True)
    assert s["restore_allow_crash"] is True and s["restore_snapshot"]["allow_crash"] is True
    # never with latest or a query
    s = settings(kvmsnap_restore_allow_crash=True)
    assert s["restore_snapshot"] == {"kind": "latest", "value": "latest", "allow_crash": False}
    with pytest.raises(SettingsError, match="kvmsnap_restore_allow_crash"):
        settings(kvmsnap_restore_allow_crash="maybe")


def test_the_same_vm_on_two_inventory_hosts_is_refused():
    s = settings()
    one = vm("a", "/ds1/a.img")
    plan = backup_plan({"h1": normalize("h1", {"vms": [one]}, s, CTRL),
                        "h2": normalize("h2", {"vms": [dict(one)]}, s, CTRL)}, s)
    assert plan["protect"] == []
    assert "seen on KVM hosts h1, h2" in plan["unprotectable"][0]["reasons"][-1]


def _shared_two_hosts():
    s = settings()
    per_host = {"h1": normalize("h1", {"vms": [vm("a", "/ds1/a.img")]}, s, CTRL),
                "h2": normalize("h2", {"vms": [vm("b", "/ds1/b.img")]}, s, CTRL)}
    plan = backup_plan(per_host, s)
    a, b = plan["vms"]
    snap = {"results": [{"item": "c1", "snapshots": [{"svm": "svm1", "volume": "vol1"}], "method": "cg"}]}

    def host(vmrec, released_by, released_at, result="resumed"):
        return {"quiesce": {"vms": [{"uuid": vmrec["uuid"], "consistency": "suspended", "action": "suspended"}]},
                "release": {"vms": [{"uuid": vmrec["uuid"], "release_result": result, "released_by": released_by,
                                     "released_at": released_at}]},
                "snap": snap, "t_quiesce": 100.0, "t_snapshot": 130.0, "t_released": 131.0}
    return plan, a, b, host


def test_shared_fence_watchdog_release_is_crash_and_fails_the_vm():
    plan, a, b, host = _shared_two_hosts()
    results = {"h1": host(a, "release", 130.5), "h2": host(b, "watchdog", 120.0, "released")}
    out = fence_outcome(plan, results)
    vms = {v["name"]: v for v in out["vms"]}
    assert vms["b"]["consistency"] == "crash" and vms["b"]["ok"] is False
    assert "released by the watchdog" in vms["b"]["error"] and "kvmsnap_allow_crash_consistent" in vms["b"]["error"]
    # a: itself held across the snapshot, but its volume's snapshot is crash-consistent for b: marked late
    assert vms["a"]["consistency"] == "suspended" and vms["a"]["ok"] is False
    assert out["confirm"] == [{"controller": "c1", "host": None, "state": "late", "consistency": "crash",
                               "volumes": ["svm1:vol1"]}]
    assert out["done"] == {}
    # allowed: the run passes, b is reported crash, the snapshot is confirmed good with consistency crash
    out = fence_outcome(plan, results, allow_crash=True)
    vms = {v["name"]: v for v in out["vms"]}
    assert vms["b"]["ok"] and vms["b"]["consistency"] == "crash" and vms["a"]["ok"]
    assert out["confirm"][0]["state"] == "good" and out["confirm"][0]["consistency"] == "crash"
    assert out["done"] == {"c1": ["svm1:vol1"]}


@pytest.mark.parametrize("released_by,released_at,result,why", [
    ("recovery", 131.0, "resumed", "another run's recovery"),
    ("none", None, "not quiesced by run r1; left as is (running)", "nobody"),
    ("release", 131.0, "already running", "resumed by someone else"),
    ("release", 129.0, "resumed", "before the snapshot completed"),
])
def test_shared_fence_every_other_release_is_crash(released_by, released_at, result, why):
    plan, a, b, host = _shared_two_hosts()
    out = fence_outcome(plan, {"h1": host(a, "release", 130.5), "h2": host(b, released_by, released_at, result)})
    vb = next(v for v in out["vms"] if v["name"] == "b")
    assert vb["consistency"] == "crash" and why in vb["details"]["crash_reason"], vb


def test_shared_fence_sound_release_keeps_the_quiesce_consistency():
    plan, a, b, host = _shared_two_hosts()
    out = fence_outcome(plan, {"h1": host(a, "release", 130.5), "h2": host(b, "release", 130.6)})
    assert all(v["ok"] and v["consistency"] == "suspended" for v in out["vms"])
    assert out["confirm"][0]["state"] == "good" and out["confirm"][0]["consistency"] == "suspended"


def test_shared_fence_vm_not_released_keeps_its_level():
    plan, a, b, host = _shared_two_hosts()
    hb = host(b, None, None, None)
    hb["release"]["vms"][0].update(released=False, release_error="release (resume) of VM b failed")
    out = fence_outcome(plan, {"h1": host(a, "release", 130.5), "h2": hb})
    vb = next(v for v in out["vms"] if v["name"] == "b")
    assert vb["consistency"] == "suspended" and "crash_reason" not in (vb.get("details") or {})


def test_settings_controller_vars_named_in_errors(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    ok = dict(CTRL, c1=dict(CTRL["c1"], ontap_ca_path=str(ca)))
    assert resolve({"kvmsnap_datastores": DS}, {}, "backup", ok)["controllers"]["c1"]["ca_path"] == str(ca)
    cases = [
        ({"ontap_ca_path": str(tmp_path / "nope.pem")}, "inventory host c1 .*: ontap_ca_path .*nope.pem does not exist"),
        ({"ontap_ca_path": "ca.pem"}, "inventory host c1 .*: ontap_ca_path: 'ca.pem' is not absolute"),
        ({"ontap_cert_file": str(ca), "ontap_key_file": str(ca)}, "ontap_password and ontap_cert_file are both set"),
        ({"ontap_cert_file": str(ca), "has_password": False}, "ontap_cert_file is set without ontap_key_file"),
        ({"ontap_data_addresses": "10.0.0.1"}, "ontap_data_addresses '10.0.0.1' is not valid; allowed: a list"),
        ({"ontap_username": 42}, "ontap_username 42 is not a string"),
    ]
    for extra, match in cases:
        bad = dict(CTRL, c1=dict(CTRL["c1"], **extra))
        with pytest.raises(SettingsError, match=match):
            resolve({"kvmsnap_datastores": DS}, {}, "backup", bad)
    cert = dict(CTRL, c1={"ontap_hostname": "c1", "ontap_cert_file": str(ca), "ontap_key_file": str(ca)})
    assert resolve({"kvmsnap_datastores": DS}, {}, "backup", cert)["controllers"]["c1"]["name"] == "c1"


def test_settings_agent_timeout_and_vm_mapping_named():
    assert settings()["agent_timeout"] == 10
    assert settings(kvmsnap_agent_timeout="30")["agent_timeout"] == 30
    with pytest.raises(SettingsError, match="kvmsnap_agent_timeout: 0 is out of range; allowed: an integer from 1 to 600"):
        settings(kvmsnap_agent_timeout=0)
    with pytest.raises(SettingsError, match="^kvmsnap_vm_mapping entry 1 .*: missing fields"):
        settings(kvmsnap_vm_mapping="VM1")


def test_existing_snapshot_filter_only_takes_a_good_complete_set_as_done():
    """F11 (docs/dev/faults.md#f11): the backup role's name check calls the one decision (existing_set)."""
    from ansible_collections.kvmsnap.core.plugins.filter.roles import existing_snapshot
    from ansible_collections.kvmsnap.core.plugins.module_utils._snapshot_naming import build_comment

    def result(ctrl, *snaps):
        return {"item": ctrl, "snapshots": [{"name": n, "svm": "s", "volume": v, "comment": c, "state": "valid"}
                                            for n, v, c in snaps]}
    keys = ["c1:s:v1", "c2:s:v2"]
    good = build_comment("daily", "r0", state="good", consistency="suspended")
    pending = build_comment("daily", "r0", state="pending", until=1)
    done = existing_snapshot([result("c1", ("n", "v1", good)), result("c2", ("n", "v2", good), ("m", "v2", good))],
                             "n", keys)
    assert done["verdict"] == "done"
    assert existing_snapshot([result("c1", ("m", "v1", good)), result("c2")], "n", keys)["verdict"] == "free"
    partial = existing_snapshot([result("c1", ("n", "v1", good)), result("c2")], "n", keys)
    assert partial["kind"] == "partial" and "c1:s:v1 but not on c2:s:v2" in partial["reason"]
    late = existing_snapshot([result("c1", ("n", "v1", pending)), result("c2", ("n", "v2", good))], "n", keys)
    assert late["kind"] == "not_good" and "state pending" in late["reason"]


def _overlay_host(vmrec, commit_started_at=131.0, create_time=129, overlay_at=100.2):
    """A host whose VM took the overlay fence: released by its quiesce task, committed by its release task."""
    snap = {"results": [{"item": "c1", "snapshots": [{"svm": "svm1", "volume": "vol1", "create_time": create_time}],
                         "method": "cg"}]}
    return {"quiesce": {"vms": [{"uuid": vmrec["uuid"], "consistency": "suspended", "action": "suspended",
                                 "fence": "overlay", "fence_reason": "every writable disk is a file", "pause_ms": 31.5,
                                 "overlay_at": overlay_at, "released": True, "release_result": "resumed"}]},
            "release": {"vms": [{"uuid": vmrec["uuid"], "release_result": "resumed", "released_by": "release",
                                 "released_at": overlay_at + 0.03, "fence": "overlay", "overlay_at": overlay_at,
                                 "commit_started_at": commit_started_at}]},
            "snap": snap, "t_quiesce": 100.0, "t_snapshot": 130.0, "t_released": 131.5}


def test_shared_overlay_vm_inside_its_window_keeps_its_level_and_pause():
    plan, a, b, host = _shared_two_hosts()
    out = fence_outcome(plan, {"h1": _overlay_host(a), "h2": _overlay_host(b, commit_started_at=None)})
    assert all(v["ok"] and v["consistency"] == "suspended" and v["fence"] == "overlay" for v in out["vms"]), out["vms"]
    # released by its quiesce task long before the snapshot: that is the overlay fence, not a crash-consistent VM;
    # its pause is the one measured on the host around the switch, not the time between the tasks
    assert {v["pause_ms"] for v in out["vms"]} == {31.5}
    assert out["confirm"][0]["state"] == "good" and out["confirm"][0]["consistency"] == "suspended"


@pytest.mark.parametrize("kw,why", [
    ({"commit_started_at": 125.0}, "after its commit started"),   # the commit began before the snapshot task ended
    ({"create_time": 99}, "before its overlay point"),            # a snapshot older than the overlay
    ({"create_time": 133}, "after its commit started"),           # a snapshot made during the commit
])
def test_shared_overlay_vm_outside_its_window_is_crash(kw, why):
    plan, a, b, host = _shared_two_hosts()
    out = fence_outcome(plan, {"h1": _overlay_host(a), "h2": _overlay_host(b, **kw)})
    vb = next(v for v in out["vms"] if v["name"] == "b")
    assert vb["consistency"] == "crash" and not vb["ok"] and why in vb["details"]["crash_reason"], vb
    assert out["confirm"][0]["state"] == "late"


def test_shared_overlay_vm_without_a_release_record_is_crash():
    plan, a, b, host = _shared_two_hosts()
    hb = _overlay_host(b)
    hb["release"] = {"failed": True, "msg": "host unreachable"}
    out = fence_outcome(plan, {"h1": _overlay_host(a), "h2": hb})
    vb = next(v for v in out["vms"] if v["name"] == "b")
    assert vb["consistency"] == "crash" and "no record of this run's release" in vb["details"]["crash_reason"]
