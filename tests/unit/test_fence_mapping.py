"""vm_backup's disk → volume mapping: the one mapper (StorageMapper, as vm_info), fed with the domain XML's disks
(_domain_xml), the datastores (one schema) and the explicit vm_mapping (vm_backup names one controller)."""

from __future__ import annotations

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _fence_errors, _fence_mapping
from ansible_collections.kvmsnap.core.plugins.module_utils import _storage_map as sm
from ansible_collections.kvmsnap.core.plugins.module_utils._domain_xml import parse_domain_xml

XML = """<domain><name>web1</name><devices>
<disk type='file' device='disk'><source file='/mnt/ds1/web1/root.qcow2'/><target dev='vda'/></disk>
<disk type='file' device='disk'><source file='/mnt/ds2/web1-data.raw'/><target dev='vdb'/></disk>
<disk type='file' device='cdrom'><source file='/iso/install.iso'/><target dev='hdc'/><readonly/></disk>
<disk type='block' device='disk'><source dev='/dev/mapper/3600a0980'/><target dev='vdc'/></disk>
<disk type='network' device='disk'><source protocol='rbd' name='pool/img'/><target dev='vdd'/></disk>
</devices></domain>"""
DS = [{"path": "/mnt/ds1", "svm": "svm1", "volume": "vol_ds1"}, {"path": "/mnt/ds2", "svm": "svm1", "volume": "vol_ds2"},
      {"path": "/mnt/ds1/web1", "svm": "svm2", "volume": "vol_nested"}]


def backup_map(xml, datastores, mapping):
    """What vm_backup's pre-flight does for one VM: (volumes, errors, skipped disks)."""
    vm = dict(parse_domain_xml(xml), name="web1", uuid="u-1")
    mapper = sm.StorageMapper(sm.StorageInventory(), sm.parse_datastores(datastores, "cluster1"), mapping,
                              vm_mapping_covers_files=True)
    problems = mapper.map_vm(vm)
    return (sm.volumes_of(vm), [p["reason"] for p in problems if p["severity"] == "error"],
            [d for d in vm["disks"] if d["skipped"]])


def test_domain_disks():
    disks = parse_domain_xml(XML)["disks"]
    assert [(d["target"], d["type"], d["device"], d["path"]) for d in disks] == [
        ("vda", "file", "disk", "/mnt/ds1/web1/root.qcow2"), ("vdb", "file", "disk", "/mnt/ds2/web1-data.raw"),
        ("hdc", "file", "cdrom", "/iso/install.iso"), ("vdc", "block", "disk", "/dev/mapper/3600a0980"),
        ("vdd", "network", "disk", "rbd:pool/img")]
    assert disks[2]["readonly"] and disks[4]["source"]["protocol"] == "rbd"


def test_every_unmapped_disk_named_and_cdrom_skipped():
    vols, errors, skipped = backup_map(XML, DS, [])
    assert vols == [("cluster1", "svm2", "vol_nested"), ("cluster1", "svm1", "vol_ds2")]
    assert len(errors) == 2 and "vdc" in errors[0] and "vdd" in errors[1]
    assert [d["path"] for d in skipped] == ["/iso/install.iso"]


def test_prefix_is_a_path_component():
    xml = "<domain><devices><disk type='file'><source file='/mnt/ds10/x.img'/><target dev='vda'/></disk></devices></domain>"
    vols, errors, _skipped = backup_map(xml, DS, [])
    assert errors and not vols


def test_explicit_mapping_wins():
    mapping = _fence_mapping.parse_vm_mapping([{"vm": "web1", "controller": "cluster1", "svm": "svm9",
                                                "path": "/vol/vol_x/lun0"}], "cluster1")
    assert [{k: e[k] for k in ("vm", "svm", "volume", "path")} for e in mapping] == [
        {"vm": "web1", "svm": "svm9", "volume": "vol_x", "path": "/vol/vol_x/lun0"}]
    vols, errors, _skipped = backup_map(XML, [], mapping)
    assert vols == [("cluster1", "svm9", "vol_x")] and errors == []


def test_explicit_mapping_by_uuid():
    mapping = _fence_mapping.parse_vm_mapping("u-1:cluster1:/vol/vol_x/lun0", "cluster1")
    vols, errors, _skipped = backup_map(XML, [], mapping)
    assert vols == [("cluster1", None, "vol_x")] and errors == []


def test_mapping_takes_vm_controller_path_as_vm_info_does():
    # the string form names the controller (as vm_info and Snap Creator); the SVM comes from the controller later
    assert [{k: e[k] for k in ("vm", "svm", "volume", "path")}
            for e in _fence_mapping.parse_vm_mapping("web1:Cluster1:/vol/vol_x/lun0;", "cluster1")] == [
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


@pytest.mark.parametrize("bad, controller, match", [
    ([{"path": "/mnt/x", "svm": "s"}], "c1", "entry 1: volume missing"),
    ([{"path": "rel/x", "svm": "s", "volume": "v"}], "c1", "must be absolute"),
    (["/mnt/x"], "c1", "expected a dict"),
    # vm_info has no controller of its own: every entry names one
    ([{"path": "/mnt/x", "svm": "s", "volume": "v"}], None, "entry 1: controller missing"),
])
def test_bad_datastores(bad, controller, match):
    with pytest.raises(sm.StorageMapError, match=match):
        sm.parse_datastores(bad, controller)


def test_one_datastores_schema():
    """The roles' kvmsnap_datastores entries (with controller) and vm_backup's (controller = its hostname)."""
    given = [{"path": "/mnt/ds1", "controller": "c2", "svm": "s", "volume": "v1", "path_in_volume": "/images"},
             {"path": "/mnt/ds2", "svm": "s", "volume": "v2"}]
    out = {d["volume"]: d for d in sm.parse_datastores(given, "c1")}
    assert out["v1"]["controller"] == "c2" and out["v1"]["path_in_volume"] == "/images"
    assert out["v2"]["controller"] == "c1"
