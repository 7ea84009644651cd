"""Restore as a new VM: naming rules, new paths next to the originals, and the copy's domain XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _restore_as as ra

UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
NEW_UUID = "0b8c4f5e-2a57-4d0e-9d1c-6f3a3c2f1a10"
F = "kvmsnap_restore_as"


# ---- names ------------------------------------------------------------------------------------------------
def test_one_name_for_one_vm():
    assert ra.new_names("web1-test", ["web1"]) == {"web1": "web1-test"}


def test_suffix_for_several_vms():
    assert ra.new_names("-copy", ["web1", "db1"]) == {"web1": "web1-copy", "db1": "db1-copy"}
    assert ra.new_names("_r", ["a"]) == {"a": "a_r"}
    assert ra.new_names(".t2", ["a"]) == {"a": "a.t2"}


@pytest.mark.parametrize("value, names, match", [
    ("copy", ["web1", "db1"], "one name, but 2 VMs are selected"),
    ("", ["web1"], "not valid; allowed: a new VM name"),
    (" web2", ["web1"], "not valid"),
    ("web/2", ["web1"], "'web/2' is not a valid VM name"),
    ("web 2", ["web1"], "not a valid VM name"),
    ("x" * 65, ["web1"], "not a valid VM name"),
    ("-", ["web1"], "suffix '-' is not valid"),
    ("-co/py", ["web1"], "suffix '-co/py' is not valid"),
    ("-copy-", ["web1"], "suffix '-copy-' is not valid"),
    ("db1", ["web1"], None),
    (["x"], ["web1"], "not valid"),
])
def test_name_refusals(value, names, match):
    if match is None:
        assert ra.new_names(value, names) == {"web1": "db1"}
        return
    with pytest.raises(ra.RestoreAsError, match=match) as err:
        ra.new_names(value, names)
    assert str(err.value).startswith(F + ":")


def test_suffix_result_checked_as_a_name():
    with pytest.raises(ra.RestoreAsError, match="new name of VM web 1 .* is not a valid VM name"):
        ra.new_names("-copy", ["web 1"])
    with pytest.raises(ra.RestoreAsError, match="not a valid VM name"):
        ra.new_names("-" + "x" * 40, ["y" * 30])


def test_new_name_of_one_vm_is_another_selected_vm():
    with pytest.raises(ra.RestoreAsError, match="new name of VM a is a-b, the name of a VM this restore selects"):
        ra.new_names("-b", ["a", "a-b"])


# ---- paths ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path, new", [
    ("/ds/images/web1.qcow2", "/ds/images/web1-copy.qcow2"),
    ("/ds/images/web1-data.raw", "/ds/images/web1-copy-data.raw"),
    ("/ds/images/web1", "/ds/images/web1-copy"),
    ("/ds/images/disk0.qcow2", "/ds/images/web1-copy_disk0.qcow2"),
    ("/ds/images/web10.qcow2", "/ds/images/web1-copy_web10.qcow2"),  # not the VM's name + separator
    ("/var/lib/libvirt/qemu/nvram/web1_VARS.fd", "/var/lib/libvirt/qemu/nvram/web1-copy_VARS.fd"),
])
def test_new_path_next_to_the_original(path, new):
    assert ra.new_path(path, "web1", "web1-copy") == new


def test_path_map_refuses_collisions():
    with pytest.raises(ra.RestoreAsError, match="would both be restored to /ds/w_x.img"):
        ra.path_map(["/ds/web1_x.img", "/ds/x.img"], "web1", "w")
    with pytest.raises(ra.RestoreAsError, match="which is a file of the VM itself"):
        ra.path_map(["/ds/a.img", "/ds/b_a.img"], "c", "b")
    assert ra.path_map(["/ds//web1.img", "/ds/web1.img"], "web1", "n") == {"/ds/web1.img": "/ds/n.img"}


def test_long_file_name_refused():
    with pytest.raises(ra.RestoreAsError, match="longer than 255"):
        ra.new_path("/ds/" + "d" * 250, "web1", "web1-copy")


# ---- the copy's XML ---------------------------------------------------------------------------------------
def saved(nvram=True, extra=""):
    nv = "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>" \
         "<nvram>/var/lib/libvirt/qemu/nvram/web1_VARS.fd</nvram>" if nvram else ""
    return ("<domain type='kvm'><name>web1</name><uuid>%s</uuid><genid>f3c2c7d4-1a0e-4c42-8b8a-2f0b7a8e5d11</genid>"
            "<sysinfo type='smbios'><system><entry name='uuid'>%s</entry><entry name='serial'>s1</entry></system>"
            "</sysinfo><os><type>hvm</type>%s</os><devices>"
            "<disk type='file' device='disk'><source file='/ds/web1.qcow2'/><backingStore type='file'>"
            "<source file='/ds/base.qcow2'/></backingStore><target dev='vda'/></disk>"
            "<disk type='file' device='disk'><source file='/ds/web1-data.raw'/><target dev='vdb'/></disk>"
            "<disk type='file' device='cdrom'><source file='/iso/boot.iso'/><target dev='hdc'/><readonly/></disk>"
            "<interface type='network'><mac address='52:54:00:11:22:33'/><source network='default'/></interface>"
            "<interface type='bridge'><source bridge='br0'/></interface>"
            "<graphics type='vnc' port='5901' autoport='no' websocket='5701'/>"
            "<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/web1.agent'/>"
            "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>%s"
            "</devices></domain>" % (UUID, UUID, nv, extra))


PATHS = {"/ds/web1.qcow2": "/ds/web1-copy.qcow2", "/ds/web1-data.raw": "/ds/web1-copy-data.raw"}


def test_rewrite_identity_paths_macs_nvram():
    macs = iter(["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"])
    out = ra.rewrite_xml(saved(), "web1-copy", NEW_UUID, PATHS, "/var/lib/libvirt/qemu/nvram/web1-copy_VARS.fd",
                         mac=lambda: next(macs))
    root = ET.fromstring(out["xml"])
    assert root.findtext("name") == "web1-copy" and root.findtext("uuid") == NEW_UUID
    assert root.find("genid") is None
    assert [e.text for e in root.findall("sysinfo/system/entry")] == [NEW_UUID, "s1"]
    sources = [d.find("source").get("file") for d in root.findall("devices/disk")]
    assert sources == ["/ds/web1-copy.qcow2", "/ds/web1-copy-data.raw", "/iso/boot.iso"]
    # the read-only backing file stays shared
    assert root.find("devices/disk/backingStore/source").get("file") == "/ds/base.qcow2"
    assert [m.get("address") for m in root.findall("devices/interface/mac")] == ["52:54:00:aa:bb:01",
                                                                                 "52:54:00:aa:bb:02"]
    assert out["macs"] == ["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"]
    assert root.findtext("os/nvram") == "/var/lib/libvirt/qemu/nvram/web1-copy_VARS.fd"
    assert out["nvram"] == {"source": "/var/lib/libvirt/qemu/nvram/web1_VARS.fd",
                            "path": "/var/lib/libvirt/qemu/nvram/web1-copy_VARS.fd"}
    g = root.find("devices/graphics")
    assert g.get("autoport") == "yes" and g.get("port") is None and g.get("websocket") is None
    assert root.find("devices/channel/source") is None
    assert [d["path"] for d in out["disks"]] == ["/ds/web1-copy.qcow2", "/ds/web1-copy-data.raw"]
    assert "52:54:00:11:22:33" not in out["xml"] and UUID not in out["xml"]


def test_random_macs_differ():
    out = ra.rewrite_xml(saved(nvram=False), "n", NEW_UUID, PATHS)
    assert len(set(out["macs"])) == 2 and all(m.startswith("52:54:00:") for m in out["macs"])


def test_nvram_source_form():
    xml = saved(nvram=False).replace("<type>hvm</type>", "<type>hvm</type><nvram><source file='/ds/web1_VARS.fd'/>"
                                                         "</nvram>")
    out = ra.rewrite_xml(xml, "n", NEW_UUID, PATHS, "/ds/n_VARS.fd")
    assert ET.fromstring(out["xml"]).find("os/nvram/source").get("file") == "/ds/n_VARS.fd"


@pytest.mark.parametrize("paths, nvram, match", [
    ({"/ds/web1.qcow2": "/ds/n.qcow2"}, "/x/n_VARS.fd", r"<disk vdb>: /ds/web1-data.raw has no new path"),
    (dict(PATHS, **{"/ds/other.img": "/ds/n-other.img"}), "/x/n_VARS.fd", "/ds/other.img is not a disk of VM web1"),
    (PATHS, None, "copy needs its own"),
])
def test_rewrite_refusals(paths, nvram, match):
    with pytest.raises(ra.RestoreAsError, match=match):
        ra.rewrite_xml(saved(), "n", NEW_UUID, paths, nvram)


def test_rewrite_refuses_nvram_path_without_nvram_and_bad_uuid():
    with pytest.raises(ra.RestoreAsError, match="has no NVRAM file"):
        ra.rewrite_xml(saved(nvram=False), "n", NEW_UUID, PATHS, "/x/n_VARS.fd")
    with pytest.raises(ra.RestoreAsError, match="as_new.uuid"):
        ra.rewrite_xml(saved(nvram=False), "n", "nope", PATHS)
    with pytest.raises(ra.RestoreAsError, match="as_new.name"):
        ra.rewrite_xml(saved(nvram=False), "n/1", NEW_UUID, PATHS)
