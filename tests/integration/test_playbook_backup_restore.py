"""The playbooks kvmsnap.core.discover/backup/restore through ansible-playbook against the lab.

Real libvirtd (the lab libvirtd) with minimal boot-sector guests (no boot wait; no guest agent, so the
quiesce is a suspend), disks inside the ONTAP simulator's volume directories, so snapshots and
restores act on the files the guests use. The tests of this module run in order and share the lab:

  discover -> backup --check (nothing changes) -> backup (REST) -> same name again (no-op) ->
  restore refusals (running VM, unknown snapshot, volume mode over other VMs) -> restore of a deleted VM ->
  two inventory hosts sharing a volume (vm_quiesce on both, one snapshot, release on both) ->
  two controllers, one on ZAPI, with a Snap Creator configuration file (prefix, retention -> prune).
"""

from __future__ import annotations

import json
import os
import time

import pytest
from helpers.playbook_lab import Lab, guestlab, run_output, sha

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    base = tmp_path_factory.mktemp("playbooks")
    lab = Lab(base, libvirt_system)
    try:
        lab.start_sim("s1", ("vol_ds1", "vol_ds2"), svms=({"name": "svm_dr", "data_lifs": ["127.0.0.3"]},),
                      relationships=[{"source": "svm1:vol_ds2", "destination": "svm_dr:vol_ds2_mirror",
                                      "policy": "MirrorAllSnapshots", "state": "snapmirrored", "healthy": True}])
        lab.start_sim("s2", size="1G", lif=("l1", "127.0.0.2"), cluster={"name": "dr-cluster", "version": "9.8.0"},
                      users=[{"name": "admin", "password": "netapp123", "role": "admin"}])
        lab.add_guests(("g1", "s1", "vol_ds1"), ("g2", "s1", "vol_ds1"), ("g3", "s1", "vol_ds2"), ("g4", "s2", "vol_ds1"))
        lab.ds1 = lab.datastore("s1", "vol_ds1")
        lab.ds2 = lab.datastore("s1", "vol_ds2")
        lab.ds3 = lab.datastore("s2", "vol_ds1", "c2")
        lab.single = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("g1"), lab.name("g2"), lab.name("g3")]}},
                                   {"c1": lab.controller("s1")}, kvmsnap_datastores=[lab.ds1, lab.ds2])
        yield lab
    finally:
        lab.close()


def test_discover_lists_vms_disks_and_volumes(lab):
    proc = lab.run("discover", lab.single)
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert {v["name"] for v in rep["vms"]} == {lab.name(k) for k in ("g1", "g2", "g3")}
    assert all(v["protectable"] for v in rep["vms"])
    assert sorted(v["key"] for v in rep["volumes"]) == ["c1:svm1:vol_ds1", "c1:svm1:vol_ds2"]
    assert "CONTROLLER:SVM:VOLUME" in proc.stdout  # the table
    assert [(r["source"], r["destination"], r["healthy"]) for r in rep["replication"]] == [
        ("svm1:vol_ds2", "svm_dr:vol_ds2_mirror", True)]
    assert "netapp123" not in proc.stdout


def test_backup_check_mode_changes_nothing(lab):
    proc = lab.run("backup", lab.single, check=True, verbose="-vvv")
    assert proc.returncode == 0, run_output(proc)
    assert "netapp123" not in proc.stdout + proc.stderr  # no secret, even with -vvv
    assert "would snapshot c1:svm1:vol_ds1, c1:svm1:vol_ds2" in proc.stdout
    assert lab.snapshots("s1", "vol_ds1") == [] and lab.snapshots("s1", "vol_ds2") == []
    assert not (lab.vol("s1", "vol_ds1") / ".kvmsnap").exists()
    import libvirt
    assert all(lab.state(k) == libvirt.VIR_DOMAIN_RUNNING for k in ("g1", "g2", "g3"))


def test_backup_single_host_rest(lab):
    import libvirt
    proc = lab.run("backup", lab.single, {"kvmsnap_snapshot_name": "kvmsnap-daily_itest1",
                                          "kvmsnap_snapmirror_update": True})
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert rep["status"] == "ok" and rep["snapshot"] == "kvmsnap-daily_itest1"
    assert sorted(rep["done"]) == sorted(lab.name(k) for k in ("g1", "g2", "g3"))
    for vm in rep["vms"]:
        assert vm["released"] is True and vm["consistency"] == "suspended" and vm["pause_ms"] > 0
    assert [v["method"] for v in rep["volumes"]] == ["cg_temporary", "cg_temporary"]
    assert lab.snapshots("s1", "vol_ds1") == ["kvmsnap-daily_itest1"]
    assert lab.snapshots("s1", "vol_ds2") == ["kvmsnap-daily_itest1"]
    mirror = next(v for v in rep["volumes"] if v["volume"] == "vol_ds2")["snapmirror"]
    assert [(m["destination"], m["result"]) for m in mirror] == [("svm_dr:vol_ds2_mirror", "ok")]
    dst = lab.sims["s1"].data / "volumes" / "svm_dr" / "vol_ds2_mirror" / ".snapshot" / "kvmsnap-daily_itest1"
    assert dst.is_dir()
    uuid = lab.conn.lookupByName(lab.name("g3")).UUIDString()
    man = lab.vol("s1", "vol_ds2") / ".snapshot" / "kvmsnap-daily_itest1" / ".kvmsnap" / uuid / "manifest.json"
    assert json.loads(man.read_text())["vm"]["name"] == lab.name("g3")
    assert all(lab.state(k) == libvirt.VIR_DOMAIN_RUNNING for k in ("g1", "g2", "g3"))
    # set_stats (AWX job artifacts), printed here through show_custom_stats
    assert "CUSTOM STATS" in proc.stdout and "kvmsnap_backup" in proc.stdout, run_output(proc)
    assert "netapp123" not in proc.stdout


def test_backup_rerun_same_name_is_a_noop(lab):
    proc = lab.run("backup", lab.single, {"kvmsnap_snapshot_name": "kvmsnap-daily_itest1"})
    assert proc.returncode == 0, run_output(proc)
    assert "already exists on every volume of the run; nothing to do" in proc.stdout
    assert lab.snapshots("s1", "vol_ds1") == ["kvmsnap-daily_itest1"]
    assert "changed=0" in proc.stdout.split("PLAY RECAP")[-1]


def test_restore_refuses_a_running_vm_without_force(lab):
    before = sha(lab.disk("g1", "s1", "vol_ds1"))
    proc = lab.run("restore", lab.single, {"kvmsnap_restore_vms": [lab.name("g1")]})
    assert proc.returncode != 0
    assert "is running; shut it down first or set kvmsnap_restore_force=true" in proc.stdout, run_output(proc)
    assert sha(lab.disk("g1", "s1", "vol_ds1")) == before
    assert lab.snapshots("s1", "vol_ds1") == ["kvmsnap-daily_itest1"]  # no safety snapshot either


def test_restore_refuses_an_unknown_snapshot(lab):
    proc = lab.run("restore", lab.single, {"kvmsnap_restore_vms": "all", "kvmsnap_restore_snapshot": "nosuch_snap",
                                           "kvmsnap_restore_force": True})
    assert proc.returncode != 0
    assert "snapshot 'nosuch_snap' exists on none of the volumes" in proc.stdout


def test_restore_refuses_a_volume_restore_that_rolls_back_other_vms(lab):
    proc = lab.run("restore", lab.single, {"kvmsnap_restore_vms": [lab.name("g1")], "kvmsnap_restore_mode": "volume",
                                           "kvmsnap_restore_force": True})
    assert proc.returncode != 0
    assert "kvmsnap_restore_mode=volume refused" in proc.stdout
    assert "also holds disks of %s" % lab.name("g2") in proc.stdout
    import libvirt
    assert lab.state("g1") == libvirt.VIR_DOMAIN_RUNNING


def test_restore_brings_back_a_deleted_vm(lab):
    import libvirt
    disk = lab.disk("g3", "s1", "vol_ds2")
    snap_copy = lab.vol("s1", "vol_ds2") / ".snapshot" / "kvmsnap-daily_itest1" / disk.name
    guestlab.destroy_and_undefine(lab.conn.lookupByName(lab.name("g3")))
    disk.unlink()
    extra = {"kvmsnap_restore_vms": lab.name("g3"), "kvmsnap_restore_snapshot": "kvmsnap-daily_itest1"}
    check = lab.run("restore", lab.single, extra, check=True)
    assert check.returncode == 0, run_output(check)
    assert "would restore %s from kvmsnap-daily_itest1" % lab.name("g3") in check.stdout
    assert not disk.exists() and lab.name("g3") not in lab.conn.listDefinedDomains()
    assert lab.snapshots("s1", "vol_ds2") == ["kvmsnap-daily_itest1"]  # no safety snapshot in check mode
    proc = lab.run("restore", lab.single, extra)
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert rep["status"] == "ok" and rep["done"] == [lab.name("g3")]
    assert rep["vms"][0]["state_before"] == "absent" and rep["vms"][0]["state_after"] == "running"
    assert rep["safety_snapshot"].startswith("kvmsnap-prerestore_")
    assert sha(disk) == sha(snap_copy)
    assert lab.state("g3") == libvirt.VIR_DOMAIN_RUNNING


def test_volume_restore_when_only_the_restored_vm_lives_there(lab):
    # vol_ds2 holds only g3; the safety snapshot of the previous restore is newer than kvmsnap-daily_itest1,
    # so a volume restore (which deletes newer snapshots) is refused first, then allowed by the override.
    extra = {"kvmsnap_restore_vms": [lab.name("g3")], "kvmsnap_restore_snapshot": "kvmsnap-daily_itest1",
             "kvmsnap_restore_mode": "volume", "kvmsnap_restore_force": True, "kvmsnap_shutdown_timeout": 3}
    refused = lab.run("restore", lab.single, extra)
    assert refused.returncode != 0
    assert "it would delete the newer snapshot(s) kvmsnap-prerestore_" in refused.stdout
    proc = lab.run("restore", lab.single, dict(extra, kvmsnap_restore_volume_override=True))
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    # "warning": the report says that no safety copy survives a volume restore and names the deleted snapshots
    assert rep["status"] == "warning" and rep["mode"] == "volume" and rep["safety_snapshot"] is None
    assert rep["deleted_snapshots"] and all(n.startswith("kvmsnap-prerestore_") for n in rep["deleted_snapshots"])
    assert any("no safety copy survives a volume restore" in w for w in rep["warnings"]), rep["warnings"]
    assert rep["volumes"][0]["method"] == "volume_snaprestore"
    assert lab.snapshots("s1", "vol_ds2") == ["kvmsnap-daily_itest1"]


def test_two_inventory_hosts_sharing_a_volume(lab):
    import libvirt
    inv = lab.inventory({"kvmA": {"kvmsnap_vms": [lab.name("g1")]}, "kvmB": {"kvmsnap_vms": [lab.name("g2")]}},
                        {"c1": lab.controller("s1")}, kvmsnap_datastores=[lab.ds1])
    proc = lab.run("backup", inv)
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert rep["status"] == "ok", rep
    assert {(v["host"], v["name"]) for v in rep["vms"]} == {("kvmA", lab.name("g1")), ("kvmB", lab.name("g2"))}
    assert all(v["released"] for v in rep["vms"])
    # pause windows measured on the hosts (journal), not the approximate task-to-task figure
    assert all(v["pause_ms"] > 0 and "pause_measured" not in (v.get("details") or {}) for v in rep["vms"]), rep["vms"]
    assert "Quiesce this host's VMs" in proc.stdout and "One consistent snapshot per controller" in proc.stdout
    # kvmsnap_fence auto: each host overlaid its VM in its quiesce task (released at once), its release task
    # committed; the snapshot lies inside both VMs' overlay windows
    assert {(v["fence"], v["consistency"]) for v in rep["vms"]} == {("overlay", "suspended")}, rep["vms"]
    live = [n for d, _s, files in os.walk(lab.ds1["path"]) if "/.snapshot" not in d for n in files]
    assert live and not [n for n in live if n.startswith(".kvmsnap-overlay.")], live  # (snapshots hold some)
    assert rep["snapshot"] in lab.snapshots("s1", "vol_ds1")
    assert lab.state("g1") == libvirt.VIR_DOMAIN_RUNNING and lab.state("g2") == libvirt.VIR_DOMAIN_RUNNING
    # each host restores the VMs its manifests name: g1 (running, forced) on kvmA, g2 (deleted) on kvmB
    guestlab.destroy_and_undefine(lab.conn.lookupByName(lab.name("g2")))
    proc = lab.run("restore", inv, {"kvmsnap_restore_vms": "all", "kvmsnap_restore_snapshot": rep["snapshot"],
                                    "kvmsnap_restore_force": True, "kvmsnap_shutdown_timeout": 3})  # no ACPI in g1
    assert proc.returncode == 0, run_output(proc)
    rrep = proc.report
    assert {(v["host"], v["name"], v["state_before"], v["state_after"]) for v in rrep["vms"]} == {
        ("kvmA", lab.name("g1"), "running", "running"), ("kvmB", lab.name("g2"), "absent", "running")}
    assert lab.state("g2") == libvirt.VIR_DOMAIN_RUNNING


def test_two_controllers_one_zapi_with_a_snapcreator_config(lab):
    import libvirt
    cfg = lab.base / "kvm.conf"
    cfg.write_text("SNAME=scfg\nNTAP_SNAPSHOT_RETENTIONS=daily:1\nNTAP_USERS=c1:admin/secretvalue\n"
                   "NTAP_SNAPMIRROR_UPDATE=N\nKVM_CMD_RETRY_COUNT=2\n")
    inv = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("g1"), lab.name("g4")]}},
                        {"c1": lab.controller("s1"), "c2": lab.controller("s2", "zapi")},
                        kvmsnap_datastores=[lab.ds1, lab.ds3], kvmsnap_snapcreator_config=str(cfg))
    first = lab.run("backup", inv)
    assert first.returncode == 0, run_output(first)
    rep = first.report
    assert rep["status"] == "ok", rep
    assert rep["snapshot"].startswith("scfg-daily_")
    assert rep["snapcreator"]["from_file"] and "kvmsnap_snapshot_prefix" in rep["snapcreator"]["from_file"]
    assert any("NTAP_USERS" in w for w in rep["notes"])
    assert "secretvalue" not in first.stdout
    assert rep["snapshot"] in lab.snapshots("s1", "vol_ds1") and rep["snapshot"] in lab.snapshots("s2", "vol_ds1")
    time.sleep(1.1)
    second = lab.run("backup", inv)
    assert second.returncode == 0, run_output(second)
    rep2 = second.report
    assert rep2["snapshot"] != rep["snapshot"]
    pruned = {p for v in rep2["volumes"] for p in v["pruned"]}
    assert pruned == {rep["snapshot"]}
    assert rep["snapshot"] not in lab.snapshots("s2", "vol_ds1")
    assert "kvmsnap-daily_itest1" in lab.snapshots("s1", "vol_ds1")  # another prefix: never pruned
    assert lab.state("g4") == libvirt.VIR_DOMAIN_RUNNING


def test_partial_failure_names_what_was_and_was_not_protected(lab):
    import libvirt
    for api in ("snapshot-create", "snapshot-multicreate", "cg-start"):
        fault = {"action": "error", "api": api, "count": None, "message": "injected: aggregate offline", "errno": "13001"}
        lab.sims["s2"].admin("POST", "faults", fault)
    try:
        inv = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("g1"), lab.name("g4")]}},
                            {"c1": lab.controller("s1"), "c2": lab.controller("s2", "zapi")},
                            kvmsnap_datastores=[lab.ds1, lab.ds3], kvmsnap_snapshot_name="kvmsnap-daily_partial")
        proc = lab.run("backup", inv)
    finally:
        lab.sims["s2"].admin("DELETE", "faults")
    assert proc.returncode != 0
    rep = proc.report
    assert rep["status"] == "failed"
    assert rep["done"] == [lab.name("g1")] and rep["not_done"] == [lab.name("g4")]
    assert "NOT protected %s" % lab.name("g4") in proc.stdout
    assert "kvmsnap-daily_partial" in lab.snapshots("s1", "vol_ds1")
    assert "kvmsnap-daily_partial" not in lab.snapshots("s2", "vol_ds1")
    assert all(v["released"] for v in rep["vms"])
    assert lab.state("g1") == libvirt.VIR_DOMAIN_RUNNING and lab.state("g4") == libvirt.VIR_DOMAIN_RUNNING


def test_backup_refuses_a_name_that_exists_on_some_volumes_only(lab):
    """F11 (docs/dev/faults.md#f11): the role's name check (filter existing_snapshot) refuses a name that the
    partial run above left on one volume of this run, before anything is touched."""
    assert "kvmsnap-daily_partial" in lab.snapshots("s1", "vol_ds1")
    proc = lab.run("backup", lab.single, {"kvmsnap_snapshot_name": "kvmsnap-daily_partial"})
    assert proc.returncode != 0
    assert ("snapshot kvmsnap-daily_partial already exists on c1:svm1:vol_ds1 but not on c1:svm1:vol_ds2"
            in proc.stdout), run_output(proc)
    assert "Nothing was touched" in proc.stdout
    assert "kvmsnap-daily_partial" not in lab.snapshots("s1", "vol_ds2")
