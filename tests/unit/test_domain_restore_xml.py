"""Saved domain XML validation (F22, docs/dev/faults.md#f22) and NVRAM copy: pure parts of vm_restore."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _domain_restore as dr

UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


def xml(ds, name="web1", uuid=UUID, disk=None, extra="", nvram=None, ns=""):
    disk = disk or os.path.join(ds, "web1.qcow2")
    nv = "<nvram>%s</nvram>" % nvram if nvram else ""
    return ("<domain type='kvm'%s><name>%s</name><uuid>%s</uuid><os><type>hvm</type>%s</os><devices>"
            "<disk type='file' device='disk'><source file='%s'/><target dev='vda'/></disk>"
            "<disk type='file' device='cdrom'><target dev='hdc'/><readonly/></disk>"
            "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>%s"
            "</devices></domain>" % (ns, name, uuid, nv, disk, extra))


@pytest.fixture
def ds(tmp_path):
    d = tmp_path / "ds1"
    d.mkdir()
    return str(d)


def test_valid_xml(ds):
    info = dr.validate_domain_xml(xml(ds), [ds], expected_uuid=UUID.upper(), expected_name="web1")
    assert info["name"] == "web1" and info["uuid"] == UUID and info["agent_channel"]
    assert [d["target"] for d in info["disks"]] == ["vda"] and len(info["sha256"]) == 64


@pytest.mark.parametrize("bad, match", [
    ("<domain><name>x</name>", "not parseable"),
    ("", "empty"),
    ("<vm/>", "root element"),
    ("<!DOCTYPE d [<!ENTITY a 'b'>]><domain/>", "DOCTYPE"),
])
def test_unparseable(bad, match):
    with pytest.raises(dr.RestoreError, match=match):
        dr.validate_domain_xml(bad, ["/"])


def test_uuid_and_name_must_match(ds):
    with pytest.raises(dr.RestoreError, match="differs from the target VM's UUID"):
        dr.validate_domain_xml(xml(ds), [ds], expected_uuid="00000000-0000-0000-0000-000000000001")
    with pytest.raises(dr.RestoreError, match="name 'web1' differs"):
        dr.validate_domain_xml(xml(ds), [ds], expected_name="db1")
    with pytest.raises(dr.RestoreError, match="not a UUID"):
        dr.validate_domain_xml(xml(ds, uuid="nope"), [ds])
    with pytest.raises(dr.RestoreError, match="no <name>"):
        dr.validate_domain_xml(xml(ds, name=""), [ds])


def test_qemu_commandline_refused(ds):
    bad = xml(ds, ns=" xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'").replace(
        "</devices>", "</devices><qemu:commandline><qemu:arg value='-evil'/></qemu:commandline>")
    with pytest.raises(dr.RestoreError, match="qemu:commandline"):
        dr.validate_domain_xml(bad, [ds])


def test_hostdev_and_network_disk_refused(ds):
    with pytest.raises(dr.RestoreError, match="hostdev"):
        dr.validate_domain_xml(xml(ds, extra="<hostdev mode='subsystem' type='pci'/>"), [ds])
    net = "<disk type='network' device='disk'><source protocol='rbd' name='p/x'/><target dev='vdb'/></disk>"
    with pytest.raises(dr.RestoreError, match="network disk"):
        dr.validate_domain_xml(xml(ds, extra=net), [ds])


def test_disk_paths(ds, tmp_path):
    with pytest.raises(dr.RestoreError, match="outside allowed_paths"):
        dr.validate_domain_xml(xml(ds, disk="/etc/shadow"), [ds])
    with pytest.raises(dr.RestoreError, match="outside allowed_paths"):
        dr.validate_domain_xml(xml(ds, disk=ds + "/../escape.img"), [ds])
    with pytest.raises(dr.RestoreError, match="none given"):
        dr.validate_domain_xml(xml(ds), [])
    # a symlinked component pointing outside is refused even though it lexically sits under ds
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, os.path.join(ds, "link"))
    with pytest.raises(dr.RestoreError, match="symlink"):
        dr.validate_domain_xml(xml(ds, disk=os.path.join(ds, "link", "x.img")), [ds])
    # a sibling directory whose name starts with the root's name is not "under" it
    with pytest.raises(dr.RestoreError):
        dr.validate_domain_xml(xml(ds, disk=ds + "-other/x.img"), [ds])


def test_every_problem_named_at_once(ds):
    with pytest.raises(dr.RestoreError) as info:
        dr.validate_domain_xml(xml(ds, disk="/etc/x.img", extra="<hostdev/>"), [ds], expected_name="db1")
    msg = str(info.value)
    assert "/etc/x.img" in msg and "hostdev" in msg and "db1" in msg and "Nothing was changed" in msg


def test_nvram_path_checked(ds):
    dr.validate_domain_xml(xml(ds, nvram="/var/lib/libvirt/qemu/nvram/web1_VARS.fd"), [ds])
    dr.validate_domain_xml(xml(ds, nvram=os.path.join(ds, "web1_VARS.fd")), [ds])
    with pytest.raises(dr.RestoreError, match="<os><nvram>: path /etc/web1_VARS.fd is outside allowed_paths"):
        dr.validate_domain_xml(xml(ds, nvram="/etc/web1_VARS.fd"), [ds])


def test_copy_nvram(tmp_path):
    src = tmp_path / "saved.fd"
    src.write_bytes(b"\x01" * 4096)
    dest = tmp_path / "nv" / "web1_VARS.fd"
    dr.copy_nvram(str(src), str(dest))
    assert dest.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    link = tmp_path / "link.fd"
    link.symlink_to(src)
    with pytest.raises(OSError):
        dr.copy_nvram(str(link), str(dest))


def test_read_xml_file_refuses_symlink(tmp_path, ds):
    real = tmp_path / "d.xml"
    real.write_text(xml(ds))
    assert "web1" in dr.read_xml_file(str(real))
    link = tmp_path / "l.xml"
    link.symlink_to(real)
    with pytest.raises(dr.RestoreError, match="symlink"):
        dr.read_xml_file(str(link))


def test_saved_xml_naming_an_overlay_file_is_refused(ds):
    ovl = os.path.join(ds, ".kvmsnap-overlay.%s.vda.backup-20261130T101500Z-1a2b3c4d.qcow2" % UUID)
    with pytest.raises(dr.RestoreError, match="restores never use overlay files"):
        dr.validate_domain_xml(xml(ds, disk=ovl), [ds], expected_uuid=UUID, expected_name="web1")
    # the same XML on the base image passes
    assert dr.validate_domain_xml(xml(ds), [ds], expected_uuid=UUID, expected_name="web1")["uuid"] == UUID
