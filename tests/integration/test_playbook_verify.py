"""A backup says OK only for what is really in the snapshot; a restore checks its sources before touching anything.

The backup and restore playbooks against the lab (real libvirtd with minimal guests, the ONTAP simulator), with
the datastore mistakes that used to give "OK" for a VM whose disk was not in the snapshot, and then a restore
that stopped the running VM and failed ("File ... does not exist in Snapshot copy"):

- gsym: the datastore path is a symlink to a directory outside every volume;
- gvol: the datastore path is a symlink to the root of another volume than the one configured (discovery cannot
  tell on a local lab directory: the check in the snapshot after the backup finds it);
- gnest: the disk is under a nested path of a good datastore where another file system is mounted (as another
  volume mounted at a junction inside the datastore's volume).

One healthy VM (gok) is backed up in the same run and must stay OK, verified in the snapshot.
"""

from __future__ import annotations

import os

import guestlab
import pytest
from guestlab import labd
from helpers.playbook_lab import Lab, run_output

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]

SNAP = "kvmsnap-daily_verify1"
# The run that took SNAP did not protect every VM, so SNAP need not count as a good backup (trust states): the
# restores below name it and allow that, so that what they show is the check of the files in the snapshot.
BY_NAME = {"kvmsnap_restore_snapshot": SNAP, "kvmsnap_restore_allow_crash": True}


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the nested-mount case needs a bind mount (root)")
    base = tmp_path_factory.mktemp("verify")
    lab = Lab(base, libvirt_system)
    lab.prefix = "%svfy-" % guestlab.run_prefix()
    nested = None
    try:
        lab.start_sim("s1", ("vol_ds1", "vol_ds2", "vol_ds3", "vol_other", "vol_nest"), size="1G")
        mnt = base / "mnt"
        mnt.mkdir()
        outside = base / "outside"  # a local directory, on no volume
        outside.mkdir()
        (mnt / "ds2").symlink_to(outside)
        (mnt / "ds3").symlink_to(lab.vol("s1", "vol_other"))  # a volume root, but not vol_ds3's
        nested = lab.vol("s1", "vol_ds1") / "nested"
        nested.mkdir()
        labd.bind_mount(lab.vol("s1", "vol_nest"), nested)  # on the host and where the lab's QEMU sees it
        lab.nested = nested
        lab.mnt = mnt
        for key, workdir in (("gok", lab.vol("s1", "vol_ds1")), ("gsym", mnt / "ds2"), ("gvol", mnt / "ds3"),
                             ("gnest", nested)):
            lab.doms[key] = guestlab.define_minimal_guest(lab.conn, lab.name(key), str(workdir))
        lab.datastores = [
            {"path": str(lab.vol("s1", "vol_ds1")), "controller": "c1", "svm": "svm1", "volume": "vol_ds1"},
            {"path": str(mnt / "ds2"), "controller": "c1", "svm": "svm1", "volume": "vol_ds2"},
            {"path": str(mnt / "ds3"), "controller": "c1", "svm": "svm1", "volume": "vol_ds3"}]
        lab.inv = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name(k) for k in ("gok", "gvol")]}},
                                {"c1": lab.controller("s1")}, kvmsnap_datastores=lab.datastores)
        yield lab
    finally:
        guestlab.cleanup_prefix(libvirt_system, lab.prefix)
        if nested is not None:
            labd.unmount(nested)
        for sim in lab.sims.values():
            sim.stop()


def _running(lab, *keys) -> bool:
    import libvirt
    return all(lab.state(k) == libvirt.VIR_DOMAIN_RUNNING for k in keys)


def test_discovery_refuses_a_symlinked_datastore_and_a_nested_mount(lab):
    # never attributed to vol_ds2 / vol_ds1: the pre-flight names both, and nothing is snapshotted or paused
    inv = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name(k) for k in ("gok", "gsym", "gnest")]}},
                        {"c1": lab.controller("s1")}, kvmsnap_datastores=lab.datastores)
    proc = lab.run("backup", inv, {"kvmsnap_snapshot_name": "kvmsnap-daily_refused"})
    assert proc.returncode != 0, run_output(proc)
    out = proc.stdout
    assert "kvmsnap pre-flight: cannot protect %s, %s" % (lab.name("gnest"), lab.name("gsym")) in out, run_output(proc)
    assert "datastore %s is a symlink to %s, which is not the root of volume svm1:vol_ds2" % (
        lab.mnt / "ds2", lab.base / "outside") in out
    assert "is under datastore %s (volume svm1:vol_ds1) but on another mount, %s" % (
        lab.vol("s1", "vol_ds1"), lab.nested) in out
    assert "Nothing was touched" in out
    assert all(lab.snapshots("s1", v) == [] for v in ("vol_ds1", "vol_ds2", "vol_nest"))
    assert _running(lab, "gok", "gsym", "gnest")


def test_backup_is_ok_only_for_vms_verified_in_the_snapshot(lab):
    proc = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": SNAP})
    rep = proc.report
    assert rep is not None, run_output(proc)
    assert proc.returncode != 0 and rep["status"] == "failed", run_output(proc)
    assert rep["done"] == [lab.name("gok")] and rep["not_done"] == [lab.name("gvol")], rep
    vms = {v["name"]: v for v in rep["vms"]}
    assert vms[lab.name("gok")]["details"]["verified"] is True
    # the symlink to another volume's root: snapshotted as vol_ds3, but the check in the snapshot finds nothing
    err = vms[lab.name("gvol")]["error"]
    missing = str(lab.mnt / "ds3" / ".snapshot" / SNAP / ("%s.img" % lab.name("gvol")))
    assert "not in the snapshot (verified after it)" in err and missing in err, err
    assert vms[lab.name("gvol")]["details"]["verified"] is False
    assert missing in vms[lab.name("gvol")]["details"]["missing"]
    assert "NOT protected %s" % lab.name("gvol") in proc.stdout, run_output(proc)
    assert SNAP in lab.snapshots("s1", "vol_ds1") and SNAP in lab.snapshots("s1", "vol_ds3")
    assert _running(lab, "gok", "gvol")


def test_restore_refuses_the_vm_of_the_symlinked_datastore_before_touching_anything(lab):
    # gvol's disk is under a datastore path that is a symlink (to another volume's root): the manifest check of the
    # restore pre-flight refuses it before the safety snapshot and before gvol is stopped.
    before = {v: lab.snapshots("s1", v) for v in ("vol_ds1", "vol_ds3", "vol_other")}
    proc = lab.run("restore", lab.inv, {"kvmsnap_restore_vms": [lab.name("gvol")], "kvmsnap_restore_force": True,
                                        "kvmsnap_shutdown_timeout": 3, **BY_NAME})
    assert proc.returncode != 0, run_output(proc)
    assert "VM %s: disks[0].source %s is outside its datastore %s" % (
        lab.name("gvol"), lab.mnt / "ds3" / ("%s.img" % lab.name("gvol")), lab.mnt / "ds3") in proc.stdout, run_output(proc)
    assert "Nothing was touched" in proc.stdout
    assert _running(lab, "gvol")
    assert {v: lab.snapshots("s1", v) for v in before} == before  # no kvmsnap-prerestore_ snapshot


def test_restore_refuses_the_vms_the_backup_did_not_protect(lab):
    inv = lab.inventory({"kvm1": {}}, {"c1": lab.controller("s1")}, kvmsnap_datastores=lab.datastores)
    extra = {"kvmsnap_restore_vms": [lab.name("gsym"), lab.name("gnest")], "kvmsnap_restore_force": True,
             "kvmsnap_shutdown_timeout": 3, **BY_NAME}
    proc = lab.run("restore", inv, extra)
    assert proc.returncode != 0, run_output(proc)
    assert "VM %s has no valid manifest in snapshot %s" % (lab.name("gsym"), SNAP) in proc.stdout, run_output(proc)
    assert "Nothing was touched" in proc.stdout
    assert _running(lab, "gsym", "gnest")
    assert not any(s.startswith("kvmsnap-prerestore_") for s in lab.snapshots("s1", "vol_ds1"))


def test_the_healthy_vm_still_restores(lab):
    # the pre-flight check does not get in the way of a good backup
    guestlab.destroy_and_undefine(lab.conn.lookupByName(lab.name("gok")))
    proc = lab.run("restore", lab.inv, {"kvmsnap_restore_vms": [lab.name("gok")], **BY_NAME})
    assert proc.returncode == 0, run_output(proc)
    assert proc.report["status"] == "ok" and _running(lab, "gok")


def test_restore_refuses_a_disk_missing_from_the_snapshot_before_touching_anything(lab):
    # gok's next snapshot leaves its disk out (the simulator's snapshot-omit fault): the backup reports gok not
    # protected, and a restore that names that snapshot is refused by the check of the files in the snapshot,
    # before the safety snapshot and before gok is stopped.
    snap2 = "kvmsnap-daily_verify2"
    disk = "%s.img" % lab.name("gok")
    lab.sims["s1"].admin("POST", "snapshot-omit", {"svm": "svm1", "volume": "vol_ds1", "paths": [disk]})
    inv = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("gok")]}}, {"c1": lab.controller("s1")},
                        kvmsnap_datastores=lab.datastores)
    try:
        backup = lab.run("backup", inv, {"kvmsnap_snapshot_name": snap2})
    finally:
        lab.sims["s1"].admin("POST", "snapshot-omit", {"svm": "svm1", "volume": "vol_ds1", "paths": []})
    assert backup.returncode != 0 and backup.report["not_done"] == [lab.name("gok")], run_output(backup)
    before = lab.snapshots("s1", "vol_ds1")
    proc = lab.run("restore", inv, {"kvmsnap_restore_vms": [lab.name("gok")], "kvmsnap_restore_force": True,
                                    "kvmsnap_shutdown_timeout": 3, "kvmsnap_restore_snapshot": snap2,
                                    "kvmsnap_restore_allow_crash": True})
    assert proc.returncode != 0, run_output(proc)
    missing = str(lab.vol("s1", "vol_ds1") / ".snapshot" / snap2 / disk)
    assert "kvmsnap restore pre-flight: kvm1: VM %s is not in snapshot %s: %s" % (lab.name("gok"), snap2, missing) \
        in proc.stdout, run_output(proc)
    assert "no VM was stopped, no safety snapshot was made" in proc.stdout
    assert _running(lab, "gok")
    assert lab.snapshots("s1", "vol_ds1") == before
