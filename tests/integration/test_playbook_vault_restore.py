"""A VM restored from the vault copy of a backup that was pruned from its volume, through ansible-playbook against
the lab: the backup playbook with kvmsnap_snapvault_update, the backup's snapshot deleted from the volume, then the
restore playbook by the snapshot's name. The lab's libvirtd, a minimal guest whose disk lives in the simulator's
volume; the volume has a SnapVault relationship to svm_dr. The data written before the backup is back, what was
written after it is gone, the VM runs again, and the run says where the copy lives."""

from __future__ import annotations

import pytest
from helpers.module_fixtures import run_module
from helpers.playbook_lab import Lab, run_output, sha

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
        lab.add_guests(("g1", "s1", "vol_ds1"))
        lab.ds1 = lab.datastore("s1", "vol_ds1")
        lab.inv = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("g1")]}}, {"c1": lab.controller("s1")},
                                kvmsnap_datastores=[lab.ds1])
        yield lab
    finally:
        lab.close()


def test_restore_from_the_vault_after_the_backup_was_pruned(lab):
    import libvirt
    disk = lab.disk("g1", "s1", "vol_ds1")
    _mark(disk, BEFORE)
    proc = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": SNAP, "kvmsnap_snapvault_update": True})
    assert proc.returncode == 0, run_output(proc)
    vault = lab.sims["s1"].data / "volumes" / "svm_dr" / "vol_ds1_vault" / ".snapshot" / SNAP
    assert (vault / disk.name).read_bytes()[8192:8192 + len(BEFORE)] == BEFORE
    backed_up = sha(vault / disk.name)

    # after the backup: new data, and the backup's snapshot pruned from the volume (it stays in the vault)
    _mark(disk, AFTER, 16384)
    sim = lab.sims["s1"]
    gone = run_module("ontap_snapshot", {**sim.conn("rest"), "volumes": ["svm1:vol_ds1"], "name": SNAP,
                                         "state": "absent"})
    assert not gone.failed, gone
    assert SNAP not in lab.snapshots("s1", "vol_ds1")

    proc = lab.run("restore", lab.inv, {"kvmsnap_restore_vms": [lab.name("g1")], "kvmsnap_restore_snapshot": SNAP,
                                        "kvmsnap_restore_force": True})
    assert proc.returncode == 0, run_output(proc)
    # the catalogue said where the copy lives, and the files came from it
    assert "restored from c1:svm1:vol_ds1 <- svm_dr:vol_ds1_vault (vault)" in proc.stdout, run_output(proc)
    data = disk.read_bytes()
    assert data[8192:8192 + len(BEFORE)] == BEFORE and AFTER not in data
    assert sha(disk) == backed_up
    assert lab.state("g1") == libvirt.VIR_DOMAIN_RUNNING
    calls = [f"{c['method']} {c['path']}" for c in sim.admin("GET", "calls")["calls"]]
    assert "POST /api/snapmirror/relationships" in calls
    rels = sim.admin("GET", "state")["relationships"].values()
    assert not [r for r in rels if r.get("restore")]  # restore relationships deleted
    # the safety snapshot of the volume was taken before the overwrite; the staging directory is gone
    assert [s for s in lab.snapshots("s1", "vol_ds1") if "prerestore" in s]
    assert not (lab.vol("s1", "vol_ds1") / ".kvmsnap-staging").exists() or \
        not any((lab.vol("s1", "vol_ds1") / ".kvmsnap-staging").iterdir())
