"""Mount table reader and NFS datastore → SVM/volume mapping, on real-format fixtures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils._mountinfo import (
    export_path_of,
    find_mount,
    parse_mountinfo,
    parse_proc_mounts,
    read_mounts,
    unescape,
)
from ansible_collections.kvmsnap.core.plugins.module_utils._storage_map import (
    StorageInventory,
    StorageMapper,
    longest_junction,
    parse_datastores,
)

FIX = Path(__file__).parent / "fixtures" / "mountinfo"

INVENTORY = [
    {"controller": "cluster1", "svm": "svm1", "lifs": ["10.10.10.11"],
     "volumes": [{"name": "svm1_root", "junction_path": "/"},
                 {"name": "vmstore", "junction_path": "/vmstore"},
                 {"name": "vmstore_images", "junction_path": "/vmstore/images"},
                 {"name": "offline_vol", "junction_path": None}]},
    {"controller": "cluster2", "svm": "svm2", "lifs": ["10.10.20.21", "fd00:10:0:0::11"],
     "volumes": [{"name": "vmstore2", "junction_path": "/vmstore"},
                 {"name": "gold", "junction_path": "/vmstore/gold"}]},
]


def host_root(tmp_path: Path, fmt: str = "mountinfo") -> str:
    proc = tmp_path / "host" / "proc"
    if fmt == "mountinfo":
        (proc / "self").mkdir(parents=True)
        shutil.copy(FIX / "kvm1.mountinfo", proc / "self" / "mountinfo")
    else:
        proc.mkdir(parents=True)
        shutil.copy(FIX / "kvm1.mounts", proc / "mounts")
    return str(tmp_path / "host")


def test_unescape_octal():
    assert unescape(r"/mnt/root\040of\040svm1") == "/mnt/root of svm1"
    assert unescape(r"a\011b\012c\134d") == "a\tb\nc\\d"


def test_parse_mountinfo_fields():
    mounts = parse_mountinfo((FIX / "kvm1.mountinfo").read_text())
    assert len(mounts) == 13
    ds1 = [m for m in mounts if m.mount_point == "/mnt/ds1"][0]
    assert ds1.fstype == "nfs" and ds1.is_nfs
    assert ds1.nfs_server == "10.10.10.11" and ds1.nfs_export == "/vmstore" and ds1.nfs_address == "10.10.10.11"
    assert ds1.options["vers"] == "3" and ds1.options["hard"] is None
    ds2 = [m for m in mounts if m.mount_point == "/mnt/ds2"][0]
    assert ds2.nfs_server == "nfs-svm2.example.com" and ds2.nfs_address == "10.10.20.21"
    spaced = [m for m in mounts if m.mount_point == "/mnt/root of svm1"][0]
    assert spaced.nfs_export == "/"
    v6 = [m for m in mounts if m.mount_point == "/mnt/v6"][0]
    assert v6.nfs_server == "fd00:10::11" and v6.nfs_export == "/vmstore" and v6.nfs_address == "fd00:10::11"
    bind = [m for m in mounts if m.mount_point == "/srv/web-images"][0]
    assert bind.root == "/images/web"
    root = mounts[0]
    assert root.fstype == "ext4" and not root.is_nfs and root.nfs_address is None
    assert root.device == "252:1" and root.mount_id == 22


def test_parse_proc_mounts_same_answers():
    mounts = parse_proc_mounts((FIX / "kvm1.mounts").read_text())
    ds2 = find_mount(mounts, "/mnt/ds2/vm1/disk.qcow2")
    assert ds2.nfs_address == "10.10.20.21" and ds2.nfs_export == "/vmstore/gold"
    assert find_mount(mounts, "/mnt/root of svm1/x").nfs_export == "/"


def test_read_mounts_prefers_mountinfo_and_falls_back(tmp_path):
    assert len(read_mounts(host_root(tmp_path / "a"))) == 13
    assert len(read_mounts(host_root(tmp_path / "b", "mounts"))) == 7
    with pytest.raises(OSError):
        read_mounts(str(tmp_path / "nothing"))


def test_find_mount_longest_and_nested():
    mounts = parse_mountinfo((FIX / "kvm1.mountinfo").read_text())
    assert find_mount(mounts, "/mnt/ds1/vm1.qcow2").mount_point == "/mnt/ds1"
    assert find_mount(mounts, "/mnt/ds1/child/x.img").mount_point == "/mnt/ds1/child"
    assert find_mount(mounts, "/mnt/ds10/x").mount_point == "/"  # no prefix confusion
    assert find_mount(mounts, "/var/lib/libvirt/images/a.qcow2").fstype == "ext4"


def test_export_path_with_bind_root():
    mounts = parse_mountinfo((FIX / "kvm1.mountinfo").read_text())
    bind = find_mount(mounts, "/srv/web-images/web01.qcow2")
    assert export_path_of(bind, "/srv/web-images/web01.qcow2") == "/vmstore/images/web/web01.qcow2"
    ds1 = find_mount(mounts, "/mnt/ds1")
    assert export_path_of(ds1, "/mnt/ds1") == "/vmstore"


@pytest.mark.parametrize("path, volume, rest", [
    ("/vmstore/vm1/disk.qcow2", "vmstore", "/vm1/disk.qcow2"),
    ("/vmstore/images/web/a.qcow2", "vmstore_images", "/web/a.qcow2"),   # nested junction wins
    ("/vmstore/imagesX/a.qcow2", "vmstore", "/imagesX/a.qcow2"),         # not a path prefix
    ("/vmstore", "vmstore", "/"),
    ("/other/x.img", "svm1_root", "/other/x.img"),                       # SVM root volume at /
    ("/", "svm1_root", "/"),
])
def test_longest_junction(path, volume, rest):
    vol, in_vol = longest_junction(INVENTORY[0]["volumes"], path)
    assert (vol["name"], in_vol) == (volume, rest)


def test_longest_junction_without_root_volume():
    assert longest_junction(INVENTORY[1]["volumes"], "/elsewhere/x") is None
    assert longest_junction([{"name": "v", "junction_path": None}], "/x") is None


def _vm(*paths):
    return {"name": "vm1", "uuid": "u1", "disks": [
        {"type": "file", "device": "disk", "path": p, "target": "vd" + chr(97 + i), "backing_chain": []}
        for i, p in enumerate(paths)]}


def test_nfs_mapping_end_to_end(tmp_path):
    mapper = StorageMapper(StorageInventory.from_option(INVENTORY), [], [], host_root(tmp_path))
    vm = _vm("/mnt/ds1/vm1/vm1.qcow2", "/mnt/ds2/vm1/data.raw", "/srv/web-images/web01.qcow2",
             "/mnt/root of svm1/iso/x.img", "/mnt/v6/v6vm/disk.qcow2")
    problems = mapper.map_vm(vm)
    assert problems == []
    got = [(d["controller"], d["svm"], d["volume"], d["path_in_volume"], d["mapped_by"]) for d in vm["disks"]]
    assert got == [
        ("cluster1", "svm1", "vmstore", "/vm1/vm1.qcow2", "nfs"),
        ("cluster2", "svm2", "gold", "/vm1/data.raw", "nfs"),
        ("cluster1", "svm1", "vmstore_images", "/web/web01.qcow2", "nfs"),
        ("cluster1", "svm1", "svm1_root", "/iso/x.img", "nfs"),
        ("cluster2", "svm2", "vmstore2", "/v6vm/disk.qcow2", "nfs"),
    ]
    assert vm["disks"][0]["datastore"] == "/mnt/ds1"


def test_unmapped_disks_name_vm_and_disk(tmp_path):
    mapper = StorageMapper(StorageInventory.from_option(INVENTORY), [], [], host_root(tmp_path))
    vm = _vm("/var/lib/libvirt/images/local.qcow2", "/mnt/ds1/child/x.img")
    problems = mapper.map_vm(vm)
    assert [p["disk"] for p in problems] == ["vda", "vdb"]
    assert "VM vm1 disk vda" in problems[0]["reason"] and "ext4" in problems[0]["reason"]
    assert "10.10.10.12" in problems[1]["reason"] and "no data LIF" in problems[1]["reason"]
    assert all(p["severity"] == "error" for p in problems)


def test_datastores_win_over_nfs_longest_prefix(tmp_path):
    ds = parse_datastores([
        {"path": "/mnt/ds1", "controller": "c9", "svm": "s9", "volume": "v9"},
        {"path": "/mnt/ds1/deep", "controller": "c8", "svm": "s8", "volume": "v8"},
    ])
    mapper = StorageMapper(StorageInventory.from_option(INVENTORY), ds, [], host_root(tmp_path))
    vm = _vm("/mnt/ds1/a.qcow2", "/mnt/ds1/deep/b.qcow2", "/mnt/ds1deep/c.qcow2")
    problems = mapper.map_vm(vm)
    assert [(d["volume"], d["path_in_volume"]) for d in vm["disks"][:2]] == [("v9", "/a.qcow2"), ("v8", "/b.qcow2")]
    assert vm["disks"][0]["mapped_by"] == "datastores"
    assert len(problems) == 1 and problems[0]["disk"] == "vdc"


def test_datastores_are_realpathed(tmp_path):
    real = tmp_path / "real"
    (real / ".snapshot").mkdir(parents=True)  # a symlink to a volume root (an NFS mount of an ONTAP volume)
    (tmp_path / "link").symlink_to(real)
    ds = parse_datastores([{"path": str(tmp_path / "link"), "controller": "c", "svm": "s", "volume": "v"}])
    assert ds[0]["path"] == str(real)
    mapper = StorageMapper(StorageInventory(), ds, [], "/")
    vm = _vm(str(tmp_path / "link" / "d.qcow2"))
    assert mapper.map_vm(vm) == []
    assert vm["disks"][0]["path_in_volume"] == "/d.qcow2"


def test_cdrom_skipped_and_backing_chain(tmp_path):
    ds = parse_datastores([{"path": "/mnt/ds1", "controller": "c", "svm": "s", "volume": "v"}])
    mapper = StorageMapper(StorageInventory.from_option(INVENTORY), ds, [], host_root(tmp_path))
    vm = {"name": "vm1", "uuid": "u1", "disks": [
        {"type": "file", "device": "cdrom", "path": "/isos/debian.iso", "target": "hdc", "backing_chain": []},
        {"type": "file", "device": "disk", "path": "/mnt/ds1/top.qcow2", "target": "vda",
         "backing_chain": [{"type": "file", "format": "qcow2", "path": "/mnt/ds2/base.qcow2"},
                           {"type": "file", "format": "raw", "path": "/var/lib/libvirt/images/local-base.raw"}]}]}
    problems = mapper.map_vm(vm)
    assert vm["disks"][0]["skipped"] is True and "cdrom" in vm["disks"][0]["reason"]
    chain = vm["disks"][1]["backing_chain"]
    assert chain[0]["volume"] == "gold" and chain[0]["path_in_volume"] == "/base.qcow2"
    assert "another volume" in vm["disks"][1]["notes"][0]
    assert len(problems) == 1 and "backing file /var/lib/libvirt/images/local-base.raw" in problems[0]["reason"]


def test_bad_datastore_and_inventory_entries():
    from ansible_collections.kvmsnap.core.plugins.module_utils._storage_map import StorageMapError
    with pytest.raises(StorageMapError, match="entry 1: volume missing"):
        parse_datastores([{"path": "/x", "controller": "c", "svm": "s"}])
    with pytest.raises(StorageMapError, match="must be absolute"):
        parse_datastores([{"path": "x", "controller": "c", "svm": "s", "volume": "v"}])
    with pytest.raises(StorageMapError, match="entry 2"):
        StorageInventory.from_option([INVENTORY[0], {"controller": "c"}])


def test_a_symlinked_datastore_that_leaves_the_volume_maps_nothing(tmp_path):
    # kvmsnap_datastores names a symlink to a directory that is no volume root: its files are in no snapshot
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "link").symlink_to(outside)
    ds = parse_datastores([{"path": str(tmp_path / "link"), "controller": "c", "svm": "s", "volume": "v"}])
    mapper = StorageMapper(StorageInventory(), ds, [], "/")
    vm = _vm(str(tmp_path / "link" / "d.qcow2"))
    problems = mapper.map_vm(vm)
    assert vm["disks"][0]["volume"] is None
    assert len(problems) == 1
    reason = problems[0]["reason"]
    assert "datastore %s is a symlink to %s" % (tmp_path / "link", outside) in reason
    assert "not the root of volume s:v" in reason and "set the datastore path to the volume's mount point" in reason


def test_a_disk_on_a_mount_nested_below_a_datastore_is_not_attributed_to_it(tmp_path, monkeypatch):
    # /ds1 is volume v1; /ds1/nested is another mount (another volume or a local disk): not in v1's snapshots
    from ansible_collections.kvmsnap.core.plugins.module_utils import _mountinfo as mi
    from ansible_collections.kvmsnap.core.plugins.module_utils import _storage_map as sm

    ds1 = tmp_path / "ds1"
    (ds1 / "nested").mkdir(parents=True)
    text = ("20 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
            "30 20 8:2 / %s rw - ext4 /dev/sdb1 rw\n" % (ds1 / "nested"))
    monkeypatch.setattr(sm, "read_mounts", lambda root="/": mi.parse_mountinfo(text))
    ds = parse_datastores([{"path": str(ds1), "controller": "c", "svm": "s", "volume": "v1"}])
    mapper = StorageMapper(StorageInventory(), ds, [], "/")
    ok = _vm(str(ds1 / "top.img"))
    assert mapper.map_vm(ok) == [] and ok["disks"][0]["volume"] == "v1"
    vm = _vm(str(ds1 / "nested" / "d.img"))
    problems = mapper.map_vm(vm)
    assert vm["disks"][0]["volume"] is None
    reason = problems[0]["reason"]
    assert "is under datastore %s (volume s:v1) but on another mount, %s (ext4 /dev/sdb1)" % (
        ds1, ds1 / "nested") in reason
    # a datastore configured at the nested mount itself wins (longest path): mapped to the volume that holds it
    ds = parse_datastores([{"path": str(ds1), "controller": "c", "svm": "s", "volume": "v1"},
                           {"path": str(ds1 / "nested"), "controller": "c", "svm": "s", "volume": "v2"}])
    vm = _vm(str(ds1 / "nested" / "d.img"))
    assert StorageMapper(StorageInventory(), ds, [], "/").map_vm(vm) == []
    assert vm["disks"][0]["volume"] == "v2" and vm["disks"][0]["path_in_volume"] == "/d.img"


def test_a_disk_below_a_nested_junction_is_mapped_to_the_volume_that_holds_it(tmp_path):
    # /mnt/ds1 is the NFS mount of svm1:/vmstore (volume vmstore); vmstore_images is junctioned at
    # /vmstore/images, so /mnt/ds1/images/... is in vmstore_images, whose snapshots vmstore's do not include
    ds = parse_datastores([{"path": "/mnt/ds1", "controller": "cluster1", "svm": "svm1", "volume": "vmstore"}])
    mapper = StorageMapper(StorageInventory.from_option(INVENTORY), ds, [], host_root(tmp_path))
    vm = _vm("/mnt/ds1/vm1/a.qcow2", "/mnt/ds1/images/web/b.qcow2")
    assert mapper.map_vm(vm) == []
    got = [(d["volume"], d["path_in_volume"], d["datastore"], d["mapped_by"]) for d in vm["disks"]]
    assert got == [("vmstore", "/vm1/a.qcow2", "/mnt/ds1", "datastores"),
                   ("vmstore_images", "/web/b.qcow2", "/mnt/ds1/images", "nfs")]
