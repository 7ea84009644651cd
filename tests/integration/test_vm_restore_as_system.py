"""vm_restore as_new on the lab libvirtd: the real module, run where the lab's libvirtd runs (its mount namespace,
so /var/lib/libvirt/qemu/nvram is the lab's), against defined, shut-off QEMU domains.

- The NVRAM copy: a saved VM with ``<os><loader/><nvram>`` (the lab has no UEFI firmware to boot, so the domains
  are only defined) gets the snapshot's NVRAM file copied to the new path; the copy's XML names the new file, the
  original's NVRAM file and definition stay as they were.
- Each host-side refusal (a domain of the new name or UUID, a new path another VM uses, a file at the new NVRAM
  path, the new disk files present or missing against ``disks``) fails before anything is written: no domain
  defined, no NVRAM file written, no disk file changed.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers.guest_fixtures import SYSTEM_URI
from helpers.module_fixtures import run_module

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
import guestlab
from guestlab import labd

pytestmark = [pytest.mark.needs_libvirtd]

NVRAM_DIR = "/var/lib/libvirt/qemu/nvram"  # as libvirtd and the module (in the lab's namespace) see it
LOADER = "/usr/share/qemu/bios.bin"  # a firmware file the lab has; the domains are never started
SNAPSHOT_NVRAM = b"NVRAM-IN-THE-SNAPSHOT".ljust(4096, b"\0")
LIVE_NVRAM = b"NVRAM-OF-THE-RUNNING-ORIGINAL".ljust(4096, b"\0")


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


@pytest.fixture(scope="module")
def host(libvirt_system, tmp_path_factory):
    """src: a shut-off VM with a disk in the datastore and an NVRAM file; other: a shut-off VM on another disk."""
    conn = libvirt_system
    base = tmp_path_factory.mktemp("restore-as")
    ns = type("Host", (), {})()
    ns.conn, ns.base = conn, base
    ns.ds = base / "ds"
    ns.ds.mkdir()
    ns.prefix = "%sras-" % guestlab.run_prefix()
    ns.src, ns.other = ns.prefix + "src", ns.prefix + "other"
    ns.src_disk = Path(guestlab.domain.make_boot_sector(str(ns.ds / ("%s.img" % ns.src))))
    ns.other_disk = Path(guestlab.domain.make_boot_sector(str(ns.ds / ("%s.img" % ns.other))))
    ns.src_nvram_daemon = "%s/%s_VARS.fd" % (NVRAM_DIR, ns.src)
    ns.src_nvram = labd.host_path(ns.src_nvram_daemon)
    ns.src_nvram.parent.mkdir(parents=True, exist_ok=True)
    ns.src_nvram.write_bytes(LIVE_NVRAM)
    ns.snap_nvram = base / "snapshot-nvram"  # the NVRAM the backup saved (in the snapshot's .kvmsnap/<uuid>/)
    ns.snap_nvram.write_bytes(SNAPSHOT_NVRAM)
    xml = guestlab.domain.minimal_guest_xml(ns.src, str(ns.src_disk)).replace(
        "<boot dev='hd'/>", "<loader readonly='yes' type='pflash'>%s</loader><nvram>%s</nvram><boot dev='hd'/>"
        % (LOADER, ns.src_nvram_daemon))
    doms = []
    try:
        doms.append(conn.defineXML(xml))
        doms.append(conn.defineXML(guestlab.domain.minimal_guest_xml(ns.other, str(ns.other_disk))))
        ns.saved_xml = doms[0].XMLDesc(0)  # what the backup saved as domain.xml
        ns.src_uuid = doms[0].UUIDString()
        yield ns
    finally:
        for name in [d.name() for d in doms] + [n for n in conn.listDefinedDomains() if n.startswith(ns.prefix)]:
            try:
                guestlab.destroy_and_undefine(conn.lookupByName(name))
            except Exception:
                pass
        for f in ns.src_nvram.parent.glob("%s*" % ns.prefix):
            f.unlink()


def restore_as(h, as_new: dict, **kw):
    args = {"uri": SYSTEM_URI, "domain_xml": h.saved_xml, "allowed_paths": [str(h.ds)], "nvram": str(h.snap_nvram),
            "start": "never", "state_dir": str(h.base / "state"), "as_new": as_new, **kw}
    return run_module("vm_restore", args, wrap=labd.as_on_the_kvm_host)


def host_state(h) -> dict:
    """Every lab domain of this test (name -> XML) and every file it may touch (path -> sha256)."""
    doms = {n: h.conn.lookupByName(n).XMLDesc(0)
            for n in h.conn.listDefinedDomains() + [h.conn.lookupByID(i).name() for i in h.conn.listDomainsID()]
            if n.startswith(h.prefix)}
    files = {str(p): _digest(p) for p in sorted(h.ds.iterdir())}
    files.update({str(p): _digest(p) for p in sorted(h.src_nvram.parent.glob("%s*" % h.prefix))})
    return {"domains": doms, "files": files}


def test_nvram_is_copied_to_the_new_path_and_the_original_is_untouched(host):
    h = host
    new = h.prefix + "copy"
    new_disk = h.ds / ("%s.img" % new)
    shutil.copyfile(h.src_disk, new_disk)  # as ontap_restore restore_paths puts it there
    new_nvram_daemon = "%s/%s_VARS.fd" % (NVRAM_DIR, new)
    new_nvram = labd.host_path(new_nvram_daemon)
    src_xml, src_nvram_stat = h.conn.lookupByName(h.src).XMLDesc(0), h.src_nvram.stat()
    try:
        res = restore_as(h, {"name": new, "disk_paths": {str(h.src_disk): str(new_disk)},
                             "nvram_path": new_nvram_daemon})
        assert not res.failed, res
        assert res["actions"] == ["define", "nvram"] and res["state"] == "shutoff", res
        assert res["new"]["nvram"] == {"source": h.src_nvram_daemon, "path": new_nvram_daemon}, res["new"]
        # the copy: its own NVRAM file with the snapshot's content, its XML pointing there
        assert new_nvram.read_bytes() == SNAPSHOT_NVRAM
        assert new_nvram.stat().st_mode & 0o777 == 0o600
        copy = ET.fromstring(h.conn.lookupByName(new).XMLDesc(0))
        assert copy.findtext("os/nvram") == new_nvram_daemon
        assert copy.findtext("os/loader") == LOADER
        assert copy.find("devices/disk/source").get("file") == str(new_disk)
        assert copy.findtext("uuid") == res["new"]["uuid"] != h.src_uuid
        # the original: same definition, its NVRAM file neither read into nor written
        assert h.conn.lookupByName(h.src).XMLDesc(0) == src_xml
        assert h.src_nvram.read_bytes() == LIVE_NVRAM and h.src_nvram.stat().st_mtime_ns == src_nvram_stat.st_mtime_ns
    finally:
        try:
            guestlab.destroy_and_undefine(h.conn.lookupByName(new))
        except Exception:
            pass
        new_nvram.unlink(missing_ok=True)
        new_disk.unlink(missing_ok=True)


CASES = {
    "name of a defined VM": ("other-name", "a VM with the name {other} exists"),
    "UUID of a defined VM": ("src-uuid", "a VM with the uuid {src_uuid} exists"),
    "disk path another VM uses": ("other-disk", "{other_disk} is used by VM {other}"),
    "NVRAM path another VM uses": ("src-nvram", "{src_nvram} is used by VM {src}"),
    "a file at the new NVRAM path": ("nvram-file", "{new_nvram} already exists; a restore as a new VM never "
                                                   "replaces a file"),
    "disks absent, a file is there": ("disk-file-absent", "{new_disk} already exists"),
    "disks present, the file is missing": ("disk-missing-present", "{new_disk} does not exist (restore it with "
                                                                   "ontap_restore restore_paths first)"),
    "disks present, a directory": ("disk-dir-present", "{new_disk} is not a regular file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_host_side_refusals_change_nothing(host, case):
    h = host
    how, expect = CASES[case]
    new = h.prefix + "new"
    new_disk = h.ds / ("%s.img" % new)
    new_nvram_daemon = "%s/%s_VARS.fd" % (NVRAM_DIR, new)
    new_nvram = labd.host_path(new_nvram_daemon)
    as_new = {"name": new, "disk_paths": {str(h.src_disk): str(new_disk)}, "nvram_path": new_nvram_daemon}
    made = []
    if how != "disk-missing-present":
        if how == "disk-dir-present":
            new_disk.mkdir()
        else:
            shutil.copyfile(h.src_disk, new_disk)
        made.append(new_disk)
    if how == "other-name":
        as_new["name"] = h.other
    elif how == "src-uuid":
        as_new["uuid"] = h.src_uuid
    elif how == "other-disk":
        as_new["disk_paths"] = {str(h.src_disk): str(h.other_disk)}
    elif how == "src-nvram":
        as_new["nvram_path"] = h.src_nvram_daemon
    elif how == "nvram-file":
        new_nvram.write_bytes(b"SOMEONE-ELSE'S-NVRAM")
        made.append(new_nvram)
    elif how == "disk-file-absent":
        as_new["disks"] = "absent"
    try:
        before = host_state(h)
        res = restore_as(h, as_new)
        assert res.failed, res
        want = expect.format(other=h.other, src=h.src, src_uuid=h.src_uuid, other_disk=h.other_disk,
                             src_nvram=h.src_nvram_daemon, new_nvram=new_nvram_daemon, new_disk=new_disk)
        msg = res["msg"]
        assert msg.startswith("refusing to restore VM %s as %s on %s: " % (h.src, as_new["name"], SYSTEM_URI)), msg
        assert want in msg and "Nothing was changed" in msg, msg
        assert res["actions"] == [] and not res["changed"], res
        assert host_state(h) == before  # no domain defined or changed, no file written
        assert h.src_nvram.read_bytes() == LIVE_NVRAM
        if how != "nvram-file":
            assert not new_nvram.exists()
    finally:
        for p in made:
            p.rmdir() if p.is_dir() else p.unlink(missing_ok=True)
