"""vm_backup's disk → volume mapping: pure parts (domain XML disks, datastores, explicit vm_mapping)."""

from __future__ import annotations

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _fence_errors, _fence_mapping

XML = """<domain><name>web1</name><devices>
<disk type='file' device='disk'><source file='/mnt/ds1/web1/root.qcow2'/><target dev='vda'/></disk>
<disk type='file' device='disk'><source file='/mnt/ds2/web1-data.raw'/><target dev='vdb'/></disk>
<disk type='file' device='cdrom'><source file='/iso/install.iso'/><target dev='hdc'/><readonly/></disk>
<disk type='block' device='disk'><source dev='/dev/mapper/3600a0980'/><target dev='vdc'/></disk>
<disk type='network' device='disk'><source protocol='rbd' name='pool/img'/><target dev='vdd'/></disk>
</devices></domain>"""
VM = {"name": "web1", "uuid": "u-1", "state": "running"}
DS = [{"path": "/mnt/ds1", "svm": "svm1", "volume": "vol_ds1"}, {"path": "/mnt/ds2", "svm": "svm1", "volume": "vol_ds2"},
      {"path": "/mnt/ds1/web1", "svm": "svm2", "volume": "vol_nested"}]


def test_domain_disks():
    disks = _fence_mapping.domain_disks(XML)
    assert [(d["target"], d["type"], d["device"], d["path"]) for d in disks] == [
        ("vda", "file", "disk", "/mnt/ds1/web1/root.qcow2"), ("vdb", "file", "disk", "/mnt/ds2/web1-data.raw"),
        ("hdc", "file", "cdrom", "/iso/install.iso"), ("vdc", "block", "disk", "/dev/mapper/3600a0980"),
        ("vdd", "network", "disk", None)]
    assert disks[2]["readonly"] and disks[4]["protocol"] == "rbd"


def test_every_unmapped_disk_named_and_cdrom_skipped():
    out = _fence_mapping.map_vm_volumes([VM], {"u-1": XML}, DS, [])
    assert out["per_vm"]["u-1"] == [{"svm": "svm2", "volume": "vol_nested"}, {"svm": "svm1", "volume": "vol_ds2"}]
    assert len(out["unmapped"]) == 2 and "vdc" in out["unmapped"][0] and "vdd" in out["unmapped"][1]
    assert "install.iso" in out["skipped"][0]


def test_prefix_is_a_path_component():
    xml = "<domain><devices><disk type='file'><source file='/mnt/ds10/x.img'/><target dev='vda'/></disk></devices></domain>"
    out = _fence_mapping.map_vm_volumes([VM], {"u-1": xml}, DS, [])
    assert out["unmapped"] and not out["per_vm"]["u-1"]


def test_explicit_mapping_wins():
    mapping = _fence_mapping.parse_vm_mapping([{"vm": "web1", "controller": "cluster1", "svm": "svm9",
                                                "path": "/vol/vol_x/lun0"}], "cluster1")
    assert mapping == [{"vm": "web1", "svm": "svm9", "volume": "vol_x", "path": "/vol/vol_x/lun0"}]
    out = _fence_mapping.map_vm_volumes([VM], {"u-1": XML}, [], mapping)
    assert out["per_vm"]["u-1"] == [{"svm": "svm9", "volume": "vol_x"}] and out["unmapped"] == []


def test_mapping_takes_vm_controller_path_as_vm_info_does():
    # the string form names the controller (as vm_info and Snap Creator); the SVM comes from the controller later
    assert _fence_mapping.parse_vm_mapping("web1:Cluster1:/vol/vol_x/lun0;", "cluster1") == [
        {"vm": "web1", "svm": None, "volume": "vol_x", "path": "/vol/vol_x/lun0"}]


def test_old_svm_form_refused_naming_the_field_and_the_form():
    with pytest.raises(_fence_errors.FenceError) as err:
        _fence_mapping.parse_vm_mapping("web1:svm9:/vol/vol_x/lun0;", "cluster1.example.com")
    msg = str(err.value)
    assert "entry 1 (web1): the controller field is 'svm9'" in msg and "hostname" in msg
    assert "vm:controller:path" in msg and "web1:cluster1.example.com:/vol/vol_x/lun0" in msg


@pytest.mark.parametrize("bad, match", [
    ("a:b:/vol/c/d;;e:f:/vol/g/h", "entry 2"),
    ("VM1:ctrl", "entry 1"),
    ("VM1:ctrl:/vol/v/l,VM2:ctrl:/vol/v/m", "comma"),
    ("VM1:ctrl:/lun/x", "/vol/<volume>"),
])
def test_bad_vm_mapping(bad, match):
    with pytest.raises(_fence_errors.FenceError, match=match):
        _fence_mapping.parse_vm_mapping(bad)


@pytest.mark.parametrize("bad, match", [
    ([{"path": "/mnt/x", "svm": "s"}], "missing volume"),
    ([{"path": "rel/x", "svm": "s", "volume": "v"}], "absolute"),
    (["/mnt/x"], "expected a dict"),
])
def test_bad_datastores(bad, match):
    with pytest.raises(_fence_errors.FenceError, match=match):
        _fence_mapping.parse_datastores(bad)
