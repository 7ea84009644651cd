"""Restore as a new VM (kvmsnap_restore_as) through ansible-playbook, on a real lab guest (kernel, guest agent, a
writer on its ext4 data disk) whose disk lives in the ONTAP simulator's volume.

One backup, then two restore runs:
- a file in the way at the copy's disk path: refused in the pre-flight, nothing written (the file, the volume, the
  original VM, no copy defined);
- the restore as <name>-copy with kvmsnap_restore_start: the copy boots from its own restored disk and its agent
  answers, while the original keeps running untouched (same UUID, same definition, same disk file, its writer
  never rolled back).
"""

from __future__ import annotations

import os

import pytest
from helpers.playbook_lab import Lab, guestlab, run_output

pytestmark = [pytest.mark.needs_libvirtd, pytest.mark.needs_kvm_guests, pytest.mark.slow]

SNAP = "kvmsnap-daily_restoreas1"
INACTIVE = 2  # VIR_DOMAIN_XML_INACTIVE


@pytest.fixture
def lab(libvirt_system, real_guest, guest_assets, tmp_path):
    lab = Lab(tmp_path / "lab", libvirt_system)
    lab.base.mkdir()
    try:
        lab.start_sim("s1", size="1G")
        lab.guest = real_guest(disk_dir=lab.vol("s1", "vol_ds1"))
        lab.inv = lab.inventory({"kvm1": {"kvmsnap_vms": [lab.guest.name]}}, {"c1": lab.controller("s1")},
                                kvmsnap_datastores=[lab.datastore("s1", "vol_ds1")],
                                kvmsnap_restore_boot_dirs=sorted({os.path.dirname(guest_assets.kernel),
                                                                  os.path.dirname(guest_assets.initrd)}))
        yield lab
    finally:
        for name in lab.conn.listDefinedDomains() + [d.name() for d in lab.conn.listAllDomains()]:
            if name.startswith(lab.guest.name + "-"):
                guestlab.destroy_and_undefine(lab.conn.lookupByName(name))
        for sim in lab.sims.values():
            sim.stop()


def test_restore_as_a_new_vm_leaves_the_original_untouched(lab):
    import libvirt
    g = lab.guest
    copy_name = g.name + "-copy"
    vol = lab.vol("s1", "vol_ds1")
    copy_disk = vol / ("%s-copy-data.img" % g.name)
    backup = lab.run("backup", lab.inv, {"kvmsnap_snapshot_name": SNAP})
    assert backup.returncode == 0, run_output(backup)
    at_backup = max(g.writer_numbers())
    orig_uuid = g.dom.UUIDString()
    orig_xml = g.dom.XMLDesc(INACTIVE)
    orig_ino = os.stat(g.disk_path).st_ino
    extra = {"kvmsnap_restore_vms": [g.name], "kvmsnap_restore_snapshot": SNAP, "kvmsnap_restore_as": "-copy",
             "kvmsnap_restore_start": True}

    # 1. a file at the copy's disk path: refused before anything is written
    copy_disk.write_bytes(b"not yours")
    refused = lab.run("restore", lab.inv, extra)
    assert refused.returncode != 0, run_output(refused)
    assert "pre-flight" in refused.stdout and "%s already exists" % copy_disk in refused.stdout, run_output(refused)
    assert copy_disk.read_bytes() == b"not yours"
    assert copy_name not in lab.conn.listDefinedDomains() + [d.name() for d in lab.conn.listAllDomains()]
    assert lab.snapshots("s1", "vol_ds1") == [SNAP]  # no safety snapshot, ever
    assert g.dom.isActive() and g.dom.XMLDesc(INACTIVE) == orig_xml
    copy_disk.unlink()

    # 2. the copy, started: its agent answers; the original runs on, untouched
    proc = lab.run("restore", lab.inv, extra)
    assert proc.returncode == 0, run_output(proc)
    rep = proc.report
    assert rep["status"] == "ok" and rep["done"] == [copy_name], rep
    vm = rep["vms"][0]
    assert vm["name"] == copy_name and vm["uuid"] != orig_uuid and vm["state_after"] == "running"
    assert vm["details"]["source"] == {"name": g.name, "uuid": orig_uuid}
    assert vm["details"]["started"] is True and vm["details"]["agent"] == "ok"
    assert vm["details"]["disks"] == [str(copy_disk)]
    assert rep["safety_snapshot"] is None and lab.snapshots("s1", "vol_ds1") == [SNAP]
    files = rep["volumes"][0]["files"]
    assert [(f["path"], f["restore_path"], f["result"]) for f in files] == [
        ("/%s" % os.path.basename(g.disk_path), "/%s" % copy_disk.name, "restored")]

    copy = lab.conn.lookupByName(copy_name)
    assert copy.isActive() and copy.UUIDString() == vm["uuid"]
    cxml = copy.XMLDesc(INACTIVE)
    assert str(copy_disk) in cxml and g.disk_path not in cxml
    assert guestlab.agent_command(copy, "guest-ping") == {}
    # the copy's disk is its own file with the backup's data: the writer's history up to the backup
    assert os.stat(copy_disk).st_ino != orig_ino
    copy_numbers = guestlab.parse_writer_log(guestlab.read_guest_file(copy, "/data/log.txt"))

    # the original: running, same UUID, same definition, same disk file, and its data never rolled back
    assert g.dom.isActive() and g.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert g.dom.UUIDString() == orig_uuid and g.dom.XMLDesc(INACTIVE) == orig_xml
    assert os.stat(g.disk_path).st_ino == orig_ino
    numbers = g.writer_numbers()
    assert max(numbers) > at_backup
    assert len(copy_numbers) >= 20 and copy_numbers[:20] == numbers[:20]  # the same history: the backup's data
