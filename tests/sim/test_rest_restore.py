"""REST restores: whole volume (query, dotted and nested body), single file (9.10.1+ vs 9.8),
private CLI restore-file, LUN overwrite from a snapshot, and the restore RBAC."""

from __future__ import annotations

import os

import pytest
from simapi import Client, with_version


def _vdir(c: Client, vol: str = "vol_ds1", svm: str = "svm1"):
    return c.sim.data / "volumes" / svm / vol


def _snap(c: Client, vol_uuid: str, name: str) -> dict:
    return c.snapshots(vol_uuid, name=name)[0]


@pytest.mark.parametrize("form", ["query", "dotted", "nested", "uuid"])
def test_volume_restore_forms(lab, form):
    vdir = _vdir(lab)
    (vdir / "a.img").write_text("one")
    vol = lab.volume("vol_ds1")
    lab.create_snapshot(vol["uuid"], "s1")
    (vdir / "a.img").write_text("two")
    (vdir / "later.txt").write_text("x")
    url = f"/api/storage/volumes/{vol['uuid']}"
    if form == "query":
        r = lab.patch(url, {}, query={"restore_to.snapshot.name": "s1", "return_timeout": 30})
    elif form == "dotted":
        r = lab.patch(url, {"restore_to.snapshot.name": "s1"}, query={"return_timeout": 30})
    elif form == "nested":
        r = lab.patch(url, {"restore_to": {"snapshot": {"name": "s1"}}}, query={"return_timeout": 30})
    else:
        r = lab.patch(url, {}, query={"restore_to.snapshot.uuid": _snap(lab, vol["uuid"], "s1")["uuid"],
                                      "return_timeout": 30})
    assert r.status == 200, r
    assert lab.job(r)["state"] == "success"
    assert (vdir / "a.img").read_text() == "one" and not (vdir / "later.txt").exists()
    assert os.access(vdir / "a.img", os.W_OK) and (vdir / ".snapshot" / "s1").is_dir()


def test_volume_restore_refused_with_newer_snapshots_unless_forced(lab):
    vol = lab.volume("vol_ds1")
    for n in ("s1", "s2", "s3"):
        lab.create_snapshot(vol["uuid"], n)
    url = f"/api/storage/volumes/{vol['uuid']}"
    r = lab.patch(url, {}, query={"restore_to.snapshot.name": "s1"})
    assert r.status == 202
    job = lab.job(r)
    assert job["state"] == "failure" and "newer Snapshot copies exist" in job["message"]
    r = lab.patch(url, {}, query={"restore_to.snapshot.name": "s1", "return_timeout": 10})
    assert r.status == 409 and r["error"]["code"] == "8"
    r = lab.patch(url, {"restore_to": {"snapshot": {"name": "s1", "force": True}}}, query={"return_timeout": 10})
    assert r.status == 200
    assert [s["name"] for s in lab.snapshots(vol["uuid"])] == ["s1"]
    assert sorted(os.listdir(_vdir(lab) / ".snapshot")) == ["s1"]


def test_volume_restore_unknown_snapshot_and_missing_value(lab):
    vol = lab.volume("vol_ds1")
    r = lab.patch(f"/api/storage/volumes/{vol['uuid']}", {}, query={"restore_to.snapshot.name": "nope"})
    assert r.status == 404
    r = lab.patch(f"/api/storage/volumes/{vol['uuid']}", {"restore_to": {}})
    assert r.status == 400 and r["error"]["code"] in ("262177", "2")


def test_single_file_restore_restore_to_path(lab):
    vdir = _vdir(lab)
    (vdir / "vm").mkdir()
    (vdir / "vm" / "disk.qcow2").write_bytes(b"good" * 1024)
    (vdir / "other.txt").write_text("keep me")
    vol = lab.volume("vol_ds1")
    lab.create_snapshot(vol["uuid"], "s1")
    lab.create_snapshot(vol["uuid"], "s2")
    (vdir / "vm" / "disk.qcow2").write_bytes(b"bad!" * 1024)
    (vdir / "other.txt").write_text("changed")
    inode = os.stat(vdir / "vm" / "disk.qcow2").st_ino
    r = lab.patch(f"/api/storage/volumes/{vol['uuid']}", {},
                  query={"restore_to.snapshot.name": "s1", "restore_to.path": "/vm/disk.qcow2",
                         "restore_to.restore_path": "/vm/disk.qcow2", "return_timeout": 30})
    assert r.status == 200 and lab.job(r)["state"] == "success"
    assert (vdir / "vm" / "disk.qcow2").read_bytes() == b"good" * 1024
    assert os.stat(vdir / "vm" / "disk.qcow2").st_ino == inode
    assert (vdir / "other.txt").read_text() == "changed"
    assert [s["name"] for s in lab.snapshots(vol["uuid"])] == ["s1", "s2"]  # file restore keeps newer ones
    # Restore to another path, given as dotted body keys.
    r = lab.patch(f"/api/storage/volumes/{vol['uuid']}",
                  {"restore_to.snapshot.name": "s1", "restore_to.path": "/other.txt",
                   "restore_to.restore_path": "/restored/other.txt"}, query={"return_timeout": 30})
    assert r.status == 200 and (vdir / "restored" / "other.txt").read_text() == "keep me"
    r = lab.patch(f"/api/storage/volumes/{vol['uuid']}", {},
                  query={"restore_to.snapshot.name": "s1", "restore_to.path": "/nope", "return_timeout": 30})
    assert r.status == 404


def test_file_restore_on_98_is_unexpected_argument(fast_sim):
    c = Client(fast_sim(with_version("9.8.0")))
    assert c.get("/api/cluster")["version"] == {"full": c.get("/api/cluster")["version"]["full"],
                                                "generation": 9, "major": 8, "minor": 0}
    vol = c.volume("vol_ds1")
    c.create_snapshot(vol["uuid"], "s1")
    r = c.patch(f"/api/storage/volumes/{vol['uuid']}", {},
                query={"restore_to.snapshot.name": "s1", "restore_to.path": "/x"})
    assert r.status == 400 and r["error"]["code"] == "262179" and "restore_to.path" in r["error"]["message"]
    # The whole-volume restore exists on 9.8.
    r = c.patch(f"/api/storage/volumes/{vol['uuid']}", {},
                query={"restore_to.snapshot.name": "s1", "return_timeout": 5})
    assert r.status == 200


def test_private_cli_restore_file(lab):
    vdir = _vdir(lab)
    (vdir / "f.img").write_text("v1")
    vol = lab.volume("vol_ds1")
    lab.create_snapshot(vol["uuid"], "s1")
    (vdir / "f.img").write_text("v2")
    r = lab.post("/api/private/cli/volume/snapshot/restore-file",
                 {"vserver": "svm1", "volume": "vol_ds1", "snapshot": "s1", "path": "/f.img",
                  "restore_path": "/f.img"})
    assert r.status == 200 and (vdir / "f.img").read_text() == "v1"
    r = lab.post("/api/private/cli/volume/snapshot/restore-file",
                 {"vserver": "svm1", "volume": "nosuch", "snapshot": "s1", "path": "/f.img"})
    assert r.status == 404 and r["error"]["code"] == "917927"


def test_lun_fields_and_clone_overwrite(lab):
    luns = lab.get("/api/storage/luns", fields="serial_number,name,location.volume.name,svm.name,space.size")
    lun = luns["records"][0]
    assert lun["name"] == "/vol/vol_san/lun1" and lun["serial_number"] == "D31sh#DQGQUu"
    assert lun["location"]["volume"]["name"] == "vol_san" and lun["svm"]["name"] == "svm1"
    # Serials may hold query characters: a quoted filter matches them literally.
    assert lab.get("/api/storage/luns", serial_number='"D31sh#DQGQUu"')["num_records"] == 1
    path = _vdir(lab, "vol_san") / "lun1"
    assert path.stat().st_size == 1024 * 1024
    with open(path, "r+b") as fh:
        fh.write(b"GOOD")
    vol = lab.volume("vol_san")
    lab.create_snapshot(vol["uuid"], "s1")
    with open(path, "r+b") as fh:
        fh.write(b"BAD!")
    r = lab.patch(f"/api/storage/luns/{lun['uuid']}", {"clone": {"source": {"name": "/vol/vol_san/.snapshot/s1/lun1"}}})
    assert r.status == 200
    assert path.read_bytes()[:4] == b"GOOD"
    r = lab.patch(f"/api/storage/luns/{lun['uuid']}", {"clone.source.name": "/vol/vol_ds1/.snapshot/s1/lun1"})
    assert r.status == 400
    r = lab.patch("/api/storage/luns/00000000-0000-0000-0000-000000000000",
                  {"clone.source.name": "/vol/vol_san/.snapshot/s1/lun1"})
    assert r.status == 404 and r["error"]["code"] == "5374875"


def test_backup_role_cannot_restore_but_can_snapshot(lab):
    b = Client(lab.sim, user="backup", password="b")
    vol = b.volume("vol_ds1")
    assert b.create_snapshot(vol["uuid"], "s1").status == 201
    r = b.patch(f"/api/storage/volumes/{vol['uuid']}", {}, query={"restore_to.snapshot.name": "s1"})
    assert r.status == 403 and r["error"]["code"] == "6"
    r = b.post("/api/private/cli/volume/snapshot/restore-file",
               {"vserver": "svm1", "volume": "vol_ds1", "snapshot": "s1", "path": "/x"})
    assert r.status == 403
    nd = Client(lab.sim, user="nodelete", password="n")
    snap = nd.snapshots(vol["uuid"])[0]
    assert nd.delete(f"/api/storage/volumes/{vol['uuid']}/snapshots/{snap['uuid']}").status == 403
    assert b.delete(f"/api/storage/volumes/{vol['uuid']}/snapshots/{snap['uuid']}").status == 202
