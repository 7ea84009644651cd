"""State and certificates survive a restart; the btrfs storage path (root only)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.sim_fixtures import REPO, start_sim
from simapi import LAB_CONFIG, Client

FAST = ["--latency-scale", "0"]


def test_restart_keeps_state_ca_and_data(tmp_path):
    data = tmp_path / "data"
    sim = start_sim(data, LAB_CONFIG, extra_args=FAST)
    try:
        c = Client(sim)
        vdir = data / "volumes" / "svm1" / "vol_ds1"
        (vdir / "disk.img").write_text("persist")
        vol = c.volume("vol_ds1")
        job_reply = c.create_snapshot(vol["uuid"], "s1", comment="kept", snapmirror_label="daily")
        snaps = c.snapshots(vol["uuid"])
        r = c.post("/api/application/consistency-groups", {"name": "cg1", "svm": {"name": "svm1"}, "volumes": [
            {"name": "vol_ds2", "provisioning_options": {"action": "add"}}]}, query={"return_timeout": 10})
        assert r.status == 201
        rel = c.get("/api/snapmirror/relationships", destination__path="svm_dr:vol_ds1_vault")["records"][0]
        c.post(f"/api/snapmirror/relationships/{rel['uuid']}/transfers", {}, query={"return_timeout": 10})
        ca_before = Path(sim.ca_file).read_bytes()
        cert_before = (data / "server.pem").read_bytes()
        lun_before = c.get("/api/storage/luns", fields="serial_number,uuid")["records"]
    finally:
        sim.stop()
    assert sim.proc.returncode == 0  # SIGTERM is a clean exit
    sim2 = start_sim(data, LAB_CONFIG, extra_args=FAST)
    try:
        c2 = Client(sim2)
        assert Path(sim2.ca_file).read_bytes() == ca_before and (data / "server.pem").read_bytes() == cert_before
        vol2 = c2.volume("vol_ds1")
        assert vol2["uuid"] == vol["uuid"]
        assert c2.snapshots(vol2["uuid"]) == snaps
        assert c2.job(job_reply)["state"] == "success"
        assert c2.get("/api/application/consistency-groups")["records"][0]["name"] == "cg1"
        dst = c2.volume("vol_ds1_vault", svm="svm_dr")
        assert [s["name"] for s in c2.snapshots(dst["uuid"])] == ["s1"]
        assert c2.get("/api/storage/luns", fields="serial_number,uuid")["records"] == lun_before
        assert (data / "volumes" / "svm1" / "vol_ds1" / ".snapshot" / "s1" / "disk.img").read_text() == "persist"
        assert (data / "state.json").exists() and not (data / "state.json.tmp").exists()
    finally:
        sim2.stop()


def test_bad_config_exits_with_message(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("volumes: [{name: v, svm: nosuch}]\n")
    res = subprocess.run([str(REPO / "tests/lab/ontap-sim"), "--data", str(tmp_path / "d"), "--config", str(bad)],
                         capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 2 and "unknown svm" in res.stderr and res.stdout == ""


def _btrfs_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to loop-mount a btrfs scratch file system"
    if not shutil.which("mkfs.btrfs") or not shutil.which("btrfs"):
        return "btrfs-progs (mkfs.btrfs, btrfs) not installed"
    return None


@pytest.fixture
def btrfs_dir(tmp_path):
    reason = _btrfs_reason()
    if reason:
        pytest.skip(reason)
    mnt = tmp_path / "btrfs"
    res = subprocess.run([str(REPO / "tests/lab/btrfs-scratch"), str(mnt), "1G"], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a loop btrfs here: {res.stderr.strip()}")
    assert res.stdout.strip() == str(mnt)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_btrfs_volumes_are_subvolumes_and_snapshots_read_only(btrfs_dir):
    sim = start_sim(btrfs_dir / "sim", extra_args=FAST)
    try:
        c = Client(sim)
        assert c.admin("GET", "info")["storage"] == "btrfs"
        vdir = btrfs_dir / "sim" / "volumes" / "svm1" / "vol_ds1"
        assert os.stat(vdir).st_ino == 256  # a subvolume root
        with open(vdir / "disk.img", "wb") as fh:
            fh.write(os.urandom(1 << 20))
        original = (vdir / "disk.img").read_bytes()
        vol = c.volume("vol_ds1")
        c.create_snapshot(vol["uuid"], "s1")
        c.create_snapshot(vol["uuid"], "s2")
        snap = vdir / ".snapshot" / "s1"
        assert (snap / "disk.img").read_bytes() == original
        with pytest.raises(OSError):
            (snap / "disk.img").write_bytes(b"x")  # read-only subvolume, even for root
        assert not any((vdir / ".snapshot" / "s2" / ".snapshot").iterdir())
        (vdir / "disk.img").write_bytes(b"changed")
        r = c.patch(f"/api/storage/volumes/{vol['uuid']}", {}, query={
            "restore_to.snapshot.name": "s1", "restore_to.path": "/disk.img", "return_timeout": 10})
        assert r.status == 200 and (vdir / "disk.img").read_bytes() == original
        r = c.patch(f"/api/storage/volumes/{vol['uuid']}", {"restore_to": {"snapshot": {"name": "s1", "force": True}}},
                    query={"return_timeout": 10})
        assert r.status == 200 and [s["name"] for s in c.snapshots(vol["uuid"])] == ["s1"]
        assert not (vdir / ".snapshot" / "s2").exists()
        c.admin("POST", "reset")  # wipes subvolumes, nested ones first
        assert not any((vdir / ".snapshot").iterdir())
    finally:
        sim.stop()


def test_unchanged_files_are_shared_between_snapshots(fresh):
    # Without btrfs, a file unchanged since the previous snapshot is hard-linked to its copy there.
    if fresh.admin("GET", "info")["storage"] != "reflink":
        pytest.skip("the sharing applies to the copy (non-btrfs) storage only")
    vdir = fresh.sim.data / "volumes" / "svm1" / "vol_ds1"
    big, hot = vdir / "big.img", vdir / "hot.img"
    big.write_bytes(b"x" * 65536)
    hot.write_bytes(b"h1")
    old = os.stat(big).st_mtime - 3600
    os.utime(big, (old, old))  # last written an hour ago: stable
    vol = fresh.volume("vol_ds1")
    fresh.create_snapshot(vol["uuid"], "s1")
    fresh.create_snapshot(vol["uuid"], "s2")
    snaps = vdir / ".snapshot"
    assert os.stat(snaps / "s1" / "big.img").st_ino == os.stat(snaps / "s2" / "big.img").st_ino
    # Recently written files are always copied (coarse mtime clocks), even when unchanged.
    assert os.stat(snaps / "s1" / "hot.img").st_ino != os.stat(snaps / "s2" / "hot.img").st_ino
    big.write_bytes(b"y" * 65536)  # same size, new mtime
    fresh.create_snapshot(vol["uuid"], "s3")
    assert (snaps / "s3" / "big.img").read_bytes() == b"y" * 65536
    assert (snaps / "s2" / "big.img").read_bytes() == b"x" * 65536
    # Deleting s1 keeps s2's shared copy.
    s1 = fresh.snapshots(vol["uuid"], name="s1")[0]
    fresh.delete(f"/api/storage/volumes/{vol['uuid']}/snapshots/{s1['uuid']}", query={"return_timeout": 5})
    assert (snaps / "s2" / "big.img").read_bytes() == b"x" * 65536
    assert not os.stat(snaps / "s2" / "big.img").st_mode & 0o222  # still read-only
    # Restoring from s2 gives the active file system its own writable copy.
    fresh.patch(f"/api/storage/volumes/{vol['uuid']}", {},
                query={"restore_to.snapshot.name": "s2", "restore_to.snapshot.force": "true", "return_timeout": 5})
    assert os.stat(big).st_ino != os.stat(snaps / "s2" / "big.img").st_ino
    big.write_bytes(b"z")
    assert (snaps / "s2" / "big.img").read_bytes() == b"x" * 65536


def test_a_snapshot_does_not_hold_a_file_system_mounted_inside_the_volume(fresh, tmp_path):
    # As on ONTAP, where a volume mounted at a junction inside another is not part of the other's snapshots
    # (and as btrfs subvolume snapshots behave): the mount point is there, empty, its files are not.
    if os.geteuid() != 0:
        pytest.skip("a bind mount needs root")
    vdir = fresh.sim.data / "volumes" / "svm1" / "vol_ds1"
    other = tmp_path / "other"
    other.mkdir()
    (other / "d.img").write_bytes(b"x" * 512)
    (vdir / "nested").mkdir()
    (vdir / "own.img").write_bytes(b"o")
    subprocess.run(["mount", "--bind", str(other), str(vdir / "nested")], check=True)
    try:
        vol = fresh.volume("vol_ds1")
        fresh.create_snapshot(vol["uuid"], "s1")
    finally:
        subprocess.run(["umount", str(vdir / "nested")], check=True)
    snap = vdir / ".snapshot" / "s1"
    assert (snap / "own.img").read_bytes() == b"o"
    assert (snap / "nested").is_dir() and os.listdir(snap / "nested") == []
