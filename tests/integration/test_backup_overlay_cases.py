"""vm_backup's overlay fence on the cases a user meets, on the lab libvirtd and the ONTAP simulator.

Disk kinds (minimal guests, ``fence: auto``, then ``fence: overlay``): a shareable writable disk and a block disk
(a loop device) send the VM to the direct fence, with the disk named in ``fence_reason`` and in the pre-flight
refusal of ``fence: overlay``; a read-only disk beside a writable one is skipped and the VM overlaid.

A real guest writing an fsync'ed numbered line every 50 ms, its data disk a qcow2 image over a raw backing image
(a backing chain), on the datastore: ``fence: overlay`` in freeze mode gives a snapshot whose copy of the disk (read
from the array snapshot, not the live image) passes ``e2fsck -fn`` and holds every line written before the freeze
and none written after the thaw; ``fence: auto`` overlays it on top of its chain, commits the guest's writes of the
run into the top image and leaves the chain as it was. After every run the VM is not left in a state that blocks its
migration or shutdown: its definitions name no overlay, no block job runs; the real guest is shut down and started
again from its committed image.

The disk kinds that already have a test elsewhere: a running block job (test_backup_overlay_system).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from guestlab import disks, domain
from helpers.guest_fixtures import SYSTEM_URI
from helpers.vm_utils import wait_for
from test_backup_overlay_system import datastore, overlay_files
from test_vm_backup_system import backup_args

from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import parse_domain_xml
from ansible_collections.kvmsnap.core.plugins.module_utils._overlay_rules import is_overlay_path

pytestmark = [pytest.mark.needs_libvirtd]
RUNNING = 1
XML_INACTIVE = 2  # VIR_DOMAIN_XML_INACTIVE


def chains(dom, flags=0):
    """{target: [source, backing, ...]} of every disk of DOM (live XML, or the persistent one)."""
    return {d["target"]: [d["path"]] + [b["path"] for b in d["backing_chain"]]
            for d in parse_domain_xml(dom.XMLDesc(flags))["disks"]}


def assert_left_clean(dom):
    """The VM runs, names no overlay (live or persistent definition) and has no block job: nothing blocks its
    migration or shutdown."""
    assert dom.state()[0] == RUNNING
    for flags in (0, XML_INACTIVE):
        named = [p for chain in chains(dom, flags).values() for p in chain if p]
        assert not any(is_overlay_path(p) for p in named), (flags, named)
    for target in chains(dom):
        assert not dom.blockJobInfo(target, 0), target


def vm_entry(res, dom):
    return next(v for v in res["vms"] if v["uuid"] == dom.UUIDString())


# ---------------------------------------------------------------------------------------------
# disk kinds, minimal guests


@pytest.fixture
def loop_device(ontap_sim):
    """A loop device over an 8 MiB file in the datastore's volume: a block disk (what a LUN is to the host).
    Yields (device, the file's path inside the volume, for vm_mapping)."""
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup for a loop device")
    vol, _ds = datastore(ontap_sim)
    lun = "kind-lun-%s.img" % uuid.uuid4().hex[:6]
    backing = vol / lun
    with open(backing, "wb") as fh:
        fh.truncate(8 << 20)
    dev = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        yield dev, "/vol/vol_ds1/" + lun
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
        backing.unlink()


def second_disk_xml(kind, wdir, loop_device=None):
    """The XML of disk vdb of KIND (shareable, readonly, block), its image made in WDIR."""
    if kind == "block":
        return ("<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='%s'/>"
                "<target dev='vdb' bus='virtio'/></disk>" % loop_device)
    os.makedirs(wdir, exist_ok=True)
    image = os.path.join(wdir, "vdb-%s-%s.img" % (kind, uuid.uuid4().hex[:6]))
    with open(image, "wb") as fh:
        fh.truncate(4 << 20)
    extra = {"shareable": "<shareable/>", "readonly": "<readonly/>"}[kind]
    cache = " cache='none'" if kind == "shareable" else ""
    return ("<disk type='file' device='disk'><driver name='qemu' type='raw'%s/><source file='%s'/>"
            "<target dev='vdb' bus='virtio'/>%s</disk>" % (cache, image, extra))


def two_disk_minimal_guest(conn, wdir, disk_xml):
    """A minimal guest (boot sector on hda, file) with DISK_XML as its second disk; defined and started."""
    name = "%sovk%s" % (domain.run_prefix(), uuid.uuid4().hex[:6])
    os.makedirs(wdir, exist_ok=True)
    boot = domain.make_boot_sector(os.path.join(wdir, name + ".img"))
    xml = domain.minimal_guest_xml(name, boot).replace("<controller type='usb'", disk_xml + "<controller type='usb'")
    dom = conn.defineXML(xml)
    try:
        dom.create()
    except Exception:
        dom.undefine()
        raise
    return dom


# kind: (fence under auto, what fence_reason says, fence=overlay refuses it)
KINDS = {
    "shareable": ("direct", "shareable", True),
    "block": ("direct", "block device", True),
    "readonly": ("overlay", None, False),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_disk_kind_through_vm_backup(kind, ontap_sim, libvirt_system, tmp_path, module_runner, request):
    fence, reason, refused = KINDS[kind]
    vol, ds = datastore(ontap_sim)
    wdir = vol / ("kind-" + kind)
    dev, lun = request.getfixturevalue("loop_device") if kind == "block" else (None, None)
    dom = two_disk_minimal_guest(libvirt_system, str(wdir), second_disk_xml(kind, str(wdir), dev))
    try:
        before = chains(dom)
        args = backup_args(ontap_sim, str(tmp_path / "state"), [dom.name()], fence="auto", volumes=None,
                           datastores=ds)
        if lun:  # a block disk is on no datastore: the VM is mapped to its LUN's volume, as a SAN user does
            args["vm_mapping"] = "%s:%s:%s;" % (dom.name(), ontap_sim.host, lun)
        res = module_runner("vm_backup", args, timeout=120)
        assert not res.failed, res
        assert res["trust"] == "good", res
        vm = vm_entry(res, dom)
        assert vm["fence"] == fence, vm
        if reason is None:
            assert vm["fence_reason"] is None, vm
        else:  # the reason names the disk and why
            assert "disk vdb (%s)" % before["vdb"][0] in vm["fence_reason"] and reason in vm["fence_reason"], vm
        if fence == "overlay":
            # the read-only disk is skipped: only hda got (and lost again) an overlay
            assert [(o["target"], o["result"], o["removed"]) for o in vm["overlays"]] == [("hda", "committed", True)]
            assert vm["action"] == "suspended" and vm["pause_ms"] > 0, vm
        else:
            assert "overlays" not in vm and vm["action"] == "suspended", vm
        assert chains(dom) == before
        assert_left_clean(dom)
        assert overlay_files(wdir) == []
        sys.stderr.write("\n%s: fence=auto gave %s (%s), pause %.1f ms\n"
                         % (kind, vm["fence"], vm["fence_reason"], vm["pause_ms"]))

        args = dict(args, fence="overlay", name=args["name"] + "o")
        res = module_runner("vm_backup", args, timeout=120)
        if refused:
            assert res.failed, res
            assert "cannot take the overlay fence" in res["msg"] and "nothing was quiesced" in res["msg"], res
            assert "disk vdb (%s)" % before["vdb"][0] in res["msg"] and reason in res["msg"], res
            assert not (vol / ".snapshot" / args["name"]).exists()  # refused before the snapshot
        else:
            assert not res.failed and res["trust"] == "good", res
            vm = vm_entry(res, dom)
            assert vm["fence"] == "overlay" and [o["target"] for o in vm["overlays"]] == ["hda"], vm
        assert chains(dom) == before
        assert_left_clean(dom)
        if kind == "readonly":  # shut off and started again: boots from its own images
            dom.destroy()
            assert all(not is_overlay_path(c[0]) for c in chains(dom, XML_INACTIVE).values())
            dom.create()
            assert chains(dom) == before and dom.state()[0] == RUNNING
    finally:
        domain.destroy_and_undefine(dom)
