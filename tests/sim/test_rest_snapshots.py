"""REST snapshots: async jobs, Location, fields, .snapshot visibility, rename/modify/delete."""

from __future__ import annotations

import datetime as dt
import os
import re
import time

from simapi import Client

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


def test_post_returns_202_job_and_location(fresh):
    vol = fresh.volume("vol_ds1")
    r = fresh.post(f"/api/storage/volumes/{vol['uuid']}/snapshots", {"name": "s1", "comment": "c1"})
    assert r.status == 202
    assert set(r["job"]) == {"uuid", "_links"}
    assert r.headers["Location"] == f"/api/storage/volumes/{vol['uuid']}/snapshots?name=s1"
    job = fresh.job(r)
    assert job["state"] == "success" and job["code"] == 0 and job["message"] == "success"
    assert ISO.match(job["start_time"]) and ISO.match(job["end_time"])
    assert job["description"] == f"POST /api/storage/volumes/{vol['uuid']}/snapshots"
    loc = fresh.call("GET", r.headers["Location"])
    assert loc["records"][0]["name"] == "s1"


def test_return_timeout_gives_201_with_terminal_job(fresh):
    vol = fresh.volume("vol_ds1")
    r = fresh.create_snapshot(vol["uuid"], "s1")
    assert r.status == 201 and fresh.job(r)["state"] == "success"
    r = fresh.post(f"/api/storage/volumes/{vol['uuid']}/snapshots", {"name": "s2"},
                   query={"return_timeout": 15, "return_records": "true"})
    assert r.status == 201 and r["records"][0]["name"] == "s2"


def test_duplicate_name_fails_job_or_409(fresh):
    vol = fresh.volume("vol_ds1")
    fresh.create_snapshot(vol["uuid"], "dup")
    r = fresh.post(f"/api/storage/volumes/{vol['uuid']}/snapshots", {"name": "dup"})
    assert r.status == 202
    job = fresh.job(r)
    assert job["state"] == "failure" and "already exists" in job["message"]
    assert job["code"] == 1 and job["error"] == {"code": "1", "message": job["message"]}
    r = fresh.create_snapshot(vol["uuid"], "dup")  # with return_timeout the error comes back directly
    assert r.status == 409 and r["error"]["code"] == "1" and "already exists" in r["error"]["message"]


def test_snapshot_fields(fresh):
    vol = fresh.volume("vol_ds1")
    before = int(time.time())
    fresh.create_snapshot(vol["uuid"], "s1", comment="hello", snapmirror_label="daily")
    snap = fresh.snapshots(vol["uuid"], name="s1")[0]
    assert snap["comment"] == "hello" and snap["snapmirror_label"] == "daily" and snap["state"] == "valid"
    assert snap["volume"]["name"] == "vol_ds1" and snap["svm"]["name"] == "svm1"
    assert ISO.match(snap["create_time"])
    assert dt.datetime.fromisoformat(snap["create_time"]).timestamp() >= before
    keys = fresh.get(f"/api/storage/volumes/{vol['uuid']}/snapshots")["records"][0]
    assert set(keys) == {"uuid", "name", "_links"}
    one = fresh.get(f"/api/storage/volumes/{vol['uuid']}/snapshots/{snap['uuid']}")
    assert one["name"] == "s1" and "records" not in one.body
    missing = fresh.get(f"/api/storage/volumes/{vol['uuid']}/snapshots/00000000-0000-0000-0000-000000000000")
    assert missing.status == 404 and missing["error"]["code"] == "4"


def test_snapshot_list_is_oldest_first_and_filterable(fresh):
    vol = fresh.volume("vol_ds1")
    for n in ("a1", "b2", "c3"):
        fresh.create_snapshot(vol["uuid"], n)
    assert [s["name"] for s in fresh.snapshots(vol["uuid"])] == ["a1", "b2", "c3"]
    assert [s["name"] for s in fresh.snapshots(vol["uuid"], name="b*")] == ["b2"]


def test_snapshot_visible_read_only_and_frozen(fresh):
    sim = fresh.sim
    vdir = sim.data / "volumes" / "svm1" / "vol_ds1"
    (vdir / "disk.img").write_bytes(b"A" * 4096)
    (vdir / "sub").mkdir()
    (vdir / "sub" / "f.txt").write_text("v1")
    vol = fresh.volume("vol_ds1")
    fresh.create_snapshot(vol["uuid"], "s1")
    (vdir / "disk.img").write_bytes(b"B" * 4096)
    (vdir / "sub" / "f.txt").write_text("v2")
    snap = vdir / ".snapshot" / "s1"
    assert (snap / "disk.img").read_bytes() == b"A" * 4096
    assert (snap / "sub" / "f.txt").read_text() == "v1"
    assert not os.stat(snap / "disk.img").st_mode & 0o222
    fresh.create_snapshot(vol["uuid"], "s2")
    # A snapshot never contains older snapshots.
    assert not any((vdir / ".snapshot" / "s2" / ".snapshot").glob("*/*"))
    assert (vdir / ".snapshot" / "s2" / "disk.img").read_bytes() == b"B" * 4096


def test_patch_rename_comment_label(fresh):
    vol = fresh.volume("vol_ds1")
    fresh.create_snapshot(vol["uuid"], "old")
    snap = fresh.snapshots(vol["uuid"])[0]
    r = fresh.patch(f"/api/storage/volumes/{vol['uuid']}/snapshots/{snap['uuid']}",
                    {"name": "new", "comment": "cc", "snapmirror_label": "weekly"})
    assert r.status == 202 and fresh.job(r)["state"] == "success"
    snap = fresh.snapshots(vol["uuid"])[0]
    assert (snap["name"], snap["comment"], snap["snapmirror_label"]) == ("new", "cc", "weekly")
    vdir = fresh.sim.data / "volumes" / "svm1" / "vol_ds1" / ".snapshot"
    assert (vdir / "new").is_dir() and not (vdir / "old").exists()


def test_delete_and_busy_delete(fresh):
    vol = fresh.volume("vol_ds1")
    fresh.create_snapshot(vol["uuid"], "keep")
    fresh.create_snapshot(vol["uuid"], "gone")
    by_name = {s["name"]: s for s in fresh.snapshots(vol["uuid"])}
    r = fresh.delete(f"/api/storage/volumes/{vol['uuid']}/snapshots/{by_name['gone']['uuid']}")
    assert r.status == 202 and fresh.job(r)["state"] == "success"
    assert [s["name"] for s in fresh.snapshots(vol["uuid"])] == ["keep"]
    assert not (fresh.sim.data / "volumes/svm1/vol_ds1/.snapshot/gone").exists()
    fresh.admin("POST", "busy", {"svm": "svm1", "volume": "vol_ds1", "snapshot": "keep", "owners": ["snapmirror"]})
    assert fresh.snapshots(vol["uuid"])[0]["owners"] == ["snapmirror"]
    url = f"/api/storage/volumes/{vol['uuid']}/snapshots/{by_name['keep']['uuid']}"
    job = fresh.job(fresh.delete(url))
    assert job["state"] == "failure" and job["code"] == 1638555
    r = fresh.delete(url, query={"return_timeout": 10})
    assert r.status == 409 and r["error"]["code"] == "1638555"


def test_bulk_snapshot_listing(fresh):
    for name in ("vol_ds1", "vol_ds2"):
        fresh.create_snapshot(fresh.volume(name)["uuid"], "same")
    r = fresh.get("/api/storage/volumes/*/snapshots", name="same", fields="volume.name")
    assert sorted(x["volume"]["name"] for x in r["records"]) == ["vol_ds1", "vol_ds2"]


def test_default_snapshot_latency(sim_factory):
    # Without --latency-scale the default 150 ms creation latency applies (realistic fence).
    c = Client(sim_factory(None, name="slow"))
    vol = c.volume("vol_ds1")
    t0 = time.monotonic()
    c.create_snapshot(vol["uuid"], "s1")
    assert time.monotonic() - t0 >= 0.15
    c.admin("POST", "latency", {"scale": 0})
    t0 = time.monotonic()
    c.create_snapshot(vol["uuid"], "s2")
    assert time.monotonic() - t0 < 0.15


def test_latency_overlaps_for_parallel_calls(fresh):
    # Latency is slept outside the state lock: parallel snapshot creations on different volumes
    # overlap (as on a real controller) instead of queueing behind each other.
    import threading
    fresh.admin("POST", "latency", {"scale": 1, "kinds": {"snapshot_create": 0.4}})
    try:
        vols = [fresh.volume(n)["uuid"] for n in ("vol_ds1", "vol_ds2")]
        results = []
        threads = [threading.Thread(target=lambda u=u: results.append(fresh.create_snapshot(u, "par").status))
                   for u in vols]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [201, 201] and time.monotonic() - t0 < 0.75
    finally:
        fresh.admin("POST", "latency", {"scale": 0, "kinds": {"snapshot_create": 0.15}})


def test_concurrent_clients_keep_state_consistent(fresh):
    # One lock guards the state: parallel creates/deletes/listings never corrupt it or fail.
    import json
    import threading
    vols = [fresh.volume(n)["uuid"] for n in ("vol_ds1", "vol_ds2")]
    errors: list[str] = []

    def worker(i: int) -> None:
        c = Client(fresh.sim)
        for j in range(4):
            vu = vols[(i + j) % 2]
            r = c.create_snapshot(vu, f"t{i}_{j}")
            if r.status != 201:
                errors.append(f"create {r}")
                continue
            snap = c.snapshots(vu, name=f"t{i}_{j}")[0]
            r = c.delete(f"/api/storage/volumes/{vu}/snapshots/{snap['uuid']}", query={"return_timeout": 10})
            if r.status != 200:
                errors.append(f"delete {r}")
            if c.get("/api/storage/volumes", fields="space").status != 200:
                errors.append("list")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(not fresh.snapshots(vu) for vu in vols)
    state = json.loads((fresh.sim.data / "state.json").read_text())
    assert all(not v["snapshots"] for v in state["volumes"].values())
    assert not any(list((fresh.sim.data / "volumes" / "svm1" / v / ".snapshot").iterdir())
                   for v in ("vol_ds1", "vol_ds2"))
