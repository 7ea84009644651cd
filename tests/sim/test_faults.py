"""Fault injection and the other /_sim/ admin calls: errors, hangs, drops, job faults, busy,
call log, latency, RBAC of the admin endpoint."""

from __future__ import annotations

import http.client
import time
import urllib.error

import pytest
from netapp_lib.api.zapi import zapi
from simapi import Client, zapi_server, zcall

SNAPS = "/api/storage/volumes/*/snapshots"


def test_rest_error_fault_count_and_listing(fresh):
    vol = fresh.volume("vol_ds1")
    fresh.admin("POST", "faults", {"action": "error", "method": "POST", "path": SNAPS, "count": 2,
                                   "status": 500, "code": "65552", "message": "RPC failure"})
    for name in ("a", "b"):
        r = fresh.create_snapshot(vol["uuid"], name)
        assert r.status == 500 and r["error"] == {"message": "RPC failure", "code": "65552"}
    assert fresh.create_snapshot(vol["uuid"], "c").status == 201
    rule = fresh.admin("GET", "faults")["faults"][0]
    assert rule["count"] == 0 and rule["hits"] == 2
    assert [c["fault"] for c in fresh.calls() if c["method"] == "POST"] == ["error", "error", None]
    fresh.admin("DELETE", "faults")
    assert fresh.admin("GET", "faults")["faults"] == []


def test_fault_matches_method_and_path(fresh):
    fresh.admin("POST", "faults", {"action": "error", "method": "DELETE", "path": SNAPS + "/*", "status": 409,
                                   "code": "1638555", "message": "busy"})
    vol = fresh.volume("vol_ds1")
    assert fresh.create_snapshot(vol["uuid"], "s").status == 201  # POST does not match
    snap = fresh.snapshots(vol["uuid"])[0]
    r = fresh.delete(f"/api/storage/volumes/{vol['uuid']}/snapshots/{snap['uuid']}")
    assert r.status == 409 and r["error"]["code"] == "1638555"


def test_hang_then_answer(fresh):
    fresh.admin("POST", "faults", {"action": "hang", "method": "GET", "path": "/api/cluster", "seconds": 0.4})
    t0 = time.monotonic()
    assert fresh.get("/api/cluster").status == 200
    assert time.monotonic() - t0 >= 0.4
    t0 = time.monotonic()
    fresh.get("/api/cluster")
    assert time.monotonic() - t0 < 0.4


def test_drop_connection(fresh):
    fresh.admin("POST", "faults", {"action": "drop", "method": "GET", "path": "/api/storage/volumes"})
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
        fresh.get("/api/storage/volumes")
    assert fresh.get("/api/storage/volumes").status == 200
    assert any(c["fault"] == "drop" for c in fresh.calls())


def test_job_running_for_a_while_then_done(fresh):
    vol = fresh.volume("vol_ds1")
    fresh.create_snapshot(vol["uuid"], "s1")
    snap = fresh.snapshots(vol["uuid"])[0]
    fresh.admin("POST", "faults", {"action": "job_running", "method": "DELETE", "path": SNAPS + "/*",
                                   "seconds": 0.5})
    r = fresh.delete(f"/api/storage/volumes/{vol['uuid']}/snapshots/{snap['uuid']}", query={"return_timeout": 0.1})
    assert r.status == 202
    assert fresh.job(r)["state"] == "running"
    assert fresh.snapshots(vol["uuid"])  # not deleted yet
    time.sleep(0.7)
    assert fresh.job(r)["state"] == "success" and not fresh.snapshots(vol["uuid"])


def test_job_running_forever(fresh):
    vol = fresh.volume("vol_ds1")
    fresh.admin("POST", "faults", {"action": "job_running", "method": "POST", "path": SNAPS})
    r = fresh.post(f"/api/storage/volumes/{vol['uuid']}/snapshots", {"name": "never"})
    assert r.status == 202
    time.sleep(0.2)
    job = fresh.job(r)
    assert job["state"] == "running" and "end_time" not in job
    assert not fresh.snapshots(vol["uuid"])


def test_job_failure(fresh):
    vol = fresh.volume("vol_ds1")
    fresh.admin("POST", "faults", {"action": "job_failure", "method": "POST", "path": SNAPS, "count": 2,
                                   "code": "65552", "message": "Failed to create snapshot"})
    job = fresh.job(fresh.post(f"/api/storage/volumes/{vol['uuid']}/snapshots", {"name": "x"}))
    assert job["state"] == "failure" and job["message"] == "Failed to create snapshot" and job["code"] == 65552
    assert job["error"] == {"code": "65552", "message": "Failed to create snapshot"}
    r = fresh.create_snapshot(vol["uuid"], "y")
    assert r.status == 500 and r["error"]["code"] == "65552" and "job" in r.body
    assert not fresh.snapshots(vol["uuid"])


def test_zapi_error_and_drop_faults(fresh, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", fresh.sim.ca_file)
    server = zapi_server(fresh.sim, vserver="svm1")
    fresh.admin("POST", "faults", {"action": "error", "api": "snapshot-create", "errno": "13001",
                                   "reason": "RPC: Couldn't make connection"})
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(server, "snapshot-create", volume="vol_ds1", snapshot="s")
    assert (exc.value.code, exc.value.message) == ("13001", "RPC: Couldn't make connection")
    zcall(server, "snapshot-create", volume="vol_ds1", snapshot="s")
    fresh.admin("POST", "faults", {"action": "drop", "api": "snapshot-delete"})
    # netapp-lib wraps URL errors in NaApiError; a bare disconnect surfaces as the http.client error.
    with pytest.raises((zapi.NaApiError, http.client.HTTPException, ConnectionError)):
        zcall(server, "snapshot-delete", volume="vol_ds1", snapshot="s")
    zcall(server, "snapshot-delete", volume="vol_ds1", snapshot="s")


def test_call_log_shows_only_reads_for_a_read_only_flow(fresh):
    fresh.admin("DELETE", "calls")
    fresh.get("/api/cluster", fields="version")
    fresh.get("/api/storage/volumes", fields="uuid")
    calls = fresh.calls()
    assert [(c["method"], c["path"], c["user"], c["status"]) for c in calls] == [
        ("GET", "/api/cluster", "admin", 200), ("GET", "/api/storage/volumes", "admin", 200)]
    assert calls[0]["query"] == "fields=version" and calls[0]["end"] >= calls[0]["start"]
    since = calls[-1]["seq"]
    fresh.get("/api/cluster")
    assert len(fresh.admin("GET", f"calls?since={since}")["calls"]) == 1


def test_admin_endpoint_needs_admin_and_valid_specs(fresh):
    ro = Client(fresh.sim, user="backup_ro")
    assert ro.call("GET", "/_sim/faults").status == 403
    assert fresh.call("POST", "/_sim/faults", {"action": "explode", "path": "/x"}).status == 400
    assert fresh.call("POST", "/_sim/faults", {"action": "error"}).status == 400
    assert fresh.call("GET", "/_sim/nothing").status == 404


def test_latency_endpoint(fresh):
    lat = fresh.admin("GET", "latency")
    assert lat["scale"] == 0 and lat["kinds"]["snapshot_create"] == 0.15
    fresh.admin("POST", "latency", {"scale": 1, "kinds": {"snapshot_create": 0.3}})
    vol = fresh.volume("vol_ds1")
    t0 = time.monotonic()
    fresh.create_snapshot(vol["uuid"], "slow")
    assert time.monotonic() - t0 >= 0.3
    fresh.admin("POST", "latency", {"scale": 0, "kinds": {"snapshot_create": 0.15}})


def test_reset_restores_configured_cluster(fresh):
    vol = fresh.volume("vol_ds1")
    fresh.create_snapshot(vol["uuid"], "s")
    (fresh.sim.data / "volumes" / "svm1" / "vol_ds1" / "f").write_text("x")
    fresh.admin("POST", "reset")
    vol2 = fresh.volume("vol_ds1")
    assert not fresh.snapshots(vol2["uuid"])
    assert not (fresh.sim.data / "volumes" / "svm1" / "vol_ds1" / "f").exists()


def test_sim_fixture_admin_helper(sim):
    # tests/helpers/sim_fixtures.Sim.admin is the shortcut other test tiers use.
    assert sim.admin("GET", "faults") == {"faults": []}
    assert sim.admin("GET", "/_sim/latency")["scale"] == 0


def test_drop_after_executing_loses_only_the_answer(fresh):
    vol = fresh.volume("vol_ds1")
    fresh.admin("POST", "faults", {"action": "drop", "method": "POST", "path": SNAPS, "execute": True})
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
        fresh.create_snapshot(vol["uuid"], "done-anyway")
    assert [s["name"] for s in fresh.snapshots(vol["uuid"])] == ["done-anyway"]


def test_job_queued_state(fresh):
    vol = fresh.volume("vol_ds1")
    fresh.admin("POST", "faults", {"action": "job_running", "method": "POST", "path": SNAPS, "seconds": 0.3,
                                   "job_state": "queued"})
    r = fresh.post(f"/api/storage/volumes/{vol['uuid']}/snapshots", {"name": "q"})
    assert fresh.job(r)["state"] == "queued"
    time.sleep(0.5)
    assert fresh.job(r)["state"] == "success" and fresh.snapshots(vol["uuid"])


def test_sim_fixture_conn_with_certificate(sim):
    opts = sim.conn("rest", username="admin", cert=True)
    assert "password" not in opts and opts["cert_file"].endswith("admin.pem")
    c = Client(sim, cert=(opts["cert_file"], opts["key_file"]))
    assert c.get("/api/cluster").status == 200


def test_call_log_bodies_and_state_dump(fresh, monkeypatch):
    vol = fresh.volume("vol_ds1")
    fresh.admin("DELETE", "calls")
    fresh.create_snapshot(vol["uuid"], "s1", snapmirror_label="daily")
    post = [c for c in fresh.calls() if c["method"] == "POST"][0]
    assert post["body"] == {"name": "s1", "snapmirror_label": "daily"} and post["status"] == 201
    monkeypatch.setenv("SSL_CERT_FILE", fresh.sim.ca_file)
    zcall(zapi_server(fresh.sim, vserver="svm1"), "snapshot-create", volume="vol_ds2", snapshot="z")
    z = [c for c in fresh.calls() if c["api"] == "snapshot-create" and c["user"]][0]
    assert "<snapshot>z</snapshot>" in z["body"] and z["vfiler"] == "svm1" and z["zapi_status"] == "passed"
    state = fresh.admin("GET", "state")
    assert [s["name"] for s in state["volumes"][vol["uuid"]]["snapshots"]] == ["s1"]


def test_fault_skip_lets_the_first_calls_through(fresh, monkeypatch):
    """`skip`: the rule applies from the (skip+1)-th matching call on (a delete refused on the second volume only)."""
    monkeypatch.setenv("SSL_CERT_FILE", fresh.sim.ca_file)
    server = zapi_server(fresh.sim, vserver="svm1")
    for name in ("s1", "s2", "s3"):
        zcall(server, "snapshot-create", volume="vol_ds1", snapshot=name)
    fresh.admin("POST", "faults", {"action": "error", "api": "snapshot-delete", "errno": "13024", "skip": 1,
                                   "reason": "Snapshot copy is busy."})
    zcall(server, "snapshot-delete", volume="vol_ds1", snapshot="s1")
    with pytest.raises(zapi.NaApiError) as exc:
        zcall(server, "snapshot-delete", volume="vol_ds1", snapshot="s2")
    assert exc.value.code == "13024"
    zcall(server, "snapshot-delete", volume="vol_ds1", snapshot="s2")  # count 1: used up
    rule = fresh.admin("GET", "faults")["faults"][0]
    assert (rule["skip"], rule["hits"], rule["count"]) == (0, 1, 0)
