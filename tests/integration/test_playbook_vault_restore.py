"""A VM restored from the vault copy of a backup that was pruned from its volume, through ansible-playbook against
the lab: the backup playbook with kvmsnap_snapvault_update, the backup's snapshot deleted from the volume, then the
restore playbook by the snapshot's name. The lab's libvirtd, two minimal guests whose disks live in the simulator's
volume; the volume has a SnapVault relationship to svm_dr. The second guest is deleted after the backup (undefined,
its disk and its .kvmsnap/ directory gone): the copy's listing names it and it comes back too. The data written
before the backup is back, what was written after it is gone, both VMs run again, the run says where the copy
lives, and entries of the copy's .kvmsnap/ that are not VM directories are left out and named."""

from __future__ import annotations

import os
import shutil

import pytest
from helpers.module_fixtures import run_module
from helpers.playbook_lab import Lab, guestlab, run_output, sha

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]

SNAP = "kvmsnap-daily_vault1"
BEFORE = b"WRITTEN-BEFORE-THE-BACKUP"
AFTER = b"WRITTEN-AFTER-THE-BACKUP"


def _mark(path, text: bytes, offset: int = 8192) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(text)


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("vault"), libvirt_system)
    try:
        lab.start_sim("s1", svms=({"name": "svm_dr", "data_lifs": ["127.0.0.3"]},),
                      relationships=[{"source": "svm1:vol_ds1", "destination": "svm_dr:vol_ds1_vault",
                                      "policy": "XDPDefault"}])
        lab.add_guests(("g1", "s1", "vol_ds1"), ("g2", "s1", "vol_ds1"))
        lab.ds1 = lab.datastore("s1", "vol_ds1")
        lab.inv = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("g1"), lab.name("g2")]}}, {"c1": lab.controller("s1")},
                                kvmsnap_datastores=[lab.ds1])
        yield lab
    finally:
        lab.close()


def test_restore_from_the_vault_after_the_backup_was_pruned(lab):
    import libvirt
    disk, disk2 = lab.disk("g1", "s1", "vol_ds1"), lab.disk("g2", "s1", "vol_ds1")
    _mark(disk, BEFORE)
    _mark(disk2, BEFORE)
    uuid2 = lab.conn.lookupByName(lab.name("g2")).UUIDString()
    proc = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": SNAP, "kvmsnap_snapvault_update": True})
    assert proc.returncode == 0, run_output(proc)
    vault = lab.sims["s1"].data / "volumes" / "svm_dr" / "vol_ds1_vault" / ".snapshot" / SNAP
    assert (vault / disk.name).read_bytes()[8192:8192 + len(BEFORE)] == BEFORE
    backed_up, backed_up2 = sha(vault / disk.name), sha(vault / disk2.name)
    assert (vault / ".kvmsnap" / uuid2 / "manifest.json").is_file()

    # after the backup: new data, g2 deleted (undefined, its disk and its manifests gone from the live volume),
    # and the backup's snapshot pruned from the volume (it stays in the vault)
    _mark(disk, AFTER, 16384)
    guestlab.destroy_and_undefine(lab.conn.lookupByName(lab.name("g2")))
    disk2.unlink()
    shutil.rmtree(lab.vol("s1", "vol_ds1") / ".kvmsnap" / uuid2)
    # entries of the copy's .kvmsnap/ that are no VM directories: a symlink named like one, a hostile name
    hostile = vault / ".kvmsnap"
    mode = hostile.stat().st_mode
    hostile.chmod(0o755)
    os.symlink("/etc", hostile / "0f8fad5b-d9cb-469f-a165-70867728950e")
    (hostile / "..evil").write_text("x")
    hostile.chmod(mode)
    sim = lab.sims["s1"]
    gone = run_module("ontap_snapshot", {**sim.conn("rest"), "volumes": ["svm1:vol_ds1"], "name": SNAP,
                                         "state": "absent"})
    assert not gone.failed, gone
    assert SNAP not in lab.snapshots("s1", "vol_ds1")

    proc = lab.run("restore", lab.inv, {"kvmsnap_restore_vms": [lab.name("g1"), lab.name("g2")],
                                        "kvmsnap_restore_snapshot": SNAP, "kvmsnap_restore_force": True})
    assert proc.returncode == 0, run_output(proc)
    # the catalogue said where the copy lives, and the files came from it
    assert "restored from c1:svm1:vol_ds1 <- svm_dr:vol_ds1_vault (vault)" in proc.stdout, run_output(proc)
    assert "not VM directories, left out" in proc.stdout and "..evil" in proc.stdout, run_output(proc)
    assert "0f8fad5b-d9cb-469f-a165-70867728950e: a symlink, not a directory" in proc.stdout, run_output(proc)
    data = disk.read_bytes()
    assert data[8192:8192 + len(BEFORE)] == BEFORE and AFTER not in data
    assert sha(disk) == backed_up
    assert lab.state("g1") == libvirt.VIR_DOMAIN_RUNNING
    # the deleted VM is back: its disk as backed up, defined from its manifest (same UUID) and running
    assert sha(disk2) == backed_up2
    assert lab.conn.lookupByName(lab.name("g2")).UUIDString() == uuid2
    assert lab.state("g2") == libvirt.VIR_DOMAIN_RUNNING
    rep = proc.report
    assert sorted(rep["done"]) == sorted([lab.name("g1"), lab.name("g2")]), rep
    assert {v["name"]: v["state_before"] for v in rep["vms"]}[lab.name("g2")] == "absent", rep["vms"]
    calls = [f"{c['method']} {c['path']}" for c in sim.admin("GET", "calls")["calls"]]
    assert "POST /api/snapmirror/relationships" in calls
    assert any(c.startswith("GET /api/storage/volumes/") and c.endswith("/files/.snapshot/%s/.kvmsnap" % SNAP)
               for c in calls), calls
    rels = sim.admin("GET", "state")["relationships"].values()
    assert not [r for r in rels if r.get("restore")]  # restore relationships deleted
    # the safety snapshot of the volume was taken before the overwrite; the staging directory is gone
    assert [s for s in lab.snapshots("s1", "vol_ds1") if "prerestore" in s]
    assert not (lab.vol("s1", "vol_ds1") / ".kvmsnap-staging").exists() or \
        not any((lab.vol("s1", "vol_ds1") / ".kvmsnap-staging").iterdir())
