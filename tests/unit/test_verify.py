"""_verify: is a VM's backup in the snapshot (NFS .snapshot view)? Pure path logic on a temporary tree."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.kvmsnap.core.plugins.module_utils import _verify as vf

UUID = "0b0e0d3c-54c3-4e3d-8f4b-1f6f1c2d3e4f"
SNAP = "kvmsnap-daily_t1"


def _vm(ds, name="web1", nvram=False, source=None, fmt="raw"):
    return {"name": name, "uuid": UUID, "disks": [{"target": "vda", "source": source or str(ds / "web1.img"),
                                                   "format": fmt, "datastore": str(ds), "path": "/web1.img",
                                                   "lun": None}]}


def _snapshot(ds, manifest=None, disk=b"x" * 512, nvram=False, run_id="r1"):
    """A datastore with a live image and a snapshot holding the manifest and the image."""
    (ds / "web1.img").write_bytes(disk or b"x")
    snap = ds / ".snapshot" / SNAP
    mdir = snap / ".kvmsnap" / UUID
    mdir.mkdir(parents=True)
    doc = manifest or {"kvmsnap_manifest": 1, "vm": {"name": "web1", "uuid": UUID}, "snapshot": SNAP,
                       "run_id": run_id, "nvram": {"file": "nvram"} if nvram else None}
    (mdir / "manifest.json").write_text(json.dumps(doc))
    (mdir / "domain.xml").write_text("<domain/>")
    if nvram:
        (mdir / "nvram").write_bytes(b"n")
    if disk is not None:
        (snap / "web1.img").write_bytes(disk)
    return snap


def test_a_complete_backup_is_protected(tmp_path):
    _snapshot(tmp_path, nvram=True)
    res = vf.check_vm(_vm(tmp_path), SNAP, run_id="r1")
    assert res == {"name": "web1", "uuid": UUID, "protected": True, "missing": [], "reasons": []}


def test_a_disk_missing_from_the_snapshot_is_named(tmp_path):
    _snapshot(tmp_path, disk=None)
    res = vf.check_vm(_vm(tmp_path), SNAP)
    assert not res["protected"]
    assert res["missing"] == [str(tmp_path / ".snapshot" / SNAP / "web1.img")]
    assert "not in the snapshot" in res["reasons"][0]


def test_a_symlink_inside_the_snapshot_does_not_count(tmp_path):
    # a datastore subdirectory that is a symlink to somewhere outside the volume: the snapshot holds the link only
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "web1.img").write_bytes(b"x" * 512)
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "images").symlink_to(outside)
    snap = _snapshot(ds)
    (snap / "images").symlink_to(outside)
    vm = _vm(ds, source=str(ds / "images" / "web1.img"))
    res = vf.check_vm(vm, SNAP)
    assert not res["protected"]
    assert res["missing"] == [str(snap / "images" / "web1.img")]
    assert "symlink" in res["reasons"][0] and str(outside) in res["reasons"][0]


def test_no_snapshot_view_at_all(tmp_path):
    (tmp_path / "web1.img").write_bytes(b"x")
    res = vf.check_vm(_vm(tmp_path), SNAP)
    assert not res["protected"]
    assert len(res["missing"]) == 2  # the disk and the manifest
    assert all("does not exist" in r for r in res["reasons"])


@pytest.mark.parametrize("doc,expect", [
    ({"kvmsnap_manifest": 1, "vm": {"name": "other", "uuid": UUID}, "snapshot": SNAP}, "names VM 'other'"),
    ({"kvmsnap_manifest": 1, "vm": {"name": "web1", "uuid": UUID}, "snapshot": "old"}, "belongs to snapshot 'old'"),
    ({"kvmsnap_manifest": 1, "vm": {"name": "web1", "uuid": UUID}, "snapshot": SNAP, "run_id": "r0"},
     "belongs to run 'r0'"),
])
def test_a_manifest_of_another_vm_snapshot_or_run_is_refused(tmp_path, doc, expect):
    _snapshot(tmp_path, manifest=doc)
    res = vf.check_vm(_vm(tmp_path), SNAP, run_id="r1")
    assert not res["protected"] and expect in res["reasons"][0], res


def test_manifest_that_does_not_parse(tmp_path):
    snap = _snapshot(tmp_path)
    os.chmod(snap / ".kvmsnap" / UUID / "manifest.json", 0o600)
    (snap / ".kvmsnap" / UUID / "manifest.json").write_text("{not json")
    res = vf.check_vm(_vm(tmp_path), SNAP)
    assert not res["protected"] and "does not parse" in res["reasons"][0]


def test_saved_nvram_must_be_in_the_snapshot(tmp_path):
    snap = _snapshot(tmp_path, nvram=True)
    (snap / ".kvmsnap" / UUID / "nvram").unlink()
    res = vf.check_vm(_vm(tmp_path), SNAP)
    assert res["missing"] == [str(snap / ".kvmsnap" / UUID / "nvram")]


def test_raw_image_of_another_size_and_empty_copies(tmp_path):
    snap = _snapshot(tmp_path)
    (tmp_path / "web1.img").write_bytes(b"x" * 1024)
    res = vf.check_vm(_vm(tmp_path), SNAP)
    assert "512 bytes in the snapshot, 1024 bytes live" in res["reasons"][0]
    assert vf.check_vm(_vm(tmp_path), SNAP, compare_live=False)["protected"]  # the restore's view
    assert vf.check_vm(_vm(tmp_path, fmt="qcow2"), SNAP)["protected"]  # qcow2 images grow
    (snap / "web1.img").write_bytes(b"")
    assert "empty" in vf.check_vm(_vm(tmp_path), SNAP, compare_live=False)["reasons"][0]


def test_luns_are_left_to_the_controller_and_unmapped_disks_are_named(tmp_path):
    lun_vm = {"name": "db", "uuid": UUID, "disks": [{"target": "vda", "source": "/dev/mapper/x", "lun": "/vol/v/l",
                                                    "datastore": None}]}
    assert vf.check_vm(lun_vm, SNAP)["protected"]
    lost = {"name": "db", "uuid": UUID, "disks": [{"target": "vdb", "source": "/var/tmp/x.img", "datastore": None}]}
    res = vf.check_vm(lost, SNAP)
    assert res["missing"] == ["/var/tmp/x.img"] and "on no datastore" in res["reasons"][0]


def test_relative_path_prefers_the_source_under_the_datastore():
    assert vf.rel_in_datastore({"datastore": "/mnt/ds1/", "source": "/mnt/ds1/a/b.img", "path": "/x"}) == "/a/b.img"
    assert vf.rel_in_datastore({"datastore": "/mnt/ds1", "source": "/other/b.img", "path": "b.img"}) == "/b.img"
    assert vf.rel_in_datastore({"datastore": "/mnt/ds1", "lun": "/vol/v/l"}) is None


def test_summary_names_host_vm_snapshot_and_paths(tmp_path):
    res = vf.check_vm(_vm(tmp_path), SNAP)
    line = vf.summary("kvm1", SNAP, [res])[0]
    assert line.startswith("kvm1: VM web1 is not in snapshot %s: " % SNAP) and "web1.img" in line


# ---- LUN disks: checked against the controllers' answers (ontap_snapshot_info files) -----------------
LUN_DISK = {"target": "vda", "source": "/dev/mapper/3600a0980", "controller": "c1", "svm": "svm1",
            "volume": "vol_san", "lun": "/vol/vol_san/lun1", "datastore": None, "path": None}


def _answer(**kw):
    entry = {"svm": "svm1", "volume": "vol_san", "path": "/vol/vol_san/lun1", "snapshot": SNAP, "present": True,
             "type": "lun", "size": 8 << 20, "lun_size": 8 << 20}
    entry.update(kw)
    return {"c1": [entry]}


@pytest.mark.parametrize("answer, compare_live, why", [
    (_answer(), True, None),
    (_answer(present=False, type=None, size=None), True, "not in the snapshot"),
    (_answer(type="directory"), True, "is a directory in the snapshot, not a LUN"),
    (_answer(size=4 << 20), True, "4194304 bytes in the snapshot, the LUN has 8388608 bytes"),
    (_answer(size=4 << 20), False, None),  # restore: the live LUN may have been resized since
    (_answer(size=0), False, "the copy in the snapshot is empty"),
    ({"c1": "c1: connection refused"}, True, "could not be checked in the snapshot: c1: connection refused"),
    ({}, True, "controller c1 was not asked"),
    ({"c1": []}, True, "controller c1 did not report it"),
])
def test_lun_disk_checked_against_the_controller_answer(answer, compare_live, why):
    """verify-before-ok (docs/dev/faults.md#verify-before-ok), SAN half."""
    vm = {"name": "db1", "uuid": UUID, "disks": [LUN_DISK]}
    res = vf.check_vm(vm, SNAP, compare_live=compare_live, lun_files=answer)
    if why is None:
        assert res["protected"] and res["missing"] == []
    else:
        assert not res["protected"] and res["missing"] == ["c1:svm1:/vol/vol_san/.snapshot/%s/lun1" % SNAP]
        assert why in res["reasons"][0] and "LUN svm1:/vol/vol_san/lun1 on c1" in res["reasons"][0]


def test_lun_disks_unchecked_without_answers_and_what_to_ask():
    vm = {"name": "db1", "uuid": UUID, "disks": [LUN_DISK, dict(LUN_DISK, target="vdb")]}
    assert vf.check_vm(vm, SNAP, lun_files=None)["protected"]
    assert vf.lun_files_wanted([vm]) == {"c1": ["svm1:/vol/vol_san/lun1"]}
