"""ONTAP's job model: a call that starts a job is answered 202 at once, the job runs for its kind's latency and
then does its work; return_timeout waits for the job's end; ZAPI stays synchronous."""

from __future__ import annotations

import time

import pytest
from simapi import zapi_server, zcall, zelem

SLOW = 0.6


@pytest.fixture
def slow(fresh, monkeypatch):
    """The default cluster with every snapshot-path job kind taking SLOW seconds."""
    monkeypatch.setenv("SSL_CERT_FILE", fresh.sim.ca_file)
    kinds = ("snapshot_create", "cg_create", "cg_snapshot", "cg_start", "cg_commit")
    with fresh.sim.latency({k: SLOW for k in kinds}, scale=1):
        yield fresh


def _job_state(client, reply):
    return client.job(reply)["state"]


def test_post_answers_202_at_once_and_the_job_does_the_work_at_its_end(slow):
    vol = slow.volume("vol_ds1")
    t0 = time.monotonic()
    r = slow.post(f"/api/storage/volumes/{vol['uuid']}/snapshots", {"name": "s1"})
    answered = time.monotonic() - t0
    assert r.status == 202 and answered < SLOW, (r, answered)
    assert _job_state(slow, r) == "running"
    assert slow.snapshots(vol["uuid"], name="s1") == []  # not taken yet: the job has not done its work
    deadline = time.monotonic() + 10
    while _job_state(slow, r) == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _job_state(slow, r) == "success"
    assert time.monotonic() - t0 >= SLOW
    assert [s["name"] for s in slow.snapshots(vol["uuid"], name="s1")] == ["s1"]


def test_return_timeout_waits_for_the_job_and_answers_at_its_end(slow):
    vol = slow.volume("vol_ds1")
    t0 = time.monotonic()
    r = slow.post(f"/api/storage/volumes/{vol['uuid']}/snapshots", {"name": "s2"},
                  query={"return_timeout": 20, "return_records": "true"})
    took = time.monotonic() - t0
    assert r.status == 201 and r["records"][0]["name"] == "s2", r
    assert _job_state(slow, r) == "success"
    # woken by the job's end, not by the 20 s timeout (a generous bound: the machine is shared)
    assert SLOW <= took < SLOW + 1.0, took


def test_return_timeout_shorter_than_the_job_answers_202_with_the_job_running(slow):
    slow.admin("POST", "latency", {"kinds": {"snapshot_create": 2.5}})
    vol = slow.volume("vol_ds1")
    t0 = time.monotonic()
    r = slow.post(f"/api/storage/volumes/{vol['uuid']}/snapshots", {"name": "s3"}, query={"return_timeout": 1})
    took = time.monotonic() - t0
    assert r.status == 202 and 1.0 <= took < 2.5, (r, took)
    assert _job_state(slow, r) == "running"


def test_failed_job_answers_its_error_with_return_timeout(slow):
    vol = slow.volume("vol_ds1")
    assert slow.create_snapshot(vol["uuid"], "dup").status == 201
    r = slow.post(f"/api/storage/volumes/{vol['uuid']}/snapshots", {"name": "dup"}, query={"return_timeout": 20})
    assert r.status >= 400 and r["error"]["code"] and r["job"]["uuid"], r
    assert _job_state(slow, r) == "failure"


def test_cg_creation_and_the_two_phase_cg_snapshot_are_jobs_with_their_kinds_latency(slow):
    t0 = time.monotonic()
    r = slow.post("/api/application/consistency-groups",
                  {"name": "cg1", "svm": {"name": "svm1"},
                   "volumes": [{"name": v, "provisioning_options": {"action": "add"}} for v in ("vol_ds1", "vol_ds2")]})
    assert r.status == 202 and time.monotonic() - t0 < SLOW
    assert slow.get("/api/application/consistency-groups", name="cg1")["num_records"] == 0
    assert slow.job(r)["state"] == "running"
    time.sleep(SLOW + 0.3)
    cgs = slow.get("/api/application/consistency-groups", name="cg1", fields="uuid")["records"]
    assert len(cgs) == 1
    cu = cgs[0]["uuid"]
    t0 = time.monotonic()
    r = slow.post(f"/api/application/consistency-groups/{cu}/snapshots", {"name": "cs1"},
                  query={"action": "start", "action_timeout": 10, "return_timeout": 20})
    assert r.status == 201 and time.monotonic() - t0 >= SLOW, r
    snaps = slow.get(f"/api/application/consistency-groups/{cu}/snapshots", name="cs1", fields="uuid")["records"]
    t0 = time.monotonic()
    r = slow.patch(f"/api/application/consistency-groups/{cu}/snapshots/{snaps[0]['uuid']}",
                   query={"action": "commit", "return_timeout": 20})
    assert r.status == 200 and time.monotonic() - t0 >= SLOW, r
    for v in ("vol_ds1", "vol_ds2"):
        assert [s["name"] for s in slow.snapshots(slow.volume(v)["uuid"], name="cs1")] == ["cs1"]


def test_zapi_stays_synchronous(slow):
    server = zapi_server(slow.sim, vserver="svm1")
    t0 = time.monotonic()
    zcall(server, "snapshot-create", volume="vol_ds1", snapshot="z1")
    assert time.monotonic() - t0 >= SLOW
    # the answer comes after the work: the snapshot is there at once
    assert [s["name"] for s in slow.snapshots(slow.volume("vol_ds1")["uuid"], name="z1")] == ["z1"]
    t0 = time.monotonic()
    start = zelem("cg-start", {"snapshot": "z2", "timeout": "relaxed", "volumes": [{"volume-name": "vol_ds1"}]})
    cg_id = server.invoke_successfully(start, enable_tunneling=True)["cg-id"]
    assert time.monotonic() - t0 >= SLOW
    t0 = time.monotonic()
    zcall(server, "cg-commit", **{"cg-id": cg_id})
    assert time.monotonic() - t0 >= SLOW
