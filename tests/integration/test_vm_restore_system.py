"""vm_restore on the lab libvirtd: the real module in a subprocess against real QEMU domains."""

from __future__ import annotations

import os
import re
import time
import uuid

import pytest
from helpers.guest_fixtures import SYSTEM_URI

pytestmark = [pytest.mark.needs_libvirtd]
URI = SYSTEM_URI
RUNNING, SHUTOFF = 1, 5


def lookup(conn, name):
    import libvirt
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError:
        return None


def test_define_deleted_vm_from_saved_xml(module_runner, minimal_guests, libvirt_system, tmp_path):
    dom = minimal_guests(1)[0]
    name, vm_uuid = dom.name(), dom.UUIDString()
    saved = tmp_path / "domain.xml"
    saved.write_text(dom.XMLDesc(0))
    dom.destroy()
    dom.undefine()  # the VM is deleted
    assert lookup(libvirt_system, name) is None
    args = {"uri": URI, "domain_xml_path": str(saved), "allowed_paths": [str(tmp_path / "minimal")],
            "start": "always", "verify_timeout": 30, "state_dir": str(tmp_path / "state")}
    check = module_runner("vm_restore", args, check_mode=True)
    assert not check.failed and check["actions"] == ["define", "start"] and not check["existed"], check
    assert lookup(libvirt_system, name) is None  # check mode touched nothing
    res = module_runner("vm_restore", args)
    assert not res.failed, res
    assert res["actions"] == ["define", "start"] and res["state"] == "running" and res["agent"] == "absent"
    back = lookup(libvirt_system, name)
    assert back.UUIDString() == vm_uuid and back.state()[0] == RUNNING


def test_running_vm_refused_without_force_then_forced(module_runner, minimal_guests, libvirt_system, tmp_path):
    dom = minimal_guests(1)[0]
    xml = dom.XMLDesc(0)
    args = {"uri": URI, "domain_xml": xml, "vm": dom.name(), "allowed_paths": [str(tmp_path / "minimal")],
            "shutdown_timeout": 1, "verify_timeout": 30, "state_dir": str(tmp_path / "state")}
    res = module_runner("vm_restore", args)
    assert res.failed and "is running" in res["msg"] and "force" in res["msg"] and "Nothing was changed" in res["msg"]
    assert dom.state()[0] == RUNNING and dom.ID() > 0
    old_id = dom.ID()
    res = module_runner("vm_restore", dict(args, force=True))
    assert not res.failed, res
    # the boot-sector guest ignores ACPI: graceful shutdown times out, then destroy (only with force)
    assert res["actions"] == ["shutdown", "destroy", "define", "start"], res["actions"]
    assert res["shutdown"]["how"] == "forced" and res["shutdown"]["timeout"] == 1
    assert 0.9 <= res["shutdown"]["seconds"] < 10, res["shutdown"]
    assert res["prior_state"] == "running" and res["state"] == "running"
    fresh = libvirt_system.lookupByUUIDString(dom.UUIDString())  # a virDomain caches its id: look it up again
    assert fresh.state()[0] == RUNNING and fresh.ID() != old_id


@pytest.mark.parametrize("tamper, match", [
    ("uuid", "differs from the target VM's UUID"),
    ("commandline", "qemu:commandline"),
    ("disk", "outside allowed_paths"),
])
def test_tampered_xml_refused(module_runner, minimal_guests, tmp_path, tamper, match):
    dom = minimal_guests(1, start=False)[0]
    xml = dom.XMLDesc(0)
    before = dom.XMLDesc(0)
    if tamper == "uuid":
        xml = re.sub(r"<uuid>.*</uuid>", "<uuid>%s</uuid>" % uuid.uuid4(), xml)
    elif tamper == "commandline":
        xml = xml.replace("<domain type=", "<domain xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0' type=", 1)
        xml = xml.replace("</domain>", "<qemu:commandline><qemu:arg value='-d'/></qemu:commandline></domain>")
    else:
        xml = re.sub(r"<source file='[^']*'", "<source file='/etc/passwd'", xml, count=1)
    res = module_runner("vm_restore", {"uri": URI, "domain_xml": xml, "vm": dom.name(), "start": "always",
                                       "allowed_paths": [str(tmp_path / "minimal")], "state_dir": str(tmp_path / "s")})
    assert res.failed and re.search(match, res["msg"]), res
    assert dom.XMLDesc(0) == before and dom.state()[0] == SHUTOFF


@pytest.mark.needs_kvm_guests
@pytest.mark.slow
def test_restore_real_guest_starts_and_agent_answers(module_runner, real_guest, libvirt_system, tmp_path):
    guest = real_guest()
    xml = guest.dom.XMLDesc(0)
    guest.dom.destroy()
    guest.dom.undefine()
    roots = sorted({os.path.dirname(p) for p in re.findall(r"<(?:source file|kernel|initrd)[=>]'?([^'<]+)", xml)})
    roots = [r for r in roots if r.startswith("/")] + [str(tmp_path)]
    t0 = time.monotonic()
    res = module_runner("vm_restore", {"uri": URI, "domain_xml": xml, "allowed_paths": roots, "start": "always",
                                       "verify_timeout": 120, "state_dir": str(tmp_path / "state")}, timeout=180)
    assert not res.failed, res
    assert res["state"] == "running" and res["agent"] == "ok" and not res["existed"]
    assert time.monotonic() - t0 < 150
    assert lookup(libvirt_system, guest.name).state()[0] == RUNNING


def test_vm_locked_by_a_live_fence_run_is_refused(module_runner, minimal_guests, tmp_path):
    from ansible_collections.kvmsnap.core.plugins.module_utils import _journal, _lock
    dom = minimal_guests(1, start=False)[0]
    sd = _journal.ensure_state_dir(str(tmp_path / "state"))
    _lock.acquire(sd, [{"uuid": dom.UUIDString(), "name": dom.name()}], "backup-live-run", time.time() + 60)
    before = dom.XMLDesc(0)
    res = module_runner("vm_restore", {"uri": URI, "domain_xml": before, "allowed_paths": [str(tmp_path / "minimal")],
                                       "start": "always", "state_dir": sd})
    assert res.failed and "backup-live-run" in res["msg"] and "Nothing was changed" in res["msg"], res
    assert dom.state()[0] == SHUTOFF and dom.XMLDesc(0) == before
    _lock.release(sd, [dom.UUIDString()], "backup-live-run")
    res = module_runner("vm_restore", {"uri": URI, "domain_xml": before, "allowed_paths": [str(tmp_path / "minimal")],
                                       "start": "never", "state_dir": sd})
    assert not res.failed and res["actions"] == ["define"] and _lock.holders(sd) == []


def test_disk_of_another_vm_is_refused(module_runner, minimal_guests, tmp_path):
    a, b = minimal_guests(2, start=False)
    before = a.XMLDesc(0)
    b_disk = re.search(r"<source file='([^']*)'", b.XMLDesc(0)).group(1)
    xml = re.sub(r"<source file='[^']*'", "<source file='%s'" % b_disk, before, count=1)
    res = module_runner("vm_restore", {"uri": URI, "domain_xml": xml, "vm": a.name(), "start": "never",
                                       "allowed_paths": [str(tmp_path / "minimal")], "state_dir": str(tmp_path / "s")})
    assert res.failed and "%s is used by VM %s" % (b_disk, b.name()) in res["msg"], res
    assert "Nothing was changed" in res["msg"] and a.XMLDesc(0) == before


def test_foreign_emulator_and_serial_file_rewritten(module_runner, minimal_guests, tmp_path):
    dom = minimal_guests(1, start=False)[0]
    hostfile = tmp_path / "host.txt"
    hostfile.write_text("keep\n")
    xml = re.sub(r"<emulator>[^<]*</emulator>", "<emulator>/bin/false</emulator>", dom.XMLDesc(0))
    xml = xml.replace("</devices>", "<serial type='file'><source path='%s'/><target port='0'/></serial></devices>"
                      % hostfile)
    res = module_runner("vm_restore", {"uri": URI, "domain_xml": xml, "vm": dom.name(), "start": "always",
                                       "verify_timeout": 30, "allowed_paths": [str(tmp_path / "minimal")],
                                       "state_dir": str(tmp_path / "s")})
    assert not res.failed, res
    assert res["rewritten"][0].startswith("<emulator>: /bin/false is not the host's emulator; replaced by /")
    assert res["rewritten"][1].startswith("<serial 0>: type='file' path=%s rewritten to type='pty'" % hostfile)
    assert hostfile.read_text() == "keep\n" and res["state"] == "running"
    live = dom.XMLDesc(0)
    assert "/bin/false" not in live and str(hostfile) not in live
