"""The one datastore → path-in-volume mapping (_ds_paths) and the stale-manifest rule, on mount-table fixtures.

docs/dev/faults.md#datastore-offset: paths inside a datastore that is not the volume root.
docs/dev/faults.md#stale-manifest: a manifest left in .kvmsnap/ by an earlier run is no backup of a later snapshot.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _ds_paths
from ansible_collections.kvmsnap.core.plugins.module_utils import _verify as vf
from ansible_collections.kvmsnap.core.plugins.module_utils._storage_map import (
    StorageInventory,
    StorageMapper,
    parse_datastores,
    summarize,
)
from ansible_collections.kvmsnap.core.plugins.plugin_utils._catalog import CatalogError, select, stale_reason
from ansible_collections.kvmsnap.core.plugins.plugin_utils._plan import normalize, restore_plan
from ansible_collections.kvmsnap.core.plugins.plugin_utils._settings import SettingsError, resolve

FIX = Path(__file__).parent / "fixtures" / "mountinfo"
INVENTORY = [{"controller": "cluster1", "svm": "svm1", "lifs": ["10.10.10.11"],
              "volumes": [{"name": "svm1_root", "junction_path": "/"},
                          {"name": "vmstore", "junction_path": "/vmstore"},
                          {"name": "vmstore_images", "junction_path": "/vmstore/images"}]}]


def host_root(tmp_path: Path, name: str) -> str:
    (tmp_path / "host" / "proc" / "self").mkdir(parents=True)
    shutil.copy(FIX / name, tmp_path / "host" / "proc" / "self" / "mountinfo")
    return str(tmp_path / "host")


def _vm(*paths):
    return {"name": "vm1", "uuid": "u1", "disks": [
        {"type": "file", "device": "disk", "path": p, "target": "vd" + chr(97 + i), "backing_chain": []}
        for i, p in enumerate(paths)]}


# ------------------------------------------------------------------ the mapping itself
@pytest.mark.parametrize("offset, rel, expect", [
    ("/", "/a.img", "/a.img"), ("/images", "/a.img", "/images/a.img"), ("/sub/dir/", "vm/a.img", "/sub/dir/vm/a.img"),
    (None, "/x", "/x")])
def test_in_volume(offset, rel, expect):
    assert _ds_paths.in_volume(offset, rel) == expect


def test_offset_from_and_rel_to():
    assert _ds_paths.offset_from("/sub/dir/vm/a.img", "/vm/a.img") == "/sub/dir"
    assert _ds_paths.offset_from("/a.img", "/a.img") == "/"
    assert _ds_paths.offset_from("/other/a.img", "/vm/a.img") is None
    assert _ds_paths.rel_to("/srv/vol/images", "/srv/vol/images/x/a.img") == "/x/a.img"
    assert _ds_paths.rel_to("/srv/vol/images", "/srv/vol/imagesX/a.img") is None
    assert _ds_paths.disk_offset({"path": "/a.img", "path_in_volume": "/images/a.img"}) == "/images"
    assert _ds_paths.disk_offset({"path": "/a.img"}) == "/"  # manifests written before the offset existed


def test_snapshot_dir_of_a_datastore_in_a_subdirectory(tmp_path):
    # the volume root is an ancestor on this host (same mount): .snapshot lies there, the datastore's copy below it
    (tmp_path / "vol1" / "images").mkdir(parents=True)
    vol = str(tmp_path / "vol1")
    assert _ds_paths.snapshot_dir(vol + "/images", "/images", "s") == vol + "/.snapshot/s/images"
    assert _ds_paths.snapshot_dir(vol, "/", "s") == vol + "/.snapshot/s"
    # an NFS mount of a subdirectory: ONTAP serves .snapshot inside the mounted directory itself
    assert _ds_paths.snapshot_dir("/mnt/sub", "/sub/dir", "s") == "/mnt/sub/.snapshot/s"
    # the host path merely ends like the offset (svm:/vol/images mounted at /srv/images): /srv is no volume root
    assert _ds_paths.snapshot_dir("/proc/images", "/images", "s") == "/proc/images/.snapshot/s"


# ------------------------------------------------------------------ the mount table (tests/unit/fixtures/mountinfo)
def test_nfs_mount_of_a_subdirectory_has_its_junction_offset(tmp_path):
    mapper = StorageMapper(StorageInventory.from_option(INVENTORY), [], [], host_root(tmp_path, "kvm2.mountinfo"))
    vm = _vm("/mnt/sub/vm1/a.img")
    assert mapper.map_vm(vm) == []
    d = vm["disks"][0]
    assert (d["volume"], d["path_in_volume"], d["datastore"], d["datastore_in_volume"]) == (
        "vmstore", "/sub/dir/vm1/a.img", "/mnt/sub", "/sub/dir")
    datastores = summarize([vm])[1]
    assert datastores[0]["path"] == "/mnt/sub" and datastores[0]["path_in_volume"] == "/sub/dir"


def test_a_bind_mount_below_the_export_has_its_offset(tmp_path):
    # kvm1: /srv/web-images is /images/web of the mount of 10.10.10.11:/vmstore -> volume vmstore_images, /web
    mapper = StorageMapper(StorageInventory.from_option(INVENTORY), [], [], host_root(tmp_path, "kvm1.mountinfo"))
    vm = _vm("/srv/web-images/web01.qcow2")
    assert mapper.map_vm(vm) == []
    assert vm["disks"][0]["datastore_in_volume"] == "/web"


def test_configured_datastore_in_a_subdirectory_of_an_nfs_mount_takes_the_offset_from_the_mount_table(tmp_path):
    root = host_root(tmp_path, "kvm2.mountinfo")
    ds = parse_datastores([{"path": "/mnt/whole/vmdisks", "controller": "cluster1", "svm": "svm1",
                            "volume": "vmstore"}])
    mapper = StorageMapper(StorageInventory.from_option(INVENTORY), ds, [], root)
    vm = _vm("/mnt/whole/vmdisks/a.img")
    assert mapper.map_vm(vm) == []
    d = vm["disks"][0]
    assert (d["mapped_by"], d["path_in_volume"], d["datastore_in_volume"]) == ("datastores", "/vmdisks/a.img",
                                                                               "/vmdisks")


def test_configured_offset_that_the_mount_table_contradicts_is_refused(tmp_path):
    root = host_root(tmp_path, "kvm2.mountinfo")
    ds = parse_datastores([{"path": "/mnt/whole/vmdisks", "controller": "cluster1", "svm": "svm1",
                            "volume": "vmstore", "path_in_volume": "/"}])
    ds[0]["path_in_volume"] = "/elsewhere"
    mapper = StorageMapper(StorageInventory.from_option(INVENTORY), ds, [], root)
    problems = mapper.map_vm(_vm("/mnt/whole/vmdisks/a.img"))
    assert len(problems) == 1 and "path_in_volume /elsewhere, but the mount table shows it at /vmdisks" in \
        problems[0]["reason"]


def test_configured_local_datastore_uses_its_path_in_volume(tmp_path):
    ds = parse_datastores([{"path": "/srv/vol1/images", "controller": "c1", "svm": "svm1", "volume": "vol1",
                            "path_in_volume": "/images"}])
    mapper = StorageMapper(StorageInventory(), ds, [], host_root(tmp_path, "kvm2.mountinfo"))
    vm = _vm("/srv/vol1/images/x/a.img")
    assert mapper.map_vm(vm) == []
    assert vm["disks"][0]["path_in_volume"] == "/images/x/a.img"


# ------------------------------------------------------------------ settings, plan, restore, verification
CTRL = {"c1": {"ontap_hostname": "10.0.0.1", "ontap_username": "u", "has_password": True}}
DS = [{"path": "/srv/vol1/images", "controller": "c1", "svm": "svm1", "volume": "vol1", "path_in_volume": "/images"}]


def test_settings_keep_the_offset_and_refuse_dotdot():
    s = resolve({"kvmsnap_datastores": DS}, {}, "backup", CTRL)
    assert s["datastores"][0]["path_in_volume"] == "/images"
    assert "path_in_volume" not in resolve({"kvmsnap_datastores": [dict(DS[0], path_in_volume=None)]}, {}, "backup",
                                           CTRL)["datastores"][0]
    with pytest.raises(SettingsError, match="path_in_volume"):
        resolve({"kvmsnap_datastores": [dict(DS[0], path_in_volume="/a/../b")]}, {}, "backup", CTRL)


def test_normalize_keeps_path_in_datastore_and_path_in_volume():
    s = resolve({"kvmsnap_datastores": DS}, {}, "backup", CTRL)
    vms = normalize("h1", {"vms": [{"name": "a", "uuid": "u1", "state": "running", "disks": [
        {"path": "/srv/vol1/images/a.img", "target": "vda", "device": "disk", "type": "file"}]}]}, s, CTRL)
    d = vms[0]["disks"][0]
    assert (d["datastore"], d["path"], d["path_in_volume"]) == ("/srv/vol1/images", "/a.img", "/images/a.img")


def _man(snapshot="s1", run="r1", piv="/evil.img"):
    return {"vm": {"name": "a", "uuid": "u1", "state": "running"}, "host": "h1", "domain_xml_text": "<domain/>",
            "nvram_file": None, "datastores": ["/srv/vol1/images"], "snapshot": snapshot, "run_id": run,
            "disks": [{"controller": "c1", "svm": "svm1", "volume": "vol1", "path": "/a.img", "path_in_volume": piv,
                       "datastore": "/srv/vol1/images", "source": "/srv/vol1/images/a.img"}]}


def test_restore_writes_the_path_in_volume_from_the_hosts_offset_not_the_manifests():
    host_ds = [dict(DS[0], path_in_volume="/images")]
    per_host = {"h1": {"manifests": [_man()], "invalid": [], "current": {}, "datastores": host_ds}}
    plan = restore_plan(per_host, ["a"], {"name": "s1", "run": "r1", "volumes": ["c1:svm1:vol1"]})
    assert plan["errors"] == []
    assert plan["volumes"][0]["files"] == ["/images/a.img"]
    assert plan["hosts"]["h1"][0]["disks"][0]["path_in_volume"] == "/images/a.img"


def test_verification_reads_the_snapshot_at_the_volume_root(tmp_path):
    vol = tmp_path / "vol1"
    (vol / "images").mkdir(parents=True)
    (vol / "images" / "a.img").write_bytes(b"x" * 512)
    (vol / ".snapshot" / "s1" / "images").mkdir(parents=True)
    (vol / ".snapshot" / "s1" / "images" / "a.img").write_bytes(b"x" * 512)
    disk = {"target": "vda", "source": str(vol / "images" / "a.img"), "format": "raw",
            "datastore": str(vol / "images"), "path": "/a.img", "path_in_volume": "/images/a.img"}
    assert vf.check_disk(disk, "s1") is None
    bad = vf.check_disk(dict(disk, path_in_volume="/a.img"), "s1")  # the old reading: datastore = volume root
    assert bad is not None and "not in the snapshot" in bad["reason"] or "does not exist" in bad["reason"]


# ------------------------------------------------------------------ stale manifests (docs/dev/faults.md#stale-manifest)
GOOD = [{"name": "s1", "run": "r1", "ours": True, "complete": True, "state": "good", "policy": "daily"},
        {"name": "s2", "run": "r2", "ours": True, "complete": True, "state": "good", "policy": "daily"}]


def test_stale_reason():
    assert stale_reason({"snapshot": "s1", "run_id": "r1"}, GOOD[0]) is None
    assert "from snapshot s1 (run r1)" in stale_reason({"snapshot": "s1", "run_id": "r1"}, GOOD[1])
    assert "from run rX" in stale_reason({"snapshot": "s2", "run_id": "rX"}, GOOD[1])
    assert stale_reason({}, GOOD[1]) is None  # a manifest without snapshot/run (old format) is not judged here


def test_latest_is_per_vm_the_newest_snapshot_that_protected_it():
    protected = {"s1": [{"name": "x", "uuid": "ux", "snapshot": "s1", "run_id": "r1"},
                        {"name": "y", "uuid": "uy", "snapshot": "s1", "run_id": "r1"}],
                 "s2": [{"name": "x", "uuid": "ux", "snapshot": "s1", "run_id": "r1"},  # left by run r1
                        {"name": "y", "uuid": "uy", "snapshot": "s2", "run_id": "r2"}]}
    latest = {"kind": "latest", "value": "latest"}
    assert select(GOOD, latest, protected, ["x"])["name"] == "s1"
    assert select(GOOD, latest, protected, ["y"])["name"] == "s2"
    assert select(GOOD, latest, protected, ["x", "y"])["name"] == "s1"
    assert select(GOOD, latest)["name"] == "s2"  # 'all': the newest good set; stale VMs in it are skipped
    with pytest.raises(CatalogError, match="no good backup protected VM z"):
        select(GOOD, latest, protected, ["z"])


def test_restoring_a_vm_from_a_snapshot_that_did_not_protect_it_is_refused():
    per_host = {"h1": {"manifests": [_man("s1", "r1")], "invalid": [], "current": {},
                       "datastores": [dict(DS[0], path_in_volume="/images")]}}
    plan = restore_plan(per_host, ["a"], {"name": "s2", "run": "r2", "volumes": ["c1:svm1:vol1"]})
    assert plan["errors"] == ["VM a was not protected by snapshot s2: its manifest there is from snapshot s1 (run r1), "
                              "left in .kvmsnap/ by that run; restore it from a snapshot that protected it "
                              "(kvmsnap_restore_snapshot=latest picks the newest)"]
    assert plan["hosts"]["h1"] == []
    everything = restore_plan(per_host, "all", {"name": "s2", "run": "r2", "volumes": ["c1:svm1:vol1"]})
    assert everything["hosts"]["h1"] == [] and "was not protected by snapshot s2" in everything["notes"][0]


def test_verification_refuses_a_disk_on_an_overlay(tmp_path):
    vol = tmp_path / "vol1"
    name = ".kvmsnap-overlay.6695eb01-f6a4-8304-79aa-97f2502e193f.vda.backup-1.qcow2"
    for d in (vol / "images", vol / ".snapshot" / "s1" / "images"):
        d.mkdir(parents=True)
        (d / name).write_bytes(b"x" * 512)  # present in the snapshot, and still never the backup
    disk = {"target": "vda", "source": str(vol / "images" / name), "format": "qcow2",
            "datastore": str(vol / "images"), "path": "/" + name, "path_in_volume": "/images/" + name}
    bad = vf.check_disk(disk, "s1")
    assert bad is not None and "restores never use overlay files" in bad["reason"]
    (vol / "images" / "a.img").write_bytes(b"x" * 512)
    (vol / ".snapshot" / "s1" / "images" / "a.img").write_bytes(b"x" * 512)
    assert vf.check_disk(dict(disk, source=str(vol / "images" / "a.img"), path="/a.img",
                              path_in_volume="/images/a.img", format="raw"), "s1") is None
