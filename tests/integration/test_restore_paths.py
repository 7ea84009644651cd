"""Datastores inside a volume, and stale manifests, through ansible-playbook against the lab
(docs/dev/faults.md#datastore-offset, docs/dev/faults.md#stale-manifest).

The lab's libvirtd (tests/lab/labd) with minimal boot-sector guests whose disks live in ``<volume>/images``, a datastore
that is a subdirectory of the simulator's volume directory (kvmsnap_datastores with ``path_in_volume: /images``),
and a file of the same name as a guest's disk at the volume root.

- docs/dev/faults.md#datastore-offset: the restore used the datastore-relative path as the path in the volume: it
  overwrote the unrelated file at the volume root, left the VM's disk unrestored and said OK. Now backup,
  verification and restore map every path through one junction offset (_ds_paths).
- docs/dev/faults.md#stale-manifest: a later run that did not protect VM X still carries X's older manifest in its
  snapshot. `latest` now picks, per VM, the newest good snapshot whose manifest names that snapshot and its run;
  naming the later snapshot is refused, saying why.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers.playbook_lab import Lab, run_output, sha

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
import guestlab

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.slow]

SNAP1 = "kvmsnap-daily_paths1"
SNAP2 = "kvmsnap-daily_paths2"


@pytest.fixture(scope="module")
def lab(libvirt_system, tmp_path_factory):
    base = tmp_path_factory.mktemp("paths")
    lab = Lab(base, libvirt_system)
    lab.prefix = "%spaths-" % guestlab.run_prefix()
    try:
        lab.start_sim("s1")
        images = lab.vol("s1", "vol_ds1") / "images"
        for key in ("x", "y"):
            lab.doms[key] = guestlab.define_minimal_guest(lab.conn, lab.name(key), str(images))
        lab.images = images
        # an unrelated file at the volume root with the name of x's disk: no restore may touch it
        lab.decoy = lab.vol("s1", "vol_ds1") / ("%s.img" % lab.name("x"))
        lab.decoy.write_bytes(b"not a disk of x\n" * 64)
        lab.ds = {"path": str(images), "controller": "c1", "svm": "svm1", "volume": "vol_ds1",
                  "path_in_volume": "/images"}
        lab.inv_xy = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("x"), lab.name("y")]}},
                                   {"c1": lab.controller("s1")}, kvmsnap_datastores=[lab.ds])
        lab.inv_y = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.name("y")]}},
                                  {"c1": lab.controller("s1")}, kvmsnap_datastores=[lab.ds])
        yield lab
    finally:
        lab.close()


def xdisk(lab) -> Path:
    return lab.images / ("%s.img" % lab.name("x"))


def in_snap(lab, snap: str, rel: str) -> Path:
    return lab.vol("s1", "vol_ds1") / ".snapshot" / snap / rel


def restore_x(lab, snapshot: str):
    return lab.run("restore", lab.inv_xy, {"kvmsnap_restore_vms": [lab.name("x")], "kvmsnap_restore_snapshot": snapshot,
                                           "kvmsnap_restore_force": True, "kvmsnap_shutdown_timeout": 2})


def test_backup_of_a_datastore_in_a_subdirectory(lab):
    proc = lab.run("backup", lab.inv_xy, {"kvmsnap_snapshot_name": SNAP1})
    assert proc.returncode == 0, run_output(proc)
    assert proc.report["status"] == "ok" and sorted(proc.report["done"]) == sorted([lab.name("x"), lab.name("y")])
    uuid = lab.conn.lookupByName(lab.name("x")).UUIDString()
    # the manifest lies in the datastore (so inside the volume under images/), the disk at its path in the volume
    assert in_snap(lab, SNAP1, "images/.kvmsnap/%s/manifest.json" % uuid).is_file()
    assert sha(in_snap(lab, SNAP1, "images/" + xdisk(lab).name)) == sha(xdisk(lab))


def test_restore_writes_the_disk_inside_the_datastore_not_at_the_volume_root(lab):
    decoy = sha(lab.decoy)
    good = sha(in_snap(lab, SNAP1, "images/" + xdisk(lab).name))
    # the VM's disk changes after the backup (as a running guest's would)
    with open(xdisk(lab), "r+b") as fh:
        fh.seek(4096)
        fh.write(b"changed after the backup" * 16)
    assert sha(xdisk(lab)) != good
    proc = restore_x(lab, SNAP1)
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert rep["status"] == "ok" and rep["done"] == [lab.name("x")], run_output(proc)
    assert sha(xdisk(lab)) == good, "the VM's disk was not restored"
    assert sha(lab.decoy) == decoy, "the file at the volume root was overwritten"


def test_later_run_without_x_is_not_a_backup_of_x(lab):
    proc = lab.run("backup", lab.inv_y, {"kvmsnap_snapshot_name": SNAP2})
    assert proc.returncode == 0, run_output(proc)
    assert proc.report["done"] == [lab.name("y")]
    uuid = lab.conn.lookupByName(lab.name("x")).UUIDString()
    # x's manifest of the first run is still in the datastore, so the second snapshot carries it
    assert in_snap(lab, SNAP2, "images/.kvmsnap/%s/manifest.json" % uuid).is_file()
    before = sha(xdisk(lab))
    refused = restore_x(lab, SNAP2)
    assert refused.returncode != 0
    assert "VM %s was not protected by snapshot %s" % (lab.name("x"), SNAP2) in refused.stdout, run_output(refused)
    assert "its manifest there is from snapshot %s" % SNAP1 in refused.stdout, run_output(refused)
    assert sha(xdisk(lab)) == before
    assert len(lab.snapshots("s1", "vol_ds1")) == 3  # SNAP1, SNAP2 and the first restore's safety snapshot only


def test_latest_picks_per_vm_the_newest_snapshot_that_protected_it(lab):
    good = sha(in_snap(lab, SNAP1, "images/" + xdisk(lab).name))
    with open(xdisk(lab), "r+b") as fh:
        fh.seek(4096)
        fh.write(b"changed again" * 16)
    proc = restore_x(lab, "latest")
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert rep["status"] == "ok" and rep["snapshot"] == SNAP1, run_output(proc)
    assert sha(xdisk(lab)) == good


def test_restore_all_from_a_later_snapshot_leaves_out_the_vm_it_did_not_protect(lab):
    before = sha(xdisk(lab))
    proc = lab.run("restore", lab.inv_xy, {"kvmsnap_restore_vms": "all", "kvmsnap_restore_snapshot": SNAP2,
                                           "kvmsnap_restore_force": True, "kvmsnap_shutdown_timeout": 2})
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert rep["status"] == "ok" and rep["done"] == [lab.name("y")], run_output(proc)
    assert any("VM %s was not protected by snapshot %s" % (lab.name("x"), SNAP2) in n for n in rep["notes"]), rep
    assert sha(xdisk(lab)) == before  # x was neither stopped nor rolled back to an image it was not quiesced for
