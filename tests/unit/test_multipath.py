"""Multipath WWID ↔ ONTAP LUN serial, sysfs resolution, and the SAN side of the storage map."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils._multipath import (
    is_netapp_wwid,
    normalize_wwid,
    resolve_block_device,
    serial_to_wwid,
    wwid_to_serial,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._storage_map import (
    StorageInventory,
    StorageMapper,
    shared_lun_problems,
)

FIX = Path(__file__).parent / "fixtures" / "sysfs" / "kvm2-san.json"

INVENTORY = [{"controller": "cluster1", "svm": "svm_san", "luns": [
    {"path": "/vol/vol_db/lun_vm1", "serial": "D31sh#DQGQUu"},
    {"path": "/vol/vol_db/lun_vm2", "serial": "80AuB?K-XxYz"},
    {"path": "/vol/vol_lvm/lun_pv", "serial": "wB3Jl$Kp7*Q!"},
]}]


@pytest.fixture
def sysroot(tmp_path):
    spec = json.loads(FIX.read_text())
    root = tmp_path / "host"
    for path, content in spec["files"].items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    for path in spec["dirs"]:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for path in spec["devices"]:
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("")  # stands for the device node
    for path, target in spec["links"].items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, p)
    return str(root)


def test_serial_wwid_reference_example():
    assert serial_to_wwid("D31sh#DQGQUu") == "3600a0980443331736823445147515575"
    assert wwid_to_serial("3600a0980443331736823445147515575") == "D31sh#DQGQUu"


@pytest.mark.parametrize("form", [
    "3600a0980443331736823445147515575",
    "3600A0980443331736823445147515575",
    "naa.600a0980443331736823445147515575",
    "mpath-3600a0980443331736823445147515575",
    "dm-uuid-mpath-3600a0980443331736823445147515575",
    "scsi-3600a0980443331736823445147515575",
    "600a0980443331736823445147515575",
])
def test_wwid_forms(form):
    assert wwid_to_serial(form) == "D31sh#DQGQUu"
    assert normalize_wwid(form) == "3600a0980443331736823445147515575"


@pytest.mark.parametrize("serial", ["D31sh#DQGQUu", "80AuB?K-XxYz", "wB3Jl$Kp7*Q!", "a|b*c!d e(f)"])
def test_roundtrip(serial):
    assert wwid_to_serial(serial_to_wwid(serial)) == serial


def test_seven_mode_prefix():
    assert wwid_to_serial("360a98000443331736823445147515575") == "D31sh#DQGQUu"


@pytest.mark.parametrize("bad, why", [
    ("360080e500023a4f6000003d25c1f0b2a", "not a NetApp"),     # E-Series
    ("3600a09804433317368234451475155", "24 hex digits"),       # too short
    ("2600a0980443331736823445147515575", "NAA-6"),
    ("3600a0980zz3331736823445147515575", "not hex"),
    ("3600a0980003331736823445147515575", "unprintable"),
])
def test_bad_wwids(bad, why):
    with pytest.raises(ValueError, match=why):
        wwid_to_serial(bad)
    assert not is_netapp_wwid(bad)


@pytest.mark.parametrize("bad", ["short", "D31sh#DQGQUuX", "D31sh#DQGQé1"])
def test_bad_serials(bad):
    with pytest.raises(ValueError):
        serial_to_wwid(bad)


@pytest.mark.parametrize("dev", ["/dev/mapper/mpatha", "/dev/dm-2",
                                 "/dev/disk/by-id/dm-uuid-mpath-3600a0980443331736823445147515575"])
def test_resolve_multipath_device(sysroot, dev):
    info = resolve_block_device(dev, sysroot)
    assert info["dm"] == "dm-2" and info["serial"] == "D31sh#DQGQUu" and info["error"] is None
    assert info["wwid"] == "3600a0980443331736823445147515575" and not info["lvm"]


def test_resolve_kpartx_partition(sysroot):
    info = resolve_block_device("/dev/mapper/mpathb1", sysroot)
    assert info["serial"] == "80AuB?K-XxYz" and info["partition"] == 1


def test_resolve_lvm_on_multipath(sysroot):
    info = resolve_block_device("/dev/vg_san/lv_vm3", sysroot)
    assert info["lvm"] is True and info["serial"] == "wB3Jl$Kp7*Q!" and info["dm"] == "dm-5"


def test_resolve_plain_scsi_and_partition(sysroot):
    assert resolve_block_device("/dev/sdd", sysroot)["serial"] == "D31sh#DQGQUu"
    part = resolve_block_device("/dev/sdd1", sysroot)
    assert part["serial"] == "D31sh#DQGQUu" and part["partition"] == 1


def test_resolve_not_ontap(sysroot):
    eseries = resolve_block_device("/dev/mapper/eseries", sysroot)
    assert eseries["serial"] is None and "not a NetApp" in eseries["error"]
    local_lvm = resolve_block_device("/dev/mapper/vg0-root", sysroot)
    assert local_lvm["serial"] is None and local_lvm["lvm"] is True
    assert resolve_block_device("/dev/vda", sysroot)["serial"] is None
    assert "not a block device" in resolve_block_device("/dev/nonexistent", sysroot)["error"]


def _vm(name, *devs, dtype="block"):
    return {"name": name, "uuid": "uuid-" + name, "disks": [
        {"type": dtype, "device": "disk", "path": d, "target": "vd" + chr(97 + i), "backing_chain": []}
        for i, d in enumerate(devs)]}


def test_san_mapping(sysroot):
    mapper = StorageMapper(StorageInventory.from_option(INVENTORY), [], [], sysroot)
    vm = _vm("vm1", "/dev/mapper/mpatha", "/dev/mapper/mpathb1")
    assert mapper.map_vm(vm) == []
    d0, d1 = vm["disks"]
    assert (d0["controller"], d0["svm"], d0["volume"], d0["mapped_by"]) == ("cluster1", "svm_san", "vol_db", "san")
    assert d0["lun"] == {"path": "/vol/vol_db/lun_vm1", "serial": "D31sh#DQGQUu",
                         "wwid": "3600a0980443331736823445147515575"}
    assert d1["lun"]["path"] == "/vol/vol_db/lun_vm2" and "partition 1" in d1["notes"][0]


def test_lvm_on_san_is_a_note(sysroot):
    mapper = StorageMapper(StorageInventory.from_option(INVENTORY), [], [], sysroot)
    vm = _vm("vm3", "/dev/vg_san/lv_vm3")
    problems = mapper.map_vm(vm)
    assert vm["disks"][0]["lun"]["path"] == "/vol/vol_lvm/lun_pv"
    assert [p["severity"] for p in problems] == ["note"] and "LVM" in problems[0]["reason"]


def test_unknown_lun_and_non_ontap_device(sysroot):
    inv = StorageInventory.from_option([{"controller": "cluster1", "svm": "svm_san", "luns": []}])
    mapper = StorageMapper(inv, [], [], sysroot)
    vm = _vm("vm4", "/dev/mapper/mpatha", "/dev/mapper/eseries")
    problems = mapper.map_vm(vm)
    assert len(problems) == 2
    assert "VM vm4 disk vda" in problems[0]["reason"] and "D31sh#DQGQUu" in problems[0]["reason"]
    assert "not a NetApp" in problems[1]["reason"] and "vm_mapping" in problems[1]["reason"]


def test_shared_lun_is_unprotectable(sysroot):
    mapper = StorageMapper(StorageInventory.from_option(INVENTORY), [], [], sysroot)
    vms = [_vm("vm1", "/dev/mapper/mpatha"), _vm("vm2", "/dev/dm-2"), _vm("vm5", "/dev/mapper/mpathb1")]
    for vm in vms:
        assert mapper.map_vm(vm) == []
    problems = shared_lun_problems(vms)
    assert sorted(p["vm"] for p in problems) == ["vm1", "vm2"]
    assert "used by several VMs (vm1, vm2)" in problems[0]["reason"]


def test_vm_mapping_for_san_and_network_disks(sysroot):
    from ansible_collections.kvmsnap.core.plugins.module_utils._vm_mapping import parse_vm_mapping
    mapping = parse_vm_mapping("vm1:cluster1:/vol/vol_db/lun_vm1;vm6:cluster1:/vol/vol_net/lun6;")
    mapper = StorageMapper(StorageInventory.from_option(INVENTORY), [], mapping, sysroot)
    vm1 = _vm("vm1", "/dev/mapper/mpatha")
    assert mapper.map_vm(vm1) == []
    assert vm1["disks"][0]["mapped_by"] == "vm_mapping" and vm1["disks"][0]["lun"]["serial"] == "D31sh#DQGQUu"
    vm6 = _vm("vm6", "iscsi:iqn.1992-08.com.netapp:sn.1/0", dtype="network")
    assert mapper.map_vm(vm6) == []
    assert (vm6["disks"][0]["volume"], vm6["disks"][0]["lun"]["path"]) == ("vol_net", "/vol/vol_net/lun6")
    rbd = _vm("vm7", "rbd:pool/img", dtype="network")
    assert "network disk" in mapper.map_vm(rbd)[0]["reason"]


def test_vm_mapping_contradicting_the_wwid(sysroot):
    from ansible_collections.kvmsnap.core.plugins.module_utils._vm_mapping import parse_vm_mapping
    mapping = parse_vm_mapping("vm1:cluster1:/vol/vol_db/lun_vm2")
    mapper = StorageMapper(StorageInventory.from_option(INVENTORY), [], mapping, sysroot)
    problems = mapper.map_vm(_vm("vm1", "/dev/mapper/mpatha"))
    assert "fix vm_mapping" in problems[0]["reason"] and "80AuB?K-XxYz" in problems[0]["reason"]
